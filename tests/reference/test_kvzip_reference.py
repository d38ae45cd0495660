#!/usr/bin/python3
"""kvsim's kvzip kept sets against an independent float64 numpy reference (ref_kvzip.py).

Self-tests (always run; alone with --self-test): the hand examples of
tests/policies/kvzip_test.cpp (d=1 keys ln x, so a reconstruction query q gives attention
x^q / sum x^q; max over queries, not mean; per-head and pooled allocation; head level; generated
tokens outranking the prompt; chunked prefill), and the vectorised scores against a plain loop.

Then for MHA and GQA tiny models: `kvsim synth --recon-queries R` (every prompt position, and
strided), `kvsim run --save-kept` with kvzip at token and head level, pooled and per-head, post-fill,
chunked and decode-step eviction, fractional and integer budgets; every final kept mask must equal
the reference up to float32-vs-float64 near-ties at the selection boundary (reported). Finally a
trace synthesised without recon queries must be refused with an error naming recon_queries.

usage: /usr/bin/python3 tests/reference/test_kvzip_reference.py --kvsim BIN --workdir DIR
"""
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_kvzip import kvzip_replay, kvzip_scores  # noqa: E402


def hand(generated=0):
    """As HandKvzip in kvzip_test.cpp: head 0 x=[1/4,4,2,1,1/2,8], queries 3 and -1; head 1
    x=[10,30,25,20,1,14], queries 1 and 1. Generated positions get keys 0 (x = 1)."""
    xs = [[0.25, 4, 2, 1, 0.5, 8] + [1] * generated, [10, 30, 25, 20, 1, 14] + [1] * generated]
    keys = np.log(np.asarray(xs, dtype=np.float64))[:, :, None]
    lay = kvref.LayerData(keys, np.ones((2, 6 + generated, 1)), np.arange(6 + generated), 6, generated, 2, 2, 1)
    recon = np.array([[[3.0], [-1.0]], [[1.0], [1.0]]])
    return lay, recon


def kept(spec, generated=0, chunk=None):
    lay, recon = hand(generated)
    r = kvzip_replay(spec, lay, recon, chunk)
    return [np.nonzero(k)[0].tolist() for k in r.kept]


def self_tests(ck):
    lay, recon = hand()
    S = kvzip_scores(lay, recon)
    ck.check(np.allclose(S[0], [32 / 63, 64 / 585.140625, 0.5 / 7.875, 1 / 7.875, 2 / 7.875, 512 / 585.140625]),
             "hand: head 0 scores = max over the two queries", S[0])
    ck.check(np.allclose(S[1], [.1, .3, .25, .2, .01, .14]), "hand: head 1 scores", S[1])
    ck.eq(kept("kvzip(budget=4, alloc=head, sinks=1, window=1)"), [[0, 3, 4, 5], [0, 1, 2, 5]],
          "hand: per head (max ranks 3 above 1; a mean would not)")
    ck.eq(kept("kvzip(budget=4, sinks=1, window=1)"), [[0, 4, 5], [0, 1, 2, 3, 5]], "hand: pooled over the layer")
    ck.eq(kept("kvzip(budget=3, alloc=head, sinks=0, window=1)"), [[0, 4, 5], [1, 2, 5]], "hand: no sinks")
    ck.eq(kept("kvzip(level=head, budget=0.5, sinks=1, window=1)"), [[0, 5], list(range(6))], "hand: head level")
    ck.eq(kept("kvzip(level=head, budget=0.5, sinks=0, window=2)"), [list(range(6)), [4, 5]], "hand: head level, no sinks")
    ck.eq(kept("kvzip(budget=4, alloc=head, sinks=1, window=1, decode=step)", generated=2)[0], [0, 5, 6, 7],
          "hand: decode steps keep generated tokens")
    ck.eq(kept("kvzip(budget=0.2, alloc=head, sinks=1, window=1, prefill=chunk)", chunk=3)[0], [0, 3, 4, 5],
          "hand: chunked prefill")
    # Vectorised scores == a plain loop (GQA-3).
    rng = np.random.default_rng(2)
    keys = rng.normal(size=(2, 30, 4))
    lay = kvref.LayerData(keys, rng.normal(size=(6, 30, 4)), np.arange(30), 28, 2, 6, 2, 4)
    recon = rng.normal(size=(6, 9, 4)) * 1.5
    S = kvzip_scores(lay, recon)
    want = np.zeros((2, 28))
    for h in range(2):
        for g in range(3 * h, 3 * h + 3):
            for i in range(9):
                w = [math.exp(sum(recon[g, i, c] * keys[h, j, c] for c in range(4)) / 2) for j in range(28)]
                for j in range(28):
                    want[h, j] = max(want[h, j], w[j] / sum(w))
    ck.check(np.allclose(S, want, rtol=1e-12), "loop == vectorised scores")


