#!/usr/bin/python3
"""kvsim's AdaKV kept sets against an independent float64 numpy reference (ref_adakv.py).

Self-tests (always run; alone with --self-test): hand examples of the head-adaptive selection
(policy-notes.md's kvpress example adapted: one head takes the whole layer budget; the safeguard
alpha gives every head a floor), and the layer total H x capacity.

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers), `kvsim run --save-kept`
with adakv post_fill and chunk, fractional and integer budgets, several alpha_safeguard values;
every final kept mask must equal the reference up to float32 near-ties at the selection boundary
(reported), and every layer must hold exactly H x capacity prompt entries when it evicted.

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
    return rp.guided_replay(p, lay, ref_adakv.adakv_step(p, lay, chunk), observed, chunk)


def kept_sets(spec, lay, chunk=None):
    return rp.kept_sets(replay, spec, lay, chunk)


def self_tests(ck):
    # As tests/policies/adakv_test.cpp: T=6, window {5}, B=3. Head 0 x = [8,7,6,5,1|1] (scores x/28),
    # head 1 x = [1]*6 (1/6 each): the 4 global picks all go to head 0.
    lay = rp.hand_layer([[8, 7, 6, 5, 1, 1], [1] * 6], 6)
    ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, alpha_safeguard=0)", lay), [[0, 1, 2, 3, 5], [5]],
          "hand: alpha 0 -> head 0 takes the layer budget")
    ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, alpha_safeguard=0.7)", lay), [[0, 1, 2, 5], [0, 5]],
          "hand: alpha 0.7 -> floor(2.1) = 2 = window + 1 safe entry per head")
    ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1, alpha_safeguard=1)", lay), [[0, 1, 5], [0, 1, 5]],
          "hand: alpha 1 -> uniform SnapKV")
    # policy-notes.md example, scores h0=[.9,.8,.7,.6], h1=[.1,.2,.3,.05] with a window of weight .01.
    lay = rp.hand_layer([[.9, .8, .7, .6, .01], [.1, .2, .3, .05, .01]], 5)
    ck.eq(kept_sets("adakv(budget=3, window=1, kernel=1)", lay), [[0, 1, 4], [1, 2, 4]],
          "hand: normalised scores compete across heads")
    # GQA-2 group mean, MHA layer total: random data, layer total = H x capacity.
    rng = np.random.default_rng(3)
    keys = rng.normal(size=(3, 80, 4)) * 2
    lay = kvref.LayerData(keys, rng.normal(size=(6, 80, 4)) * 2, np.arange(80), 80, 0, 6, 3, 4)
    for spec, cap in (("adakv(budget=20, window=4, kernel=3)", 20), ("adakv(budget=0.25, window=4, kernel=3)", 24)):
        sets = kept_sets(spec, lay)
        ck.eq(sum(len(s) for s in sets), 3 * cap, "random: layer total for " + spec)
        ck.check(len({len(s) for s in sets}) > 1, "random: per-head counts vary for " + spec, [len(s) for s in sets])


MODELS = [("mha", 2, 2, 16, 256, 41), ("gqa", 8, 4, 16, 296, 42)]
N, M = 600, 8
UNCHUNKED = [
    "adakv(budget=0.3)",                                               # defaults: w=64 k=5 avg alpha=0.2
    "adakv(budget=0.2, window=16, kernel=7, pooling=max, alpha_safeguard=0.5)",
    "adakv(budget=150, window=32, kernel=3, alpha_safeguard=0)",
]
CHUNKED = [
    "adakv(budget=0.3, window=16, kernel=5, prefill=chunk)",
    "adakv(budget=120, window=8, kernel=3, pooling=max, alpha_safeguard=0.4, prefill=chunk)",
    "adakv(budget=0.1, window=8, kernel=5, prefill=post_fill)",
]


def run(ck, args):
    rp.run_models(ck, args, MODELS, UNCHUNKED, CHUNKED, replay, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
