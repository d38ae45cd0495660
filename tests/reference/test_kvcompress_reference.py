#!/usr/bin/python3
"""kvsim's kvcompress kept sets against KV-Compress's own code, transliterated to numpy
(ref_kvcompress.py: IsaacRe/vllm-kvcompress @5e2a639, flash_attn.py _naive_kvc_masked_attention,
metrics.py aggregate_prefill and schedule_evictions, scheduler.py _schedule_seq_evictions,
csrc/kvcompress_eviction_kernels.cu count_block_evictions_kernel).

Self-tests (always run; alone with --self-test): the hand examples of tests/policies/kvcompress_test.cpp
(blocks across two heads with the hanging-token rule, the budget rounded up to whole blocks, window - 1
protected entries, max pooling over the window entries too, blocks ranked across two layers).

Then for MHA and GQA tiny models with every layer traced: `kvsim synth` (n=600, m=8, two layers),
`kvsim run --save-kept` with kvcompress post_fill (the authors' compress-once), rank=sequence and
rank=layer, several budgets, block sizes, windows and kernels. Per policy and layer the kept set
(every head's prompt positions) must have Jaccard >= 0.99 with the reference's (float32 against
float64 scoring can only flip near-ties), and the layers' kept totals must match exactly.

usage: /usr/bin/python3 tests/reference/test_kvcompress_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_kvcompress  # noqa: E402
import ref_window_squares as rw  # noqa: E402


def sets(mask, n):
    return [np.nonzero(k[:n])[0].tolist() for k in mask]


def jaccard(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def self_tests(ck):
    lay = rw.hand_layer([[1, 2, 3, 4, 5, 6, 7, 4], [8, 1, 8, 1, 8, 1, 8, 4]], 8)
    six = [[2, 3, 4, 5, 6, 7], [0, 2, 4, 5, 6, 7]]
    cases = [("6", 2, 1, 1, six), ("5", 2, 1, 1, six), ("4", 2, 1, 1, [[4, 5, 6, 7], [0, 2, 4, 6]]),
             ("5", 3, 1, 1, six), ("3", 3, 1, 1, [[4, 5, 6], [2, 4, 6]]),
             ("4", 2, 2, 1, [[6, 7], [0, 2, 4, 5, 6, 7]]),                 # window 2: position 7 protected
             ("4", 2, 1, 3, [[4, 5, 6, 7], [4, 5, 6, 7]])]                 # kernel 3 pools the window entry
    for b, bs, w, k, want in cases:
        spec = "kvcompress(budget=%s, block_tokens=%d, window=%d, kernel=%d, rank=layer)" % (b, bs, w, k)
        ck.eq(sets(ref_kvcompress.kept_masks(spec, {0: lay})[0], 8), want, "hand: " + spec)
    layers = {0: rw.hand_layer([[1] * 8], 8), 1: rw.hand_layer([[64, 64, 1, 1, 1, 1, 1, 1]], 8)}
    for rank, want in [("sequence", {0: [[2, 3, 4, 5, 6, 7]], 1: [[0, 1]]}),
                       ("layer", {0: [[4, 5, 6, 7]], 1: [[0, 1, 6, 7]]})]:
        spec = "kvcompress(budget=4, block_tokens=2, window=1, kernel=1, rank=%s)" % rank
        got = ref_kvcompress.kept_masks(spec, layers)
        ck.eq({L: sets(mask, 8) for L, mask in got.items()}, want, "hand, two layers: " + spec)
    # The pooling helper against a direct loop (padding never wins).
    x = np.array([[3.0, 1, 4, 1, 5, 9, 2, 6]])
    direct = [[max(x[0, max(0, i - 3):i + 4]) for i in range(8)]]
    ck.eq(ref_kvcompress.max_pool1d(x, 7).tolist(), direct, "max_pool1d(kernel 7, padding 3)")


MODELS = [("mha", 2, 2, 16, 41), ("gqa", 8, 4, 16, 42)]
N, M = 600, 8
SPECS = ["kvcompress", "kvcompress(rank=layer)", "kvcompress(budget=0.1, block_tokens=8, window=16, kernel=1)",
         "kvcompress(budget=150, block_tokens=4, window=64, kernel=3)",
         "kvcompress(budget=0.3, block_tokens=1, window=8, rank=layer)"]


def run(ck, args):
    for tag, hq, hkv, d, seed in MODELS:
        def compare(kept_file, specs, lays, chunk, where):
            kept = kvref.read_kept_checked(ck, kept_file, specs, where)
            if kept is None:
                return
            for idx, spec in enumerate(specs, start=1):
                kspec, klayers = kept[idx]
                want = ref_kvcompress.kept_masks(spec, lays)
                for L, lay in sorted(lays.items()):
                    what = "%s %s layer %d" % (where, spec, L)
                    got = klayers[L].astype(bool)
                    j = jaccard(got[:, :N], want[L][:, :N])
                    ck.check(j >= 0.99, what + ": kept-set Jaccard >= 0.99 against the original's rule", "%.4f" % j)
                    ck.eq(int(got[:, :N].sum()), int(want[L][:, :N].sum()), what + ": kept entries")
                    ck.check(got[:, N:].all(), what + ": generated tokens kept")
                    exact = bool((got == want[L]).all())
                    print("%s: kept per head %s, Jaccard %.4f%s" % (what, got[:, :N].sum(axis=1).tolist(), j,
                                                                   " (exact)" if exact else ""), flush=True)

        kvref.run_kept_model(ck, args, tag, hq, hkv, d, N, M, seed, [("unchunked", None, SPECS)], compare,
                             synth_args=["--query-window", 64])


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
