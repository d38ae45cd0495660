"""Independent float64 reference for kvcompress (KV-Compress, Rehg 2024, arXiv 2410.00161).

From IsaacRe/vllm-kvcompress (vllm/kvcompress/metrics.py schedule_evictions, scheduler.py
_schedule_seq_evictions), as kvsim's registry text adapts it, never from kvsim's C++ sources:
  - metric of an entry: squared attention from the observation window's queries, summed over the
    queries ("L2-sum"), max-pooled along the non-window entries with `kernel` per query head
    (vllm/attention/backends/flash_attn.py _collect_kv_prefill_metrics, kv_metric_use_maxpool),
    then summed over the group's query heads;
  - per KV head, the non-window entries sorted by metric (ascending; ties: lower position) and cut
    into blocks of block_tokens from the lowest; a block's metric is that of its last entry; the
    remainder (fewer than block_tokens, it would share a block with protected entries) stays;
  - the layer evicts floor((entries - H * capacity) / block_tokens) blocks, lowest metric first
    (ties: lower head, then the head's earlier block); capacity per DESIGN.md §4.
"""
import numpy as np

import kvref
import ref_window_squares as rw

DEFAULTS = dict(budget="0.2", block_tokens=16, window=32, kernel=7, prefill="post_fill", decode="none")


def params(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "kvcompress", spec
    p = dict(DEFAULTS)
    p.update(args)
    assert p["decode"] == "none", "reference models decode=none only"
    return str(p["budget"]), int(p["block_tokens"]), int(p["window"]), int(p["kernel"]), p["prefill"]


def capacity(budget, window, prefill, n, chunks, j):
    """DESIGN.md §4 per-head capacity after prefill pass j (window included)."""
    if "." not in budget:
        return int(budget)
    b = float(budget)
    cap = lambda c: min(kvref.round_half_even(b * c) + window, c)
    if prefill == "post_fill":
        return cap(n)
    return sum(cap(e - a) for a, e in chunks[: j + 1])


def evict_layer(lay, resident, wp, cap, bs, kernel):
    H = len(resident)
    excess = sum(len(r) for r in resident) - H * cap
    if excess < bs:
        return resident
    orders, blocks = [], []
    for h, cache in enumerate(resident):
        nonwin = len(cache) - len(wp)
        per_head = rw.attention_squares(lay, h, cache, wp, per_head=True)[:, :max(nonwin, 0)]
        sq = sum(kvref.pool1d(row, kernel, "max") for row in per_head) if nonwin > 0 else np.zeros(0)
        order = np.lexsort((np.arange(len(sq)), sq))          # lowest first; ties: lower position
        orders.append(order)
        for b in range(len(order) // bs):
            blocks.append((sq[order[(b + 1) * bs - 1]], h, b))
    blocks.sort()
    evicted = [0] * H
    for _, h, _ in blocks[: excess // bs]:
        evicted[h] += 1
    out = []
    for h, cache in enumerate(resident):
        drop = np.zeros(len(cache), dtype=bool)
        drop[orders[h][: evicted[h] * bs]] = True
        out.append(cache[~drop])
    return out


def kept_mask(spec, lay, chunk=None):
    budget, bs, window, kernel, prefill = params(spec)

    def evict(resident, wp, j, chunks):
        return evict_layer(lay, resident, wp, capacity(budget, window, prefill, lay.n, chunks, j), bs, kernel)

    return rw.replay(lay, prefill, window, chunk, evict)
