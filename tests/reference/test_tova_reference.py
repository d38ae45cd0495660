#!/usr/bin/python3
"""kvsim's tova kept sets against an independent float64 numpy reference (ref_tova.py).

Self-tests (always run; alone with --self-test): the reference on the hand examples of
tests/policies/tova_test.cpp (d=1 keys ln x so attention is proportional to x; two KV heads whose
head-averaged attention picks a set neither head would pick alone), the reference's scores against
a plain loop, and the guided comparison's tolerance.

Then for MHA, GQA-2 and GQA-4 tiny models: `kvsim synth` a trace (n=480, m=12, two layers,
queries stored at the end of every chunk), `kvsim run --save-kept` with tova under post_fill,
chunk and decode-only eviction, every step or every K decode steps, fractional and integer
budgets; each layer's KV heads must all hold the same set, equal to the reference's up to
float32-vs-float64 near-ties at the selection boundary (reported). full must keep everything.

usage: /usr/bin/python3 tests/reference/test_tova_reference.py --kvsim BIN --workdir DIR
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_tova import tova_replay, tova_scores  # noqa: E402


def hand_layer(xs, qs, n):
    """One query head per KV head (MHA), d=1: keys ln x, queries q per position."""
    keys = np.log(np.asarray(xs, dtype=np.float64))[:, :, None]
    queries = np.asarray(qs, dtype=np.float64)[:, :, None]
    h = len(xs)
    return kvref.LayerData(keys, queries, np.arange(queries.shape[1]), n, keys.shape[1] - n, h, h, 1)


def kept(spec, layer, chunk=None):
    return np.nonzero(tova_replay(spec, layer, chunk).kept)[0].tolist()


def self_tests(ck):
    lay = hand_layer([[1, 2, 4, 1, 2], [6, 1, 1, 2, 1]], [[1, 1, 1, 1, 1], [1, 1, 1, 1, -1]], 4)
    ck.check(np.allclose(tova_scores(lay, np.arange(4), 3), [0.3625, 0.175, 0.3, 0.1625], rtol=1e-14),
             "hand: mean over all heads", tova_scores(lay, np.arange(4), 3))
    ck.eq(kept("tova(budget=2, decode=none)", lay), [0, 2, 4], "hand: post-fill {0,2}")
    ck.eq(kept("tova(budget=2)", lay), [2, 4], "hand: decode step")
    ck.eq(kept("tova(budget=3)", lay), [1, 2, 4], "hand: budget 3 (exact tie -> lower position)")
    ck.eq(kept("tova(budget=0.5, prefill=chunk, decode=none)", lay, 2), [0, 2, 4], "hand: chunked prefill")
    ck.eq(kept("tova(budget=0.5, prefill=chunk)", lay, 2), [2, 4], "hand: chunked prefill + decode")

    rng = np.random.default_rng(3)
    for hq, hkv, d in [(2, 2, 3), (4, 2, 2), (8, 2, 4)]:
        n, m = 20, 3
        keys = rng.normal(size=(hkv, n + m, d))
        queries = rng.normal(size=(hq, n + m, d))
        lay = kvref.LayerData(keys, queries, np.arange(n + m), n, m, hq, hkv, d)
        cache = np.array([0, 3, 4, 9, 15, 19, 20])
        want = np.zeros(len(cache))
        for g in range(hq):
            w = [math.exp(sum(queries[g, 20, c] * keys[g // (hq // hkv), p, c] for c in range(d)) / math.sqrt(d))
                 for p in cache]
            want += np.array(w) / sum(w) / hq
        ck.check(np.allclose(tova_scores(lay, cache, 20), want, rtol=1e-12), "loop == vectorized scores Hq=%d" % hq)

    lay = hand_layer([[0.9, 0.3 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0]], [[1] * 6], 6)
    spec = "tova(budget=3, decode=none)"
    ck.eq(kept(spec, lay), [0, 4, 5], "tolerance: reference selection")
    obs = np.zeros(6, dtype=bool)
    obs[[0, 4, 5]] = True
    lay2 = hand_layer([[0.9, 0.6 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0]], [[1] * 6], 6)
    r = tova_replay(spec, lay2, None, observed=obs)
    ck.check(not r.problems and len(r.near_ties) == 1, "tolerance: near-tie accepted", (r.problems, r.near_ties))
    obs = np.zeros(6, dtype=bool)
    obs[[0, 3, 5]] = True
    r = tova_replay(spec, lay, None, observed=obs)
    ck.check(bool(r.problems) and not r.near_ties, "tolerance: real difference rejected", (r.problems, r.near_ties))


MODELS = [("mha", 2, 2, 16, 128, 31), ("gqa2", 4, 2, 16, 200, 32), ("gqa4", 8, 2, 16, 150, 33)]
N, M = 480, 12
UNCHUNKED = ["tova(budget=0.2)", "tova(budget=50, decode=every:2)", "tova(budget=0.3, prefill=chunk)",
             "tova(budget=64, prefill=none)"]
CHUNKED = ["tova(budget=0.3, prefill=chunk)", "tova(budget=0.1)", "tova(budget=70, prefill=chunk, decode=every:4)",
           "tova(budget=0.25, decode=none)"]


def check_layer(ck, chunk):
    def check(spec, what, L, lay, mask):
        obs = mask.astype(bool)
        if spec == "full":
            kvref.check_full(ck, what, obs)
            return
        ck.check(all(np.array_equal(obs[0], obs[h]) for h in range(lay.hkv)), what + ": one set for all KV heads")
        res = tova_replay(spec, lay, chunk, observed=obs[0])
        ck.check(not res.problems, what + ": kept set == reference", "\n".join(res.problems))
        ck.check(res.evictions > 0, what + ": the reference evicted")
        ck.near_ties(what, res.near_ties)
    return check


def run(ck, args):
    kvref.run_kept_models(ck, args, MODELS, N, M, UNCHUNKED, CHUNKED, lambda chunk: check_layer(ck, chunk),
                          synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", 1], width=N + M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
