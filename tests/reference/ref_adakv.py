"""Independent float64 reference for adakv (policy-notes.md "AdaKV"; NVIDIA/kvpress adakv_press.py).

kvpress: n_kept = int(T(1-r)) per head, n_safe = int(n_kept * alpha); each head's top n_safe
scores are forced (the SnapKV window, padded with the maximum score, ranks first), then the
layer's H * n_kept budget goes to the highest scores over all heads. In kvsim terms, with the
per-head capacity C of DESIGN.md §4 (window included): every head keeps its window, plus its top
max(0, floor(C * alpha) - window) scored entries, plus the layer's best remaining entries until the
layer holds H * C (ties: lower head, then lower position).
"""
import math

import kvref
import ref_pyramidkv as rp


def adakv_step(p, lay, chunk):
    chunks = kvref.prefill_chunks(lay.n, chunk)

    def step(j, resident):
        cap = rp.uniform_capacity(p, lay.n, chunks, j)
        H = len(resident)
        if sum(len(r) for r in resident) <= H * cap:
            return None
        a, b = chunks[j]
        wp = p.window_positions(a, b)
        n_safe = int(math.floor(cap * p.alpha))
        always, raw, safe = [], {}, []
        for h, cache in enumerate(resident):
            nonwin = cache[: len(cache) - len(wp)]
            s = rp.snapkv_head_scores(p, lay, h, cache, wp)
            head_raw = {(h, int(t)): float(v) for t, v in zip(nonwin, s)}
            safe += rp.ranked(head_raw.keys(), head_raw)[: max(0, n_safe - len(wp))]
            raw.update(head_raw)
            always += [(h, int(t)) for t in wp]
        safe_set = set(safe)
        rest = rp.ranked([it for it in raw if it not in safe_set], raw)
        K = H * cap - len(always)
        # One competition: safe entries rank first (they are forced), then the layer-wide order.
        comp = rp.Competition(safe + rest, raw, K, {it: [it] for it in raw})
        return always, [comp]

    return step
