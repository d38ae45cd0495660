#!/usr/bin/python3
"""kvsim's h2o kept sets against an independent float64 numpy reference (ref_h2o.py).

Self-tests (always run; alone with --self-test): the reference on the hand examples of
tests/policies/h2o_test.cpp (d=1 keys ln x so attention is proportional to x), the vectorized
reference against a plain-loop one on random MHA/GQA data, and the guided comparison's tolerance
(accepts a near-tie, rejects a real difference).

Then for MHA, GQA-2 and GQA-4 tiny models: `kvsim synth` a trace storing every query (n=480,
m=12, two layers), `kvsim run --save-kept` with h2o under post_fill, chunk and decode-only
eviction, decode every step or every K, share and token `recent`, normalize=count and
prompt_queries=N, unchunked and chunked prefill; every layer and KV head's final kept mask must
equal the reference's, allowing only float32-vs-float64 near-ties at the selection boundary
(reported). full must keep everything. GQA (issue 19): gqa=max (one accumulator per query head, ranked
by the group's maximum) is guided like mean; gqa=expand is replayed per query head on the layer with its
KV heads repeated (kvref.expanded_layer) and kvsim's kept file, each KV head's union of its G copies,
must equal the union of those exactly.

usage: /usr/bin/python3 tests/reference/test_h2o_reference.py --kvsim BIN --workdir DIR
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_h2o import H2OSpec, h2o_replay  # noqa: E402


def hand_layer(x, q, n):
    """1 KV head, 1 query head, d=1: keys ln x_j, query q_t at every position."""
    keys = np.log(np.asarray(x, dtype=np.float64)).reshape(1, -1, 1)
    qs = np.asarray(q, dtype=np.float64).reshape(1, -1, 1)
    return kvref.LayerData(keys, qs, np.arange(len(q)), n, len(x) - n, 1, 1, 1)


def kept(spec, layer, chunk=None, h=0):
    return np.nonzero(h2o_replay(spec, layer, h, chunk).kept)[0].tolist()


def naive(spec, layer, h, chunk):
    """Loop-by-loop H2O, independent of ref_h2o's vectorization (same definition)."""
    pol = H2OSpec(spec)
    n, m, G, d = layer.n, layer.m, layer.G, layer.d
    chunks = kvref.prefill_chunks(n, chunk)
    res, score, seen = [], {}, {}
    step = 0
    for j, (a, b, pf) in enumerate(kvref.passes(n, m, chunk)):
        idx = j if pf else step
        step += 0 if pf else 1
        cached = list(res)
        res = cached + list(range(a, b))
        for p in range(a, b):
            score[p], seen[p] = 0.0, 0
        for t in pol.query_positions(a, b, pf):
            vis = [p for p in res if p <= t]
            for g in range(h * G, (h + 1) * G):
                w = [math.exp(sum(layer.queries[g, layer.qpos_index[t], c] * layer.keys[h, p, c] for c in range(d))
                              / math.sqrt(d)) for p in vis]
                for p, wp in zip(vis, w):
                    score[p] += wp / sum(w) / G
            for p in vis:
                seen[p] += 1
        if pol.evicts_after(pf, idx, len(chunks)):
            cap = pol.capacity(n, chunks, idx, pf)
            if len(res) > cap:
                r = pol.recent_count(cap)
                cand = res[: len(res) - r]
                val = (lambda p: score[p] / seen[p]) if pol.normalize else (lambda p: score[p])
                top = sorted(cand, key=lambda p: (-val(p), p))[: cap - r]
                res = sorted(top) + res[len(res) - r:]
    return sorted(res)


