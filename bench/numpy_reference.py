#!/usr/bin/env python3
"""SnapKV-family window scoring in numpy + OpenBLAS (issue 21 §4): the computation of
bench/scoring_bench.cpp's WindowAttention benchmarks, written as a careful numpy user would, so
tools/bench_report.py can print kvsim / numpy in the same run.

  SgemmPeak/T               square 1024 float32 GEMM through OpenBLAS on T threads
  WindowAttention/N         one KV head: logits of the group's 4 x 32 window queries against N keys
                            (one float32 GEMM, queries pre-scaled by 1/sqrt(d)), causal mask on the
                            window's own columns only, softmax in place (row max, exp, row sums), then
                            the sum over the 128 rows of each column weighted by 1/row sum as one GEMV
                            (no normalised copy), mean over the group (1 thread)
  WindowAttentionLayer/N/T  the same for 8 KV heads, OpenBLAS on T threads (numpy's elementwise
                            exp and max stay on one thread: that is numpy)

"Careful" means: float32 throughout, preallocated buffers reused between calls (out=), the
resident keys contiguous (no gather: kvsim's benchmark also scores a contiguous run), and no
temporary of the logits' size besides the logits themselves.

OpenBLAS reads its thread count when it loads, so each thread count runs in a child process with
OPENBLAS_NUM_THREADS set. Writes JSON {"numpy_version", "blas", "benchmarks": {name:
{"real_time_ms": median, "GFLOP/s": ...}}} to --out; GFLOP/s counts the GEMM work, as the C++
benchmarks do, so the ratio is a ratio of times. Run by tools/bench.sh with /usr/bin/python3
(Debian's, with python3-numpy and libopenblas0-pthread).
"""
import argparse
import json
import os
import subprocess
import sys

from bench_timing import timed

HEAD_DIM, GROUP, KV_HEADS, WINDOW, PEAK_N = 128, 4, 8, 32, 1024
KEYS = (4096, 32768, 131072)


def window_flops(keys):
    return 2.0 * GROUP * WINDOW * keys * HEAD_DIM


class WindowScorer:
    """One KV head's window scoring with its buffers. keys [N, d] float32 (contiguous);
    queries [GROUP * WINDOW, d] float32, group-major (row g * WINDOW + i: query head g, window row i)."""

    def __init__(self, np, keys, queries):
        self.np = np
        self.keys_t = keys.T                         # a view: the GEMM reads K^T without a copy
        self.q = (queries * np.float32(1.0 / np.sqrt(HEAD_DIM))).astype(np.float32)
        rows, n = self.q.shape[0], keys.shape[0]
        self.prefix = n - WINDOW
        self.logits = np.empty((rows, n), np.float32)
        self.row_max = np.empty((rows, 1), np.float32)
        self.row_sum = np.empty(rows, np.float32)
        # Window row i sees window entries 0..i: -inf above the diagonal of the last WINDOW columns.
        causal = np.triu(np.full((WINDOW, WINDOW), -np.inf, np.float32), k=1)
        self.causal = np.tile(causal, (GROUP, 1))
        self.scores = np.empty(n, np.float32)

    def __call__(self):
        np = self.np
        np.matmul(self.q, self.keys_t, out=self.logits)
        self.logits[:, self.prefix:] += self.causal
        np.max(self.logits, axis=1, keepdims=True, out=self.row_max)
        np.subtract(self.logits, self.row_max, out=self.logits)
        np.exp(self.logits, out=self.logits)
        np.sum(self.logits, axis=1, out=self.row_sum)
        # sum_r exp_rj / Z_r as one GEMV; the mean over the group's query heads.
        np.divide(np.float32(1.0 / GROUP), self.row_sum, out=self.row_sum)
        np.matmul(self.row_sum, self.logits, out=self.scores)
        return self.scores[:self.prefix]


def run_child(threads, min_time_s, out_path):
    import numpy as np
    rng = np.random.default_rng(1)
    results = {}

    def record(name, seconds, work):
        results[name] = {"real_time_ms": seconds * 1e3, "GFLOP/s": work / seconds * 1e-9}
        print("%-34s %10.3f ms %9.1f GFLOP/s" % (name, seconds * 1e3, work / seconds * 1e-9), file=sys.stderr)

    a = rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    b = rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    c = np.empty_like(a)
    record("SgemmPeak/%d" % threads, timed(lambda: np.matmul(a, b, out=c), min_time_s), 2.0 * PEAK_N ** 3)
    for keys in KEYS:
        heads = [WindowScorer(np, rng.standard_normal((keys, HEAD_DIM), dtype=np.float32),
                              rng.standard_normal((GROUP * WINDOW, HEAD_DIM), dtype=np.float32))
                 for _ in range(KV_HEADS)]
        if threads == 1:
            record("WindowAttention/%d" % keys, timed(heads[0], min_time_s), window_flops(keys))
        record("WindowAttentionLayer/%d/%d" % (keys, threads), timed(lambda: [h() for h in heads], min_time_s),
               KV_HEADS * window_flops(keys))
        heads = None  # frees the buffers before the next size (not del: the lambdas above name it)
    blas = "?"
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = config.get("Build Dependencies", {}).get("blas", {}).get("name", "?")
    except TypeError:
        pass
    with open(out_path, "w") as f:
        json.dump({"numpy_version": np.__version__, "blas": blas, "benchmarks": results}, f)


def self_test():
    """The scorer against a plain softmax (float64) on a small case: the buffers and the GEMV
    must give the same scores as the textbook computation."""
    import numpy as np
    rng = np.random.default_rng(2)
    n = 200
    keys = rng.standard_normal((n, HEAD_DIM), dtype=np.float32)
    queries = rng.standard_normal((GROUP * WINDOW, HEAD_DIM), dtype=np.float32)
    got = WindowScorer(np, keys, queries)().astype(np.float64)
    logits = queries.astype(np.float64) @ keys.T.astype(np.float64) / np.sqrt(HEAD_DIM)
    for r in range(GROUP * WINDOW):
        logits[r, n - WINDOW + r % WINDOW + 1:] = -np.inf
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = p[:, :n - WINDOW].sum(axis=0) / GROUP
    err = np.max(np.abs(got - want) / want)
    if not err < 1e-4:
        sys.exit("numpy_reference.py: self-test failed, max relative error %.3g" % err)
    print("numpy_reference.py: self-test passed (max relative error %.2g)" % err, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON results")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    ap.add_argument("--self-test", action="store_true", help="check the scorer against a float64 softmax and exit")
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    if not args.out:
        ap.error("--out is required")
    if args.child_threads:
        run_child(args.child_threads, args.min_time, args.out)
        return
    merged = {"benchmarks": {}}
    for threads in (1, 2):
        part = args.out + ".%d.tmp" % threads
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, os.path.abspath(__file__), "--out", part, "--min-time", str(args.min_time),
                        "--child-threads", str(threads)], env=env, check=True)
        with open(part) as f:
            data = json.load(f)
        os.remove(part)
        merged["benchmarks"].update(data.pop("benchmarks"))
        merged.update(data)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(merged, f, indent=1, sort_keys=True)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
