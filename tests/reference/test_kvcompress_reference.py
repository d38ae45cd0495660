#!/usr/bin/python3
"""kvsim's kvcompress kept sets against an independent float64 numpy reference (ref_kvcompress.py).

Self-tests (always run; alone with --self-test): the hand example of
tests/policies/kvcompress_test.cpp (blocks chosen across two heads by hand), and on random GQA data
the block structure: every head loses a multiple of block_tokens, keeps its window, and the layer
ends within block_tokens above H x capacity.

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers), `kvsim run --save-kept`
with kvcompress post_fill and chunk, fractional and integer budgets, several block sizes; every
final kept mask must equal the reference's exactly (seeded data: any difference is a failure), and
with post_fill every head's evicted count must be a multiple of block_tokens.

usage: /usr/bin/python3 tests/reference/test_kvcompress_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_kvcompress  # noqa: E402
import ref_window_squares as rw  # noqa: E402


def sets(mask):
    return [np.nonzero(k)[0].tolist() for k in mask]


def self_tests(ck):
    lay = rw.hand_layer([[1, 2, 3, 4, 5, 6, 7, 4], [8, 1, 8, 1, 8, 1, 8, 4]], 8)
    cases = [("6", 2, [[2, 3, 4, 5, 6, 7], [0, 2, 4, 5, 6, 7]]), ("5", 2, [[4, 5, 6, 7], [0, 2, 4, 5, 6, 7]]),
             ("4", 2, [[6, 7], [0, 2, 4, 5, 6, 7]]), ("5", 3, [[3, 4, 5, 6, 7], [0, 2, 4, 6, 7]]),
             ("4", 3, [[3, 4, 5, 6, 7], [0, 2, 4, 6, 7]]), ("7", 3, [list(range(8))] * 2)]
    for b, bs, want in cases:
        spec = "kvcompress(budget=%s, block_tokens=%d, window=1, kernel=1)" % (b, bs)
        ck.eq(sets(ref_kvcompress.kept_mask(spec, lay)), want, "hand: " + spec)
    # Max pooling (k=3) of the squares x^2: head 0 [1,4,9,16,25,36,49]/32^2 -> [4,9,16,25,36,49,49]/32^2,
    # head 1 [64,1,64,...]/39^2 -> 64/39^2 = .0421 everywhere. Budget 5, blocks of 2: evict 3 of
    # h0 {0,1} (.0088), h0 {2,3} (.0244), h1 {0,1} (.0421), h1 {2,3}, h1 {4,5}, h0 {4,5} (.0479).
    spec = "kvcompress(budget=5, block_tokens=2, window=1, kernel=3)"
    ck.eq(sets(ref_kvcompress.kept_mask(spec, lay)), [[4, 5, 6, 7], [2, 3, 4, 5, 6, 7]], "hand: " + spec)
    rng = np.random.default_rng(7)
    lay = kvref.LayerData(rng.normal(size=(4, 200, 4)) * 2, rng.normal(size=(8, 200, 4)) * 2, np.arange(200),
                          200, 0, 8, 4, 4)
    for bs in (1, 5, 16):
        cache = [np.arange(200)] * 4
        out = ref_kvcompress.evict_layer(lay, cache, np.arange(192, 200), 50, bs, 7)
        counts = [len(r) for r in out]
        ck.check(all((200 - c) % bs == 0 for c in counts), "random: whole blocks of %d" % bs, counts)
        ck.check(all(set(range(192, 200)) <= set(r.tolist()) for r in out), "random: window kept, blocks of %d" % bs)
        ck.check(200 <= sum(counts) < 200 + bs, "random: layer total within a block of 4 x 50", counts)
        ck.check(len(set(counts)) > 1, "random: per-head counts vary", counts)


MODELS = [("mha", 2, 2, 16, 256, 41), ("gqa", 8, 4, 16, 296, 42)]
N, M = 600, 8
UNCHUNKED = ["kvcompress", "kvcompress(budget=0.1, block_tokens=8, window=16, kernel=1)",
             "kvcompress(budget=150, block_tokens=5, window=64, kernel=3)"]
CHUNKED = ["kvcompress(budget=0.3, block_tokens=4, window=16, prefill=chunk)",
           "kvcompress(budget=120, block_tokens=16, window=8, kernel=1, prefill=chunk)",
           "kvcompress(budget=0.2, block_tokens=1, window=32, kernel=5, prefill=post_fill)"]


def run(ck, args):
    def make_check(chunk):
        def check(spec, what, L, lay, mask):
            want = ref_kvcompress.kept_mask(spec, lay, chunk)
            rw.compare_masks(ck, what, mask.astype(bool), want)
            budget, bs, window, _, prefill = ref_kvcompress.params(spec)
            kept = mask[:, :lay.n].sum(axis=1)
            if prefill == "post_fill":
                ck.check(all((lay.n - k) % bs == 0 for k in kept), what + ": evicted counts are whole blocks",
                         kept.tolist())
            print("%s: kept per head %s of %d" % (what, kept.tolist(), lay.n))
        return check

    kvref.run_kept_models(ck, args, MODELS, N, M, UNCHUNKED, CHUNKED, make_check,
                          synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", 64], with_full=False,
                          spec_prefix=lambda spec: "kvcompress(")


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