def self_tests(ck):
    lay = hand_layer([4, 1, 2, 1, 1, 1], [1, 1, 1, 1, -1, -1], 4)
    ck.eq(kept("h2o(budget=3, recent=1)", lay), [0, 2, 5], "hand: accumulation over prefill and decode")
    ck.eq(kept("h2o(budget=3, recent=1, decode=none)", lay), [0, 2, 3, 4, 5], "hand: post-fill only")
    ck.eq(kept("h2o(budget=3, recent=0.5)", lay), [0, 4, 5], "hand: recent share 0.5 of 3 -> 2")
    lay = hand_layer([1, 1, 3, 1], [1, 1, 1, 1], 4)
    ck.eq(kept("h2o(budget=2, recent=1)", lay), [0, 3], "hand: sum")
    ck.eq(kept("h2o(budget=2, recent=1, normalize=count)", lay), [2, 3], "hand: normalize=count")
    ck.eq(kept("h2o(budget=2, recent=1, prompt_queries=1)", lay), [2, 3], "hand: prompt_queries=1")
    lay = hand_layer([4, 1, 2, 1], [1, 1, 1, 1], 4)
    ck.eq(kept("h2o(budget=0.5, recent=0.5, prefill=chunk, decode=none)", lay, 2), [0, 3], "hand: chunked")
    # Scores by hand: x = [4,1,2,1], q = 1: s = [2.871, .468, .536, .125].
    from ref_h2o import pass_attention
    s, c = pass_attention(lay, 0, np.arange(4), [0, 1, 2, 3])
    want = [1 + 4 / 5 + 4 / 7 + 4 / 8, 1 / 5 + 1 / 7 + 1 / 8, 2 / 7 + 2 / 8, 1 / 8]
    ck.check(np.allclose(s, want, rtol=1e-14) and c.tolist() == [4, 3, 2, 1], "hand: accumulated scores", (s, c))

    # GQA modes by hand (tests/policies/gqa_modes_test.cpp): keys ln [1, 2, 3, 1], query heads q = 1 and
    # q = -2, only the last prompt query accumulated, budget 2 = 1 recent + 1 heavy: mean -> 0, max -> 2,
    # expand: head 0 keeps 2, head 1 keeps 0.
    keys = np.log(np.array([1.0, 2.0, 3.0, 1.0])).reshape(1, 4, 1)
    glay = kvref.LayerData(keys, np.array([[[1.0]] * 4, [[-2.0]] * 4]), np.arange(4), 4, 0, 2, 1, 1)
    g = "h2o(budget=2, recent=1, prompt_queries=1, decode=none, gqa=%s)"
    ck.eq(kept(g % "mean", glay), [0, 3], "hand: GQA mean")
    ck.eq(kept(g % "max", glay), [2, 3], "hand: GQA max")
    ck.eq([kept(g % "expand", kvref.expanded_layer(glay), h=q) for q in range(2)], [[2, 3], [0, 3]],
          "hand: GQA expand per query head")

    rng = np.random.default_rng(5)
    specs = ["h2o(budget=0.3, recent=3, prefill=chunk)", "h2o(budget=9, recent=0.5, normalize=count)",
             "h2o(budget=0.25, recent=0, prompt_queries=4, prefill=chunk, decode=every:2)",
             "h2o(budget=7, recent=2, prefill=none)"]
    for hq, hkv, d in [(2, 2, 3), (4, 2, 2), (8, 2, 2)]:
        n, m, chunk = 29, 5, 11
        keys = rng.normal(size=(hkv, n + m, d)) * 1.5
        queries = rng.normal(size=(hq, n + m, d)) * 1.5
        lay = kvref.LayerData(keys, queries, np.arange(n + m), n, m, hq, hkv, d)
        for spec in specs:
            for h in range(hkv):
                ck.eq(kept(spec, lay, chunk, h), naive(spec, lay, h, chunk),
                      "vectorized == loop reference: Hq=%d Hkv=%d %s head %d" % (hq, hkv, spec, h))

    # Tolerance: x = [.9, .3(1+1e-9) or .6(1+1e-9), .3, .05, .6 | 1], only query 5, budget 3 = 1 recent + 2.
    spec = "h2o(budget=3, recent=1, prompt_queries=1, decode=none)"
    lay = hand_layer([0.9, 0.3 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0], [1] * 6, 6)
    ck.eq(kept(spec, lay), [0, 4, 5], "tolerance: reference selection")
    obs = np.zeros(6, dtype=bool)
    obs[[0, 4, 5]] = True
    r = h2o_replay(spec, lay, 0, None, observed=obs)
    ck.check(not r.problems and not r.near_ties, "tolerance: identical mask accepted", r.problems)
    lay2 = hand_layer([0.9, 0.6 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0], [1] * 6, 6)   # 1 and 4 near-tied
    r = h2o_replay(spec, lay2, 0, None, observed=obs)
    ck.check(not r.problems and len(r.near_ties) == 1, "tolerance: near-tie accepted and reported",
             (r.problems, r.near_ties))
    obs = np.zeros(6, dtype=bool)
    obs[[0, 3, 5]] = True                                      # 3 (0.05) instead of 4 (0.6)
    r = h2o_replay(spec, lay, 0, None, observed=obs)
    ck.check(bool(r.problems) and not r.near_ties, "tolerance: real difference rejected", (r.problems, r.near_ties))


MODELS = [("mha", 2, 2, 16, 128, 21), ("gqa2", 4, 2, 16, 200, 22), ("gqa4", 8, 2, 16, 150, 23)]
N, M = 480, 12
UNCHUNKED = ["h2o(budget=0.2)",
             "h2o(budget=0.1, recent=16, normalize=count)",
             "h2o(budget=100, recent=0.25, prompt_queries=32, decode=every:3)",
             "h2o(budget=0.3, recent=0, prefill=chunk)",
           "h2o(budget=0.2, gqa=expand)",
           "h2o(budget=0.15, recent=16, normalize=count, gqa=max)"]
CHUNKED = ["h2o(budget=0.25, recent=8, prefill=chunk)",
           "h2o(budget=0.2, prefill=chunk, normalize=count)",
           "h2o(budget=120, prompt_queries=16, prefill=chunk)",
           "h2o(budget=0.15)",
           "h2o(budget=80, recent=20, prefill=none)",
           "h2o(budget=0.25, recent=8, prefill=chunk, gqa=expand)",
           "h2o(budget=0.2, prefill=chunk, gqa=max)"]


def check_layer(ck, chunk):
    def check(spec, what, L, lay, mask):
        if spec != "full" and H2OSpec(spec).gqa == "expand":
            copies = [h2o_replay(spec, kvref.expanded_layer(lay), q, chunk) for q in range(lay.hq)]
            want = kvref.union_per_kv_head([r.kept for r in copies], lay.G)
            obs = mask.astype(bool)
            diff = np.argwhere(want != obs)
            ck.check(len(diff) == 0, what + ": kept union == union of the per-query-head reference sets",
                     "%d differ, first (head, position) %s" % (len(diff), diff[:5].tolist()))
            ck.check(all(r.evictions > 0 for r in copies), what + ": the reference evicted")
            return
        for h in range(lay.hkv):
            obs = mask[h].astype(bool)
            where = "%s head %d" % (what, h)
            if spec == "full":
                kvref.check_full(ck, where, obs)
                continue
            res = h2o_replay(spec, lay, h, chunk, observed=obs)
            ck.check(not res.problems, where + ": kept set == reference", "\n".join(res.problems))
            ck.check(res.evictions > 0, where + ": the reference evicted")
            ck.near_ties(where, res.near_ties)
    return check


def run(ck, args):
    kvref.run_kept_models(ck, args, MODELS, N, M, UNCHUNKED, CHUNKED, lambda chunk: check_layer(ck, chunk),
                          synth_args=lambda chunk: ["--query-window", N], width=N + M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
