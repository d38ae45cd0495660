#!/usr/bin/python3
"""kvsim's PyramidKV kept sets against an independent float64 numpy reference (ref_pyramidkv.py).

Self-tests (always run; alone with --self-test): the layer budget formula on policy-notes.md's
examples (T=1000 r=0.5: 936/908/64; T=10000: 9750/9444/250; r=0.9: uniform 1000; the sum over
layers equals L x the uniform budget), the per-chunk scaling, and a hand example of the selection.

Then for MHA and GQA tiny 4-layer models (layers 0, 1 and 3 traced, so three different budgets):
`kvsim synth` (n=600, m=8), `kvsim run --save-kept` with pyramidkv post_fill and chunk, fractional
and integer budgets, pyramid and uniform-fallback shapes; every final kept mask (each traced layer
and KV head) must equal the reference, up to float32 near-ties at the selection boundary (reported).
GQA (issue 19): gqa=mean and gqa=max reduce the group's window-summed attention before pooling
(KVCache-Factory pyramidkv_utils.py _reduce_group_scores); gqa=expand (KVCache-Factory's default
layout: maybe_repeat_kv_before_cache) is replayed on the layer with its KV heads repeated per query
head, and kvsim's kept file (each KV head's union of its G copies) must equal the union exactly.

usage: /usr/bin/python3 tests/reference/test_pyramidkv_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_pyramidkv as rp  # noqa: E402


def replay(p, lay, layer, num_layers, chunk, observed=None):
    return rp.gqa_guided_replay(p, lay, lambda ly: rp.pyramidkv_step(p, ly, layer, num_layers, chunk), observed, chunk)


def self_tests(ck):
    f = rp.pyramid_layer_budget
    # KVCache-Factory by hand, w=64, beta=20, L=32 (as tests/policies/pyramidkv_test.cpp).
    ck.eq([f(10000, 2112, 64, 20, l, 32) for l in (0, 1, 31)], [4058, 3933, 183], "T=10000 C=2112")
    ck.eq([f(10000, 576, 64, 20, l, 32) for l in (0, 1, 31)], [1063, 1032, 102], "T=10000 C=576: min < w, a pyramid")
    ck.eq([f(1000, 564, 64, 20, l, 32) for l in (0, 1, 31)], [1000, 972, 132], "T=1000 C=564: max clipped to T-w")
    ck.eq({f(3000, 2112, 64, 20, l, 32) for l in range(32)}, {2112}, "T < 2B: uniform branch")
    # Through the spec: budget 564 (window included) or 0.5 (round(500) + 64) at n=1000; layer l keeps
    # 1000 - 28 l, summing to 32 x 1000 - 28 x 496 = 18112 (the floored step: 64 above 32 x 564).
    for spec in ("pyramidkv(budget=564)", "pyramidkv(budget=0.5)"):
        p = rp.PolicyParams(spec)
        got = [rp.pyramid_capacity(p, 1000, [(0, 1000)], 0, l, 32) for l in range(32)]
        ck.eq((got[0], got[1], got[31], sum(got)), (1000, 972, 132, 18112), "capacity via spec " + spec)
    # Chunk mode: each chunk's share is scaled; chunks 256, 256, 88 with b=0.3, w=16, beta=3, 4 layers.
    p = rp.PolicyParams("pyramidkv(budget=0.3, window=16, beta=3, prefill=chunk)")
    chunks = kvref.prefill_chunks(600, 256)
    caps = [rp.pyramid_capacity(p, 600, chunks, 2, l, 4) for l in range(4)]
    # 256: U = 77 + 16, B = 77: min 25, max 129, steps 34 -> 145, 111, 77, 43;
    # 88: U = 26 + 16, B = 26: min 8, max 44, steps 12 -> 60, 48, 36, 24.
    ck.eq(caps, [2 * 145 + 60, 2 * 111 + 48, 2 * 77 + 36, 2 * 43 + 24], "chunk-mode scaled shares by hand")
    # Hand selection (as tests/policies/pyramidkv_test.cpp): T=8, window {7}, B=4, beta=2, 2 layers:
    # layer 0 keeps 6, layer 1 keeps 2; scores ~ x[0..6] = [3,1,4,1.5,5,9,2].
    lay = rp.hand_layer([[3, 1, 4, 1.5, 5, 9, 2, 6]], 8)
    p = rp.PolicyParams("pyramidkv(budget=4, window=1, kernel=1, beta=2)")
    for layer, want in ((0, [0, 2, 4, 5, 6, 7]), (1, [5, 7])):
        kept, _, _ = replay(p, lay, layer, 2, None)
        ck.eq(np.nonzero(kept[0])[0].tolist(), want, "hand: layer %d kept set" % layer)
    # GQA modes by hand (tests/policies/gqa_modes_test.cpp): keys ln [1, 2, 3, 1], query heads q = 1 and
    # q = -2, window {3}, one layer: budget 2 keeps mean -> 0, max -> 2, expand -> 2 (head 0) and 0 (head 1).
    keys = np.log(np.array([1.0, 2.0, 3.0, 1.0])).reshape(1, 4, 1)
    glay = kvref.LayerData(keys, np.array([[[1.0]] * 4, [[-2.0]] * 4]), np.arange(4), 4, 0, 2, 1, 1)
    for gqa, want in (("mean", [0, 3]), ("max", [2, 3]), ("expand", [0, 2, 3])):
        kept, _, _ = replay(rp.PolicyParams("pyramidkv(budget=2, window=1, kernel=1, gqa=%s)" % gqa), glay, 0, 1, None)
        ck.eq(np.nonzero(kept[0])[0].tolist(), want, "hand: GQA " + gqa)
    ex = kvref.expanded_layer(glay)
    kept, _, _ = rp.guided_replay(rp.PolicyParams("pyramidkv(budget=2, window=1, kernel=1, gqa=expand)"), ex,
                                  rp.pyramidkv_step(rp.PolicyParams("pyramidkv(budget=2, window=1, kernel=1)"), ex, 0, 1,
                                                    None))
    ck.eq([np.nonzero(k)[0].tolist() for k in kept], [[2, 3], [0, 3]], "hand: GQA expand per query head")
    # The guided comparison rejects a real difference (drop position 2 for 3 in layer 0).
    obs = np.zeros((1, 8), dtype=bool)
    obs[0, [0, 3, 4, 5, 6, 7]] = True
    _, problems, _ = replay(p, lay, 0, 2, None, obs)
    ck.check(bool(problems), "tolerance: a real difference is rejected", problems)


MODELS = [("mha", 2, 2, 16, 256, 31), ("gqa", 8, 2, 16, 296, 32)]
N, M, NUM_LAYERS, LAYERS = 600, 8, 4, [0, 1, 3]
UNCHUNKED = [
    "pyramidkv(budget=0.5)",                                          # defaults w=64 k=5 avg beta=20: pyramid
    "pyramidkv(budget=0.2, window=16, kernel=7, pooling=max, beta=2)",
    "pyramidkv(budget=200, window=32, kernel=3)",                     # min 8 < w: still a pyramid
    "pyramidkv(budget=250, window=8, kernel=5, beta=4, prefill=chunk)",  # unchunked: one chunk
    "pyramidkv(budget=0.3, window=16, kernel=5, beta=3, gqa=expand)",
    "pyramidkv(budget=0.2, window=16, kernel=7, pooling=max, beta=2, gqa=max)",
]
CHUNKED = [
    "pyramidkv(budget=0.3, window=16, kernel=5, beta=3, prefill=chunk)",
    "pyramidkv(budget=300, window=16, kernel=3, pooling=max, beta=2, prefill=chunk)",
    "pyramidkv(budget=0.25, window=8, kernel=5, beta=2, prefill=post_fill)",
    "pyramidkv(budget=0.3, window=16, kernel=5, beta=3, prefill=chunk, gqa=expand)",
    "pyramidkv(budget=0.3, window=16, kernel=5, pooling=max, beta=3, prefill=chunk, gqa=max)",
]


def run(ck, args):
    rp.run_models(ck, args, MODELS, UNCHUNKED, CHUNKED, replay, N, M, NUM_LAYERS, LAYERS)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
