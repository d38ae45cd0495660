#!/usr/bin/python3
"""kvsim's dbudget kept sets against an independent float64 numpy reference (ref_dbudget.py).

Self-tests (always run; alone with --self-test): the hand example of tests/policies/dbudget_test.cpp
(the Frobenius halting rule by hand), and on random data the rule's two sides: the kept entries
carry >= threshold of the squared norm, and dropping the last ranked one would not.

Then for MHA and GQA tiny models: `kvsim synth` (n=600, m=8, two layers), `kvsim run --save-kept`
with dbudget post_fill and chunk at several thresholds; every final kept mask must equal the
reference's exactly (the synthetic data is seeded, so any difference is reported as a failure).

usage: /usr/bin/python3 tests/reference/test_dbudget_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
import ref_dbudget  # noqa: E402
import ref_window_squares as rw  # noqa: E402


def sets(mask):
    return [np.nonzero(k)[0].tolist() for k in mask]


def self_tests(ck):
    lay = rw.hand_layer([[8, 4, 2, 1, 1, 4], [1] * 6], 6)
    for t, want in (("0.9", [[0, 1, 5], [0, 1, 2, 3, 5]]), ("0.99", [[0, 1, 2, 5], list(range(6))]),
                    ("0.5", [[0, 5], [0, 5]]), ("0.3", [[5], [5]]), ("1", [list(range(6))] * 2)):
        ck.eq(sets(ref_dbudget.kept_mask("dbudget(threshold=%s, window=1, kernel=1)" % t, lay)), want,
              "hand: threshold " + t)
    # Random GQA-2 layer: the halting rule holds on both sides for each head.
    rng = np.random.default_rng(5)
    lay = kvref.LayerData(rng.normal(size=(3, 120, 4)) * 2, rng.normal(size=(6, 120, 4)) * 2, np.arange(120),
                          120, 0, 6, 3, 4)
    wp = np.arange(112, 120)
    cache = np.arange(120)
    for t in (0.6, 0.9, 0.99):
        counts = []
        for h in range(3):
            kept = ref_dbudget.evict_head(lay, h, cache, wp, t, 3, "max")
            sq = rw.attention_squares(lay, h, cache, wp)
            ratio = np.sqrt(sq[kept].sum() / sq.sum())
            ck.check(ratio >= t - 1e-12, "random: head %d keeps >= %g of the norm" % (h, t), ratio)
            counts.append(len(kept))
            if len(kept) > len(wp):
                # Dropping the lowest-ranked kept non-window entry breaks the bound.
                qg = lay.queries[h * 2:(h + 1) * 2]
                score = kvref.pool1d(kvref.snapkv_scores(lay.keys[h], qg, lay.qpos_index, cache, wp, 112, 4), 3, "max")
                nonwin = kept[kept < 112]
                worst = nonwin[np.lexsort((nonwin, -score[nonwin]))[-1]]
                rest = np.setdiff1d(kept, [worst])
                ck.check(np.sqrt(sq[rest].sum() / sq.sum()) < t, "random: head %d keeps no spare entry at %g" % (h, t))
        ck.check(len(set(counts)) > 1 or t == 0.99, "random: per-head counts vary at %g" % t, counts)


MODELS = [("mha", 2, 2, 16, 256, 41), ("gqa", 8, 4, 16, 296, 42)]
N, M = 600, 8
UNCHUNKED = ["dbudget", "dbudget(threshold=0.9, window=16, kernel=5, pooling=avg)",
             "dbudget(threshold=0.5, window=64, kernel=1)"]
CHUNKED = ["dbudget(threshold=0.95, window=16, kernel=5, prefill=chunk)",
           "dbudget(threshold=0.8, window=8, kernel=3, pooling=max, prefill=chunk)",
           "dbudget(threshold=0.99, window=32, prefill=post_fill)"]


def run(ck, args):
    def make_check(chunk):
        def check(spec, what, L, lay, mask):
            want = ref_dbudget.kept_mask(spec, lay, chunk)
            rw.compare_masks(ck, what, mask.astype(bool), want)
            kept = mask[:, :lay.n].sum(axis=1)
            print("%s: kept per head %s of %d" % (what, kept.tolist(), lay.n))
        return check

    kvref.run_kept_models(ck, args, MODELS, N, M, UNCHUNKED, CHUNKED, make_check,
                          synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", 64], with_full=False,
                          spec_prefix=lambda spec: "dbudget(")


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
