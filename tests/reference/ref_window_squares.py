"""Float64 squared window attention for the dbudget and kvcompress references.

Written from DESIGN.md §4 (observation window, causal attention over the resident entries) and
the two methods' descriptions (policy notes in ref_dbudget.py / ref_kvcompress.py), never from
kvsim's C++ sources.
"""
import math

import numpy as np

import kvref


def window_positions(prefill, window, a, b):
    """The observation window after prefill pass [a, b): the chunk's own last queries in chunk
    mode, else the last `window` positions processed."""
    w = min(window, b - a) if prefill == "chunk" else min(window, b)
    return np.arange(b - w, b, dtype=np.int64)


def attention_squares(lay, h, cache, window_pos, per_head=False):
    """For KV head h with resident positions `cache` (sorted) whose last entries are `window_pos`:
    sum over the window queries and the group's query heads of attention^2, per resident entry
    (per_head: one row per query head of the group, [G, C])."""
    K = lay.keys[h][cache]                                           # [C, d]
    rows = [lay.qpos_index[int(p)] for p in window_pos]
    Q = lay.queries[h * lay.G:(h + 1) * lay.G][:, rows, :]          # [G, w, d]
    logits = np.einsum("gid,jd->gij", Q, K) / math.sqrt(lay.d)
    masked = cache[None, :] > np.asarray(window_pos)[:, None]        # causal: j after query i
    logits = np.where(masked[None], -np.inf, logits)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    return (p ** 2).sum(axis=1) if per_head else (p ** 2).sum(axis=(0, 1))


def replay(lay, prefill, window, chunk, evict):
    """decode=none replay of one layer: after each eviction point, evict(resident, window_pos) ->
    new resident (list per head). Returns the kept mask [H, n+m] (generated tokens all kept)."""
    chunks = kvref.prefill_chunks(lay.n, chunk)
    resident = [np.zeros(0, dtype=np.int64) for _ in range(lay.hkv)]
    for j, (a, b) in enumerate(chunks):
        resident = [np.concatenate([r, np.arange(a, b, dtype=np.int64)]) for r in resident]
        if prefill == "chunk" or b == lay.n:
            resident = evict(resident, window_positions(prefill, window, a, b), j, chunks)
    kept = np.zeros((lay.hkv, lay.n + lay.m), dtype=bool)
    for h in range(lay.hkv):
        kept[h, resident[h]] = True
        kept[h, lay.n:] = True
    return kept


def hand_layer(x_per_head, n):
    """d=1 MHA layer: KV head h has keys ln x_h and every query is 1, so attention ~ x."""
    H = len(x_per_head)
    keys = np.log(np.asarray(x_per_head, dtype=np.float64)).reshape(H, n, 1)
    return kvref.LayerData(keys, np.ones((H, n, 1)), np.arange(n), n, 0, H, H, 1)


def compare_masks(ck, what, got, want):
    diff = np.argwhere(got != want)
    return ck.check(len(diff) == 0, what + ": kept masks == reference",
                    "%d (head, position) pairs differ, first %s" % (len(diff), diff[:6].tolist()))
