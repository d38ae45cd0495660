"""Independent numpy reference for lava (LAVa, Shen et al. 2025; MGDDestiny/Lava
adaptive_snapkv/monkeypatch/snapkv_utils.py LavaKVCluster, --gqa_support mode), written from that
code and kvsim's documented adaptations (policies/lava.cpp header, DESIGN.md §4), not from the C++.

Score of KV head h's non-window entry j (calcul_attn_score): for each query head g of the group,
the window queries' mean attention to j (softmax over the cache, causal inside the window), pooled
along positions (kernel, padding kernel//2, stride 1); times the head's value scale
max_j' ||V_j'||_1 over its non-window entries; the maximum over g.

Selection at an eviction point with per-head capacity C (DESIGN.md §4, uniform across layers: the
reference's entropy-based layer split needs every layer and is documented as not reproduced):
  S = H*C - (window entries); count_h = head h's entries among the layer's S best scores
  (ties: lower head, then lower position); share_h = min(entries_h, floor((1-a) count_h + a S/H));
  head h keeps its window and its own top share_h; the S - sum(share) left go to the best remaining
  scores across heads (kvsim's integerization; the reference rounds each head instead).
"""
import math

import numpy as np

import kvref
import ref_pyramidkv as rp

# A lava spec parsed with its defaults (budget 0.2, window 32, kernel 7, max pooling, floor_alpha
# 0.2, post_fill): the same parameters as the other SnapKV-scored budgets.
LavaParams = rp.PolicyParams


def head_scores(p, lay, h, cache, wp, dtype):
    """LAVa scores of cache[:len(cache) - len(wp)] for KV head h, computed in `dtype`."""
    nonwin = len(cache) - len(wp)
    if nonwin <= 0:
        return np.zeros(0, dtype)
    scale = np.abs(lay.values[h][cache[:nonwin]].astype(dtype)).sum(axis=1).max()
    best = None
    for g in range(h * lay.G, (h + 1) * lay.G):
        mean = kvref.snapkv_scores(lay.keys[h], lay.queries[g:g + 1], lay.qpos_index, cache, wp, nonwin, lay.d,
                                   dtype) / dtype(len(wp))
        pooled = kvref.pool1d(mean, p.kernel, p.pooling, dtype) * scale
        best = pooled if best is None else np.maximum(best, pooled)
    return best.astype(dtype)


def select(p, caches, scores, wins, cap):
    """Kept positions per head: caches[h] sorted positions, scores[h] its non-window scores,
    wins[h] its window entries (the last ones)."""
    H = len(caches)
    S = max(0, H * cap - sum(wins))
    items = [(float(scores[h][i]), h, int(caches[h][i])) for h in range(H) for i in range(len(scores[h]))]
    order = sorted(items, key=lambda t: (-t[0], t[1], t[2]))
    count = [0] * H
    for _, h, _ in order[:S]:
        count[h] += 1
    keep = [set(int(t) for t in caches[h][len(caches[h]) - wins[h]:]) for h in range(H)]
    taken = 0
    for h in range(H):
        share = min(len(scores[h]), int(math.floor((1 - p.floor_alpha) * count[h] + p.floor_alpha * S / H + 1e-9)))
        own = sorted(range(len(scores[h])), key=lambda i: (-float(scores[h][i]), i))[:share]
        keep[h].update(int(caches[h][i]) for i in own)
        taken += share
    rest = [t for t in order if t[2] not in keep[t[1]]]
    for _, h, pos in rest[:max(0, S - taken)]:
        keep[h].add(pos)
    return [np.array(sorted(k), dtype=np.int64) for k in keep]


def replay(p, lay, chunk=None, dtype=np.float64):
    """Final kept mask [H, n+m] (decode=none: generated tokens all kept) and the capacity of the
    last eviction point if it evicted (None otherwise: the layer then holds fewer)."""
    n, m, H = lay.n, lay.m, lay.hkv
    chunks = kvref.prefill_chunks(n, chunk)
    resident = [np.zeros(0, dtype=np.int64) for _ in range(H)]
    last_cap = None
    for j, (a, b) in enumerate(chunks):
        resident = [np.concatenate([r, np.arange(a, b, dtype=np.int64)]) for r in resident]
        if not p.evicts_after(n, chunks, j):
            continue
        cap = rp.uniform_capacity(p, n, chunks, j)
        last_cap = None
        if sum(len(r) for r in resident) <= H * cap:
            continue
        wp = p.window_positions(a, b)
        wins = [int(np.sum(r >= wp[0])) for r in resident]
        scores = [head_scores(p, lay, h, resident[h], wp, dtype) for h in range(H)]
        resident = select(p, resident, scores, wins, cap)
        last_cap = cap
    kept = np.zeros((H, n + m), dtype=bool)
    for h in range(H):
        kept[h, resident[h]] = True
        kept[h, n:] = True
    return kept, last_cap