def load(ck, tag, shape, trace):
    """{layer: LayerData with .recon} from the trace, checking recon_queries' shape."""
    import h5py
    hq, _, d = shape
    _, lays = kvref.read_trace_layers(trace)
    with h5py.File(trace, "r") as f:
        for L, lay in lays.items():
            g = f["requests/0/layer_%d" % L]
            if not ck.check("recon_queries" in g, "%s: layer %d has recon_queries" % (tag, L)):
                return None
            lay.recon = g["recon_queries"][...].astype(np.float64)
            ck.eq((lay.recon.shape[0], lay.recon.shape[2]), (hq, d), "%s: layer %d recon_queries shape" % (tag, L))
    return lays


def check_layer(ck, chunk):
    def check(spec, what, L, lay, mask):
        obs = mask.astype(bool)
        if spec == "full":
            kvref.check_full(ck, what, obs)
            return
        r = kvzip_replay(spec, lay, lay.recon, chunk, observed=obs, layer=L, num_layers=2)
        ck.check(not r.problems, what + ": kept masks == reference", "\n".join(r.problems))
        ck.check(r.evictions > 0, what + ": the reference evicted")
        ck.near_ties(what, r.near_ties)
    return check


# (tag, num_q_heads, num_kv_heads, head_dim, chunk, seed); recon queries per model below.
MODELS = [("mha", 2, 2, 16, 128, 51), ("gqa", 8, 2, 16, 200, 52)]
RECON = {"mha": 480, "gqa": 160}
N, M = 480, 12
UNCHUNKED = ["kvzip(budget=0.2)", "kvzip(budget=0.25, alloc=head, sinks=0, window=8)",
             "kvzip(level=head, budget=0.5, window=16)", "kvzip(budget=100, window=16, decode=step)",
             "kvzip(budget=0.3, alloc=head, decode=every:4)"]
CHUNKED = ["kvzip(budget=0.3, prefill=chunk)", "kvzip(budget=0.2, alloc=head, window=8, prefill=chunk, decode=every:3)",
           "kvzip(level=head, budget=0.6, window=24, prefill=chunk, decode=step)", "kvzip(budget=0.1)"]


def run(ck, args):
    for tag, hq, hkv, d, chunk, seed in MODELS:
        def compare(kept_file, specs, lays, sc_chunk, where):
            kvref.compare_kept(ck, kept_file, specs, lays, where, check_layer(ck, sc_chunk))
        kvref.run_kept_model(ck, args, tag, hq, hkv, d, N, M, seed, kvref.two_scenarios(chunk, UNCHUNKED, CHUNKED),
                             compare, ["--recon-queries", RECON[tag]],
                             load=lambda trace, tag=tag, shape=(hq, hkv, d): load(ck, tag, shape, trace))
    # Without recon queries: refused, naming the dataset.
    made = kvref.synth_trace(ck, args, "norecon", 2, 2, 16, 200, 4, 53)
    if made is None:
        return
    wd, model_ini, _ = made
    scen = kvref.write_ini(os.path.join(wd, "s.ini"), [("model", [("preset", model_ini)]),
                                                        ("workload", [("trace", "trace.h5")]),
                                                        ("policy", [("spec", "kvzip")])])
    ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", os.path.join(wd, "out")])
    ck.check(not ok and re.search(r"trace\.h5 has no dataset /requests/0/layer_0/recon_queries", msg),
             "kvzip on a trace without recon_queries is refused naming the file and dataset", msg)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
