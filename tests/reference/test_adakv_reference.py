#!/usr/bin/python3
"""kvsim's AdaKV kept sets against ref_adakv.py: alloc=original (default) is a step-by-step
transliteration of FFY0/AdaKV @efe4e2e adaptive_snapkv/monkeypatch/snapkv_utils.py
AdaptiveSnapKVCluster (calcul_attn_sore, update_kv_gqa); alloc=kvpress follows NVIDIA/kvpress
adakv_press.py.

Self-tests (always run; alone with --self-test): the original's cap formula on its 8-head example
and on float32/half-to-even cases; hand examples of the head-adaptive selection for both
allocations; on random GQA data, the layer total (original: H x budget up to rounding; kvpress:
exactly) and that per-head counts vary.

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers), `kvsim run --save-kept`
with adakv post_fill and chunk, fractional and integer budgets, several floor_alpha values, both
allocations; every final kept mask must equal the reference. Ties: the original leaves tie order to
torch.sort/torch.topk (unspecified); kvsim and the reference both put the lower head, then the lower
position, first. Float32 (kvsim) vs float64 (reference) near-ties at a head's selection boundary
are accepted and reported; a near-tie at the layer-wide count boundary would change a head's cap
and is reported as a failure.

usage: /usr/bin/python3 tests/reference/test_adakv_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_adakv  # noqa: E402
import ref_pyramidkv as rp  # noqa: E402


def replay(p, lay, layer, num_layers, chunk, observed=None):
    return rp.gqa_guided_replay(p, lay, lambda ly: ref_adakv.adakv_step(p, ly, chunk), observed, chunk)


def kept_sets(spec, lay, chunk=None):
    return rp.kept_sets(replay, spec, lay, chunk)


def self_tests(ck):
    # The original's cap formula: B = 400, floor_alpha 0.2 -> floor int(80.0) = 80, cap = round(0.8 c + 80).
    B, floor = ref_adakv.init_capacities(432, 32, 0.2)
    ck.eq((B, floor), (400, 80), "original: base_capacity, floor_capacity for 432 - window 32")
    caps = ref_adakv.head_caps([1010, 606, 621, 177, 205, 193, 192, 196], 0.2, floor)
    ck.eq(caps.tolist(), [888, 565, 577, 222, 244, 234, 234, 237], "original: 8-head caps")
    ck.eq(int(caps.sum()), 3201, "original: 8-head caps sum to H x B + 1 (rounding)")
    # Half to even (B=5, alpha .5, floor 2): 3.5 -> 4, 2.5 -> 2; float32: 645 x 0.7f = 451.5 -> 481.5 -> 482.
    ck.eq(ref_adakv.head_caps([3, 1], 0.5, 2).tolist(), [4, 2], "original: torch.round half to even")
    ck.eq(ref_adakv.head_caps([645], 0.3, 30).tolist(), [482], "original: float32 product (float64 gives 481)")

    # As tests/policies/adakv_test.cpp: T=6, window {5}, budget 3 (B=2). Head 0 x = [8,7,6,5,1|1]
    # (scores x/28), head 1 x = [1]*6 (1/6 each): the layer's top 4 are head 0's, counts [4, 0].
    lay = rp.hand_layer([[8, 7, 6, 5, 1, 1], [1] * 6], 6)
    for alpha, want in (("0.2", [[0, 1, 2, 5], [5]]), ("0", [[0, 1, 2, 3, 5], [5]]),
                        ("0.5", [[0, 1, 2, 5], [0, 5]]), ("1", [[0, 1, 5], [0, 1, 5]])):
        ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, floor_alpha=%s)" % alpha, lay), want,
              "hand original: floor_alpha " + alpha)
    for alpha, want in (("0", [[0, 1, 2, 3, 5], [5]]), ("0.7", [[0, 1, 2, 5], [0, 5]]), ("1", [[0, 1, 5], [0, 1, 5]])):
        ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, floor_alpha=%s, alloc=kvpress)" % alpha, lay), want,
              "hand kvpress: floor_alpha " + alpha)
    # policy-notes.md's kvpress example, scores h0=[.9,.8,.7,.6], h1=[.1,.2,.3,.05] with a window of weight .01.
    lay = rp.hand_layer([[.9, .8, .7, .6, .01], [.1, .2, .3, .05, .01]], 5)
    ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, alloc=kvpress)", lay), [[0, 1, 4], [1, 2, 4]],
          "hand kvpress: normalised scores compete across heads")
    # GQA modes by hand (tests/policies/gqa_modes_test.cpp): one KV head, keys ln [1, 2, 3, 1], query heads
    # q = 1 and q = -2, window {3}, budget 2 (B = 1): mean -> 0, max -> 2; expand: the two query heads'
    # copies share 2 scored slots, the layer's top two are head 0's position 2 (.4286) and head 1's 0
    # (.4235), caps round(0.8 x 1 + 0) = 1 each, so the KV head's union keeps 0, 2 and the window.
    keys = np.log(np.array([1.0, 2.0, 3.0, 1.0])).reshape(1, 4, 1)
    glay = kvref.LayerData(keys, np.array([[[1.0]] * 4, [[-2.0]] * 4]), np.arange(4), 4, 0, 2, 1, 1)
    for gqa, want in (("mean", [[0, 3]]), ("max", [[2, 3]]), ("expand", [[0, 2, 3]])):
        ck.eq(kept_sets("adakv(budget=2, window=1, kernel=1, gqa=%s)" % gqa, glay), want, "hand: GQA " + gqa)
    ck.eq(rp.kept_sets(lambda p, ly, *a, **k: rp.guided_replay(p, ly, ref_adakv.adakv_step(p, ly, None)),
                       "adakv(budget=2, window=1, kernel=1, gqa=expand)", kvref.expanded_layer(glay)),
          [[2, 3], [0, 3]], "hand: GQA expand, one kept set per query head")
    # Random GQA-2 layer (3 KV heads): layer totals, per-head counts vary.
    rng = np.random.default_rng(3)
    keys = rng.normal(size=(3, 80, 4)) * 2
    lay = kvref.LayerData(keys, rng.normal(size=(6, 80, 4)) * 2, np.arange(80), 80, 0, 6, 3, 4)
    for spec, cap, slack in (("adakv(budget=20, window=4, kernel=3)", 20, 4),
                             ("adakv(budget=0.25, window=4, kernel=3)", 24, 4),
                             ("adakv(budget=20, window=4, kernel=3, alloc=kvpress)", 20, 0),
                             ("adakv(budget=0.25, window=4, kernel=3, alloc=kvpress)", 24, 0)):
        sets = kept_sets(spec, lay)
        total = sum(len(s) for s in sets)
        ck.check(abs(total - 3 * cap) <= slack, "random: layer total for " + spec, (total, 3 * cap))
        ck.check(len({len(s) for s in sets}) > 1, "random: per-head counts vary for " + spec, [len(s) for s in sets])


MODELS = [("mha", 2, 2, 16, 256, 41), ("gqa", 8, 4, 16, 296, 42)]
N, M = 600, 8
UNCHUNKED = [
    "adakv(budget=0.3)",                                               # defaults: w=32 k=7 max alpha=0.2 original
    "adakv(budget=0.2, window=16, kernel=7, pooling=avg, floor_alpha=0.5)",
    "adakv(budget=150, window=32, kernel=3, floor_alpha=0)",
    "adakv(budget=0.3, window=64, kernel=5, pooling=avg, alloc=kvpress)",
    "adakv(budget=0.2, window=16, kernel=7, floor_alpha=0.5, alloc=kvpress)",
    "adakv(budget=0.3, gqa=expand)",
    "adakv(budget=0.2, window=16, kernel=5, gqa=max)",
    "adakv(budget=0.3, window=16, kernel=7, alloc=kvpress, gqa=expand)",
]
CHUNKED = [
    "adakv(budget=0.3, window=16, kernel=5, prefill=chunk)",
    "adakv(budget=120, window=8, kernel=3, pooling=avg, floor_alpha=0.4, prefill=chunk)",
    "adakv(budget=0.1, window=8, kernel=5, prefill=post_fill)",
    "adakv(budget=0.3, window=16, kernel=5, alloc=kvpress, prefill=chunk)",
    "adakv(budget=120, window=8, kernel=3, floor_alpha=0.4, alloc=kvpress, prefill=chunk)",
    "adakv(budget=0.3, window=16, kernel=5, prefill=chunk, gqa=expand)",
    "adakv(budget=0.3, window=16, kernel=5, pooling=avg, prefill=chunk, gqa=max)",
]


def run(ck, args):
    rp.run_models(ck, args, MODELS, UNCHUNKED, CHUNKED, replay, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
