#!/usr/bin/env python3
"""The scoring kernels of bench/ in PyTorch on CPU (issue 8): the same computations on the same
shapes (bench/bench_shapes.h), so tools/bench_report.py can print kvsim / PyTorch ratios.

  SgemmPeak/T            square 1024 float32 GEMM, torch.set_num_threads(T)
  WindowAttention/N      SnapKV scoring of one KV head: gather the resident keys, logits of the
                         group's 4 x 32 window queries, causal softmax, sum over the window, mean
                         over the group (1 thread)
  WindowAttentionLayer/N/T  the same for 8 KV heads, T threads (torch parallelises inside ops)
  KeyLeverage/N          exact centered leverage in float64: Gram, eigh, whitened row norms (1 thread)
  KiviQuantize/N         KIVI 2-bit fake quantization of one KV head: keys per channel in groups of 32
                         tokens, values per token in groups of 32 channels, dequantized (1 thread;
                         GB/s of float32 K and V read)

Writes JSON {name: {"real_time_ms": median, "GFLOP/s": ...}} to --out. GFLOP/s counts the same
FLOPs as the C++ benchmarks (the GEMM work), so the ratio is a ratio of times.
Needs python3-torch (Debian); run by tools/bench.sh with /usr/bin/python3.
"""
import argparse
import json
import math
import sys

from bench_timing import timed

try:
    import torch
except ImportError:
    sys.exit("torch_reference.py: torch is not importable by %s (Debian package python3-torch)" % sys.executable)

HEAD_DIM, GROUP, KV_HEADS, WINDOW, PEAK_N = 128, 4, 8, 32, 1024
KIVI_BITS, KIVI_GROUP = 2, 32
KEYS = (4096, 32768, 131072)


def window_flops(keys):
    return 2.0 * GROUP * WINDOW * keys * HEAD_DIM


def leverage_flops(keys):
    return 3.0 * keys * HEAD_DIM * HEAD_DIM


def window_attention(keys, resident, queries):
    """keys [S, d]; resident [r] int64; queries [GROUP*WINDOW, d] (group-major). Scores of the
    r - WINDOW non-window entries."""
    cached = keys.index_select(0, resident)
    r = cached.shape[0]
    prefix = r - WINDOW
    logits = (queries * (1.0 / math.sqrt(HEAD_DIM))) @ cached.T
    causal = torch.triu(torch.full((WINDOW, WINDOW), float("-inf")), diagonal=1)
    logits[:, prefix:] += causal.repeat(GROUP, 1)
    probs = torch.softmax(logits, dim=-1)
    return probs[:, :prefix].sum(0) / GROUP


def centered_leverage(x):
    x = x - x.mean(0)
    lam, vec = torch.linalg.eigh(x.T @ x)
    keep = lam > 1e-10 * lam.max()
    whiten = vec[:, keep] / lam[keep].sqrt()
    return ((x @ whiten) ** 2).sum(1)


def fake_quantize(x, dim):
    """Asymmetric min/scale quantization over `dim` of a grouped view, dequantized (policies/quantize.h)."""
    levels = float((1 << KIVI_BITS) - 1)
    lo = x.amin(dim, keepdim=True)
    scale = (x.amax(dim, keepdim=True) - lo) / levels
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return ((x - lo) / safe).round().clamp_(0, levels) * scale + lo


def kivi_quantize(keys, values):
    n, d = keys.shape
    k = fake_quantize(keys.view(n // KIVI_GROUP, KIVI_GROUP, d), 1).view(n, d)
    v = fake_quantize(values.view(n, d // KIVI_GROUP, KIVI_GROUP), 2).view(n, d)
    return k, v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(1)
    results = {}

    def record(name, seconds, work, unit="GFLOP/s"):
        results[name] = {"real_time_ms": seconds * 1e3, unit: work / seconds * 1e-9}
        print("%-34s %10.3f ms %9.1f %s" % (name, seconds * 1e3, work / seconds * 1e-9, unit), file=sys.stderr)

    a = torch.randn(PEAK_N, PEAK_N, generator=gen)
    b = torch.randn(PEAK_N, PEAK_N, generator=gen)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        record("SgemmPeak/%d" % threads, timed(lambda: a @ b, args.min_time), 2.0 * PEAK_N ** 3)

    for keys in KEYS:
        heads = [(torch.randn(keys, HEAD_DIM, generator=gen), torch.randn(GROUP * WINDOW, HEAD_DIM, generator=gen))
                 for _ in range(KV_HEADS)]
        resident = torch.arange(keys)
        torch.set_num_threads(1)
        k0, q0 = heads[0]
        record("WindowAttention/%d" % keys, timed(lambda: window_attention(k0, resident, q0), args.min_time),
               window_flops(keys))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            record("WindowAttentionLayer/%d/%d" % (keys, threads),
                   timed(lambda: [window_attention(k, resident, q) for k, q in heads], args.min_time),
                   KV_HEADS * window_flops(keys))
        torch.set_num_threads(1)
        x = torch.randn(keys, HEAD_DIM, generator=gen, dtype=torch.float64)
        record("KeyLeverage/%d" % keys, timed(lambda: centered_leverage(x), args.min_time), leverage_flops(keys))
        kv = [torch.randn(keys, HEAD_DIM, generator=gen) for _ in range(2)]
        record("KiviQuantize/%d" % keys, timed(lambda: kivi_quantize(*kv), args.min_time),
               2.0 * keys * HEAD_DIM * 4, "GB/s")
        heads = None  # frees the buffers before the next size (not del: the lambdas above name it)

    with open(args.out, "w") as f:
        json.dump({"torch_version": torch.__version__, "benchmarks": results}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
