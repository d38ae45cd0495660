"""Float64 numpy reference for kvsim's tova policy (TOVA, arXiv 2401.06104).

Written from schwartz-lab-NLP/TOVA src/tova_cache.py (TOVACache.reduce) and DESIGN.md §4, not
from kvsim's C++: at an eviction point whose cache exceeds the capacity, the query at the last
position of the pass just processed attends (softmax(q.k/sqrt(d)) over every cached entry of its
KV head, itself included); the probabilities are averaged over ALL query heads of the layer and
the top `capacity` positions (ties to the lower position) are kept by every KV head. Capacity:
DESIGN.md §4 with no protected window (min(round(b c), c) per chunk or over the prompt), fixed in
decode; an integer budget is the cache size.
"""
import math

import numpy as np

from kvref import EvictionBudget, parse_spec, passes, prefill_chunks
from ref_h2o import Result, select


class TovaSpec(EvictionBudget):
    """Budget and eviction points (capacity, evicts_after); nothing protected."""

    def __init__(self, spec):
        name, args = parse_spec(spec)
        assert name == "tova", spec
        super().__init__(args, protected=0, decode="step")
        assert not args, "reference does not model tova args %r" % args


def tova_scores(layer, cache, t):
    """Mean over all query heads of the attention of query t to the cached positions (float64)."""
    row = layer.qpos_index[t]
    total = np.zeros(len(cache))
    for g in range(layer.hq):
        logits = layer.keys[g // layer.G][cache] @ layer.queries[g, row] / math.sqrt(layer.d)
        p = np.exp(logits - logits.max())
        total += p / p.sum()
    return total / layer.hq


def tova_replay(spec, layer, chunk, observed=None, rel_tol=1e-5):
    """Reference TOVA for a whole layer (one set for all KV heads). With `observed` (kvsim's final
    kept mask of the layer, bool [n+m], identical for every head) the replay is guided as
    ref_h2o.h2o_replay: entries kvsim holds at the end are kept at every eviction point, and a
    deviation from the float64 top-k is accepted only as a near-tie."""
    pol = spec if isinstance(spec, TovaSpec) else TovaSpec(spec)
    n, m = layer.n, layer.m
    chunks = prefill_chunks(n, chunk)
    res = Result()
    cache = np.zeros(0, dtype=np.int64)
    for j, (a, b, is_prefill) in enumerate(passes(n, m, chunk)):
        cache = np.concatenate([cache, np.arange(a, b, dtype=np.int64)])
        cap = pol.capacity_after(n, chunks, j, a, is_prefill)
        if cap is None or len(cache) <= cap:
            continue
        res.evictions += 1
        key = tova_scores(layer, cache, b - 1)
        forced = set() if observed is None else set(int(p) for p in cache if observed[p])
        sel = select(key, cache, cap, forced, rel_tol, "pass [%d,%d)" % (a, b), res)
        if sel is None:
            return res
        cache = np.array(sorted(sel), dtype=np.int64)
    res.kept = np.zeros(n + m, dtype=bool)
    res.kept[cache] = True
    if observed is not None and not np.array_equal(res.kept, observed):
        diff = np.nonzero(res.kept != observed)[0]
        res.problems.append("final mask differs at %d positions, first %s" % (len(diff), diff[:8].tolist()))
    return res
