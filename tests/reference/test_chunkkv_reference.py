#!/usr/bin/python3
"""kvsim's ChunkKV kept sets against an independent float64 numpy reference (ref_chunkkv.py).

Self-tests (always run; alone with --self-test): hand examples (the layer keeps the chunk with the
best head-summed mean even where one head alone prefers another; the budget rounds down to whole
chunks; no whole chunk -> SnapKV per head), and the count rule.

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers), `kvsim run --save-kept`
with chunkkv post_fill and chunk, fractional and integer budgets, several chunk lengths and the
no-whole-chunk fallback; every final kept mask must equal the reference up to float32 near-ties
between chunk scores (reported); all heads of a layer keep the same positions.

usage: /usr/bin/python3 tests/reference/test_chunkkv_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_chunkkv  # noqa: E402
import ref_pyramidkv as rp  # noqa: E402


def replay(p, lay, layer, num_layers, chunk, observed=None):
    return rp.guided_replay(p, lay, ref_chunkkv.chunkkv_step(p, lay, chunk), observed, chunk)


def kept_sets(spec, lay, chunk=None):
    return rp.kept_sets(replay, spec, lay, chunk)


def self_tests(ck):
    # As tests/policies/chunkkv_test.cpp: T=8, window {7}, L=2: chunks {0,1} {2,3} {4,5}, leftover {6}.
    lay = rp.hand_layer([[1, 1, 5, 1, 2, 2, 1, 1], [4, 1, 1, 1, 1, 1, 1, 1]], 8)
    one = [[2, 3, 6, 7]] * 2
    ck.eq(kept_sets("chunkkv(budget=4, window=1, kernel=1, chunk_length=2)", lay), one, "hand: B=4 one chunk")
    ck.eq(kept_sets("chunkkv(budget=5, window=1, kernel=1, chunk_length=2)", lay), one, "hand: B=5 rounds down")
    ck.eq(kept_sets("chunkkv(budget=6, window=1, kernel=1, chunk_length=2)", lay), [[0, 1, 2, 3, 6, 7]] * 2,
          "hand: B=6 two chunks")
    ck.eq(kept_sets("chunkkv(budget=3, window=1, kernel=1, chunk_length=2)", lay), [[6, 7]] * 2,
          "hand: B=3 only the protected tail")
    ck.eq(kept_sets("chunkkv(budget=3, window=1, kernel=1, chunk_length=10)", lay), [[2, 4, 7], [0, 1, 7]],
          "hand: no whole chunk -> SnapKV per head")
    # policy-notes.md: T=45, chunk 20 -> kvpress chunks [0,20),[20,40),[40,45). Here with window 5
    # the 40 older entries form exactly 2 chunks, no leftover; B = 25 -> floor(20/20) = 1 chunk.
    x = [1.0] * 45
    x[25] = 50.0   # makes chunk [20,40) the best
    lay = rp.hand_layer([x], 45)
    ck.eq(kept_sets("chunkkv(budget=25, window=5, kernel=1)", lay), [list(range(20, 45))], "hand: T=45 L=20")
    # Chunked prefill by hand: n=12, prefill chunks of 6, window 1, L=2, B=0.5 -> capacity 4, then 8.
    # Chunk 0: S=6, w=1: 2 chunks {0,1} {2,3}, leftover {4}, tail 2, floor((4-2)/2) = 1 chunk.
    x = [1, 9, 1, 1, 1, 1, 1, 1, 1, 1, 7, 1]
    lay = rp.hand_layer([x], 12)
    got = kept_sets("chunkkv(budget=0.5, window=1, kernel=1, chunk_length=2, prefill=chunk)", lay, 6)
    # Chunk 1: cache {0,1,4,5, 6..11}: S=10, w=1: chunks {0,1} {4,5} {6,7} {8,9}, leftover {10};
    # capacity 8: floor((8-2)/2) = 3 chunks; x/sum: {0,1} = 10, {4,5} = 2, {6,7} = 2, {8,9} = 2:
    # ties at 2 -> earlier chunks: {0,1} {4,5} {6,7} + tail {10, 11}.
    ck.eq(got, [[0, 1, 4, 5, 6, 7, 10, 11]], "hand: prefill=chunk re-chunks the cache in cache order")


MODELS = [("mha", 2, 2, 16, 256, 51), ("gqa", 8, 2, 16, 296, 52)]
N, M = 600, 8
UNCHUNKED = [
    "chunkkv(budget=0.3)",                                              # defaults: w=64 k=5 avg L=20
    "chunkkv(budget=0.2, window=16, kernel=7, pooling=max, chunk_length=8)",
    "chunkkv(budget=200, window=32, kernel=3, chunk_length=32)",
    "chunkkv(budget=100, window=16, kernel=3, chunk_length=1000)",      # no whole chunk: SnapKV per head
]
CHUNKED = [
    "chunkkv(budget=0.3, window=16, kernel=5, chunk_length=10, prefill=chunk)",
    "chunkkv(budget=150, window=8, kernel=3, pooling=max, chunk_length=16, prefill=chunk)",
    "chunkkv(budget=0.15, window=8, kernel=5, chunk_length=12, prefill=post_fill)",
]


def run(ck, args):
    rp.run_models(ck, args, MODELS, UNCHUNKED, CHUNKED, replay, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
