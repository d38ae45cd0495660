#!/usr/bin/python3
"""kvsim's LAVa kept sets against an independent numpy reference (ref_lava.py).

Self-tests (always run; alone with --self-test): the hand examples of tests/policies/lava_test.cpp
(the value scale decides between heads; floor_alpha shares; the GQA maximum of per-query-head pooled
scores) and the layer total H x capacity on random data.

Self-test of the entropy layer split: the hand example of Lava.LayersShareTheBudgetByTheEntropyOf-
TheirScoreMaps (normalized entropies 1 and 1.984375/3; capacities 6 and 4).

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers, both traced, values
included), `kvsim run --save-kept` with lava post_fill (layer_budget entropy and uniform) and chunk
(uniform), fractional and integer budgets, several floor_alpha values and both poolings; and a
three-layer GQA model with layers 0 and 1 traced (the traced layers share their uniform total).
Every final kept mask must equal the float64 reference, or (reported as a note) the same reference
computed in float32, kvsim's precision, where a float64 near-tie falls the other way; every layer
that evicted must hold exactly H x its capacity prompt entries, each head at least its window; the
entropy capacities must sum to the traced layers' uniform total and differ from it somewhere.

usage: /usr/bin/python3 tests/reference/test_lava_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_lava  # noqa: E402

try:
    import h5py
except ImportError:  # reported by kvref.common_args
    h5py = None


def hand(x_per_head, values, q=None):
    """d=1 layer: KV head h has keys ln x_h; query head g is the constant q[g] (default 1 for one
    query head per KV head), so window query g attends to j with weight x_j^q_g; values given."""
    H = len(x_per_head)
    n = len(x_per_head[0])
    keys = np.log(np.asarray(x_per_head, dtype=np.float64)).reshape(H, n, 1)
    q = [1.0] * H if q is None else q
    qs = np.asarray([np.full((n, 1), v) for v in q], dtype=np.float64)
    lay = kvref.LayerData(keys, qs, np.arange(n), n, 0, len(q), H, 1)
    lay.values = np.asarray(values, dtype=np.float64).reshape(H, n, 1)
    return lay


def kept_sets(spec, lay):
    kept, _ = ref_lava.replay(ref_lava.LavaParams(spec), lay)
    return [np.nonzero(k)[0].tolist() for k in kept]


def self_tests(ck):
    x = [[8, 7, 6, 5, 1, 1], [1.2, 1.1, 4, .9, .8, 2]]
    scaled = hand(x, [[1, 1, 1, 1, 1, 100], [1, 1, 1, -3, 1, 1]])
    ck.eq(kept_sets("lava(budget=3, window=1, kernel=1, floor_alpha=0)", scaled), [[0, 5], [0, 1, 2, 5]],
          "hand: head 1's value scale 3 (window excluded) wins three of the four picks")
    ck.eq(kept_sets("lava(budget=3, window=1, kernel=1, floor_alpha=0)", hand(x, np.ones((2, 6)))),
          [[0, 1, 2, 5], [2, 5]], "hand: equal value scales: plain attention decides")
    ck.eq(kept_sets("lava(budget=3, window=1, kernel=1, floor_alpha=1, alloc=exact)", scaled), [[0, 1, 5], [0, 2, 5]],
          "hand: floor_alpha 1 -> S/H = 2 per head")
    lay = hand([[1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 10], [9, 8, 7, 6, 5, 4, 1]], np.ones((2, 7)))
    for alpha, want in (("0", [[6], [0, 1, 2, 3, 4, 5, 6]]), ("0.5", [[0, 6], [0, 1, 2, 3, 4, 6]]),
                        ("0.7", [[0, 1, 6], [0, 1, 2, 3, 6]]), ("1", [[0, 1, 2, 6], [0, 1, 2, 6]])):
        ck.eq(kept_sets("lava(budget=4, window=1, kernel=1, floor_alpha=%s, alloc=exact)" % alpha, lay), want,
              "hand: floor_alpha %s shares" % alpha)
    # alloc=original: every score of head 1 beats head 0's, count = [0, 6] of S = 6; C = 4, so head h keeps
    # round((1 - a) count_h + int(a 4)) besides its window: a 0.5 -> 2 and 5; a 1 -> 4 and 4 (9 and 10 in all,
    # not 8); a 0 -> the plain top 6.
    for alpha, want in (("0", [[6], [0, 1, 2, 3, 4, 5, 6]]), ("0.5", [[0, 1, 6], [0, 1, 2, 3, 4, 6]]),
                        ("1", [[0, 1, 2, 3, 6], [0, 1, 2, 3, 6]])):
        ck.eq(kept_sets("lava(budget=4, window=1, kernel=1, floor_alpha=%s)" % alpha, lay), want,
              "hand: alloc=original floor_alpha %s caps" % alpha)
    gqa = hand([[1, 1, 2, 4, 4, 1]], np.ones((1, 6)), q=[1.0, -2.0])
    ck.eq(kept_sets("lava(budget=3, window=1, kernel=1)", gqa), [[3, 4, 5]], "hand: GQA maximum, not mean")
    gqa = hand([[.5, .5, .5, 1, 2, 1]], np.ones((1, 6)), q=[1.0, -1.0])
    ck.eq(kept_sets("lava(budget=2, window=1, kernel=3, pooling=avg)", gqa), [[1, 5]],
          "hand: each query head pooled before the GQA maximum")
    # Random GQA-2 layer: layer total H x capacity, uneven heads, each head keeps its window.
    rng = np.random.default_rng(3)
    lay = kvref.LayerData(rng.normal(size=(3, 80, 4)) * 2, rng.normal(size=(6, 80, 4)) * 2, np.arange(80), 80, 0, 6, 3, 4)
    lay.values = rng.normal(size=(3, 80, 4))
    for spec, cap in (("lava(budget=20, window=4, kernel=3, alloc=exact)", 20),
                      ("lava(budget=0.25, window=4, kernel=3, alloc=exact)", 24),
                      ("lava(budget=0.25, window=4, kernel=5, floor_alpha=0.6, pooling=avg, alloc=exact)", 24)):
        sets = kept_sets(spec, lay)
        ck.eq(sum(len(s) for s in sets), 3 * cap, "random: layer total for " + spec)
        ck.check(len({len(s) for s in sets}) > 1, "random: per-head counts vary for " + spec, [len(s) for s in sets])
        ck.check(all(set(range(76, 80)) <= set(s) for s in sets), "random: windows kept for " + spec)
    # The entropy layer split (hand example of lava_test.cpp).
    flat = hand([[1] * 9], np.ones((1, 9)))
    peaked = hand([[64, 32, 16, 8, 4, 2, 1, 1, 1]], np.ones((1, 9)))
    p = ref_lava.LavaParams("lava(budget=5, window=1, kernel=1, alloc=exact)")
    ck.close(ref_lava.layer_statistic(p, flat), 1.0, "hand: flat score map, normalized entropy 1", rel=1e-9)
    ck.close(ref_lava.layer_statistic(p, peaked), 1.984375 / 3, "hand: halving score map", rel=1e-9)
    ck.eq(ref_lava.entropy_capacities(p, {0: flat, 1: peaked}, 9), {0: 6, 1: 4}, "hand: entropy split 4.815/3.185")
    original = ref_lava.LavaParams("lava(budget=5, window=1, kernel=1)")
    ck.eq(ref_lava.entropy_capacities(original, {0: flat, 1: peaked}, 9), {0: 5, 1: 4},
          "hand: alloc=original floors the split 4.815/3.185 (int(density))")
    kept, _ = ref_lava.replay(p, peaked, capacity=4)
    ck.eq(np.nonzero(kept[0])[0].tolist(), [0, 1, 2, 8], "hand: the peaked layer keeps its top 3 + window")


MODELS = [("mha", 2, 2, 16, 256, 41), ("gqa", 8, 4, 16, 296, 42)]
PARTIAL = [("gqa-3layers", 8, 4, 16, 296, 43)]   # num_layers 3, layers 0 and 1 traced
N, M = 600, 8
UNCHUNKED = [
    "lava(budget=0.3)",                                   # defaults: w=32 k=7 max alpha=0.2 alloc=original
    "lava(budget=0.3, alloc=exact)",
    "lava(budget=0.2, window=16, kernel=5, pooling=avg, floor_alpha=0.5, alloc=exact)",
    "lava(budget=0.2, window=16, kernel=5, pooling=avg, floor_alpha=0.5)",
    "lava(budget=150, window=32, kernel=3, floor_alpha=0, layer_budget=uniform)",
]
CHUNKED = [
    "lava(budget=0.3, window=16, kernel=5, layer_budget=uniform, prefill=chunk)",
    "lava(budget=120, window=8, kernel=3, pooling=avg, floor_alpha=0.4, layer_budget=uniform, prefill=chunk)",
    "lava(budget=120, window=8, kernel=3, pooling=avg, floor_alpha=0.4, layer_budget=uniform, prefill=chunk, "
    "alloc=exact)",
    "lava(budget=0.1, window=8, kernel=5, prefill=post_fill, alloc=exact)",
    "lava(budget=0.1, window=8, kernel=5, prefill=post_fill)",
]

# The traced layers of the model being checked (load() sets it; the entropy split needs them all,
# the per-layer check sees one). Models run one after another.
TRACED = {}


def load(ck, tag, shape, trace):
    _, lays = kvref.read_trace_layers(trace)
    if not ck.eq(sorted(lays), [0, 1], "%s: traced layers" % tag):
        return None
    with h5py.File(trace, "r") as f:
        for L, lay in lays.items():
            lay.values = f["requests"]["0"]["layer_%d" % L]["values"][...].astype(np.float64)
    TRACED.clear()
    TRACED.update(lays)
    return lays


def capacity_of(ck, p, what, L, dtype):
    """Layer L's capacity under p's layer split (None: the uniform rule of the replay)."""
    if p.layer_budget != "entropy":
        return None
    caps = ref_lava.entropy_capacities(p, TRACED, TRACED[L].n, dtype)
    if dtype is np.float64 and not ref_lava.original_alloc(p):
        n = TRACED[L].n
        uniform = ref_lava.rp.uniform_capacity(p, n, [(0, n)], 0)
        ck.eq(sum(caps.values()), len(caps) * uniform, what + ": entropy capacities sum to the traced total")
        SPLITS.append(len(set(caps.values())) > 1)
    return caps[L]


SPLITS = []


def make_check(ck, chunk):
    def check(spec, what, L, lay, mask):
        p = ref_lava.LavaParams(spec)
        obs = mask.astype(bool)
        want, cap = ref_lava.replay(p, lay, chunk, capacity=capacity_of(ck, p, what, L, np.float64))
        if not np.array_equal(want, obs):
            want32, _ = ref_lava.replay(p, lay, chunk, np.float32, capacity_of(ck, p, what, L, np.float32))
            if np.array_equal(want32, obs):
                ck.note("%s: matches the float32 reference (a float64 near-tie falls the other way)" % what)
            else:
                diff = np.argwhere(want != obs)
                ck.check(False, what + ": kept masks == reference",
                         "differs at %d (head, position) pairs, first %s" % (len(diff), diff[:6].tolist()))
                return
        ck.check(True, what + ": kept masks == reference")
        if cap is not None and not ref_lava.original_alloc(p):
            ck.eq(int(obs[:, :lay.n].sum()), lay.hkv * cap, what + ": layer keeps H x capacity prompt entries")
    return check


def run(ck, args):
    for models, num_layers in ((MODELS, 2), (PARTIAL, 3)):
        kvref.run_kept_models(ck, args, models, N, M, UNCHUNKED, CHUNKED, lambda chunk: make_check(ck, chunk),
                              synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", 64], load=load,
                              num_layers=num_layers, with_full=False, spec_prefix=lambda spec: "lava(",
                              shape_label="kept shape")
    ck.check(any(SPLITS), "the entropy split differs from the uniform capacity in some model",
             "%d splits, all uniform" % len(SPLITS))


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
