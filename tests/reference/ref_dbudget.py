"""Independent float64 reference for dbudget (DBudgetKV, Ni et al. 2025, arXiv 2502.16886).

From the paper's description (no reference code was found): tokens are ranked by importance and
the least significant are pruned per layer, halting on the norm of the reduced attention matrix.
kvsim's reading, implemented here from its registry text: per KV head, the window always stays;
the other resident entries are ranked by SnapKV's pooled window-attention score (best first, ties:
lower position) and the shortest prefix of that ranking is kept such that
||A[:, kept]||_F >= threshold * ||A||_F, A being the window queries' attention (all query heads of
the group) over the resident entries.
"""
import numpy as np

import kvref
import ref_window_squares as rw

DEFAULTS = dict(threshold=0.99, window=32, kernel=7, pooling="max", prefill="post_fill", decode="none")


def params(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "dbudget", spec
    p = dict(DEFAULTS)
    p.update(args)
    assert p["decode"] == "none", "reference models decode=none only"
    return float(p["threshold"]), int(p["window"]), int(p["kernel"]), p["pooling"], p["prefill"]


def evict_head(lay, h, cache, wp, threshold, kernel, pooling):
    nonwin = len(cache) - len(wp)
    if nonwin <= 0:
        return cache
    qg = lay.queries[h * lay.G:(h + 1) * lay.G]
    raw = kvref.snapkv_scores(lay.keys[h], qg, lay.qpos_index, cache, wp, nonwin, lay.d)
    score = kvref.pool1d(raw, kernel, pooling)
    sq = rw.attention_squares(lay, h, cache, wp)
    order = np.lexsort((np.arange(nonwin), -score))        # best first; ties: lower position
    mass = sq[nonwin:].sum()
    total = mass + sq[order].sum()
    need = threshold * threshold * total
    keep = 0
    while keep < nonwin and mass < need:
        mass += sq[order[keep]]
        keep += 1
    return np.sort(np.concatenate([cache[np.sort(order[:keep])], cache[nonwin:]]))


def kept_mask(spec, lay, chunk=None):
    threshold, window, kernel, pooling, prefill = params(spec)

    def evict(resident, wp, j, chunks):
        return [evict_head(lay, h, cache, wp, threshold, kernel, pooling) for h, cache in enumerate(resident)]

    return rw.replay(lay, prefill, window, chunk, evict)
