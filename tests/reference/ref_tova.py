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
import re

import numpy as np

from kvref import parse_spec, passes, prefill_chunks, round_half_even
from ref_h2o import Result, select


class TovaSpec:
    def __init__(self, spec):
        name, args = parse_spec(spec)
        assert name == "tova", spec
        b = args.pop("budget", "0.2")
        self.budget_int = int(b) if re.fullmatch(r"\d+", b) else None
        self.budget_frac = None if self.budget_int is not None else float(b)
        self.prefill = args.pop("prefill", "post_fill")
        dec = args.pop("decode", "step")
        self.decode_every = 0 if dec == "none" else 1 if dec == "step" else int(dec.split(":")[1])
        assert not args, "reference does not model tova args %r" % args

    def capacity(self, n, chunks, pass_index, is_prefill):
        if self.budget_int is not None:
            return self.budget_int
        cc = lambda c: min(round_half_even(self.budget_frac * c), c)
        if self.prefill == "chunk":
            last = pass_index if is_prefill else len(chunks) - 1
            return sum(cc(b - a) for a, b in chunks[: last + 1])
        return cc(n)

    def evicts_after(self, is_prefill, index, num_chunks):
        if is_prefill:
            return self.prefill == "chunk" or (self.prefill == "post_fill" and index == num_chunks - 1)
        return self.decode_every > 0 and (index + 1) % self.decode_every == 0


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
    decode_index = 0
    for j, (a, b, is_prefill) in enumerate(passes(n, m, chunk)):
        index = j if is_prefill else decode_index
        decode_index += 0 if is_prefill else 1
        cache = np.concatenate([cache, np.arange(a, b, dtype=np.int64)])
        if not pol.evicts_after(is_prefill, index, len(chunks)):
            continue
        cap = pol.capacity(n, chunks, index, is_prefill)
        if len(cache) <= cap:
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
