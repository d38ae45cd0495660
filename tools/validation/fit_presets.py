#!/usr/bin/env python3
"""Fits the cost-model parameters of the H100 (and A100) presets on vidur's measured profiles
(microsoft/vidur data/profiling, MIT; copies in ../shared/data/vidur-profiles-h100 and -a100, see
their PROVENANCE.md) and prints them with the rows each was fitted on. Run with numpy:

    /usr/bin/python3 tools/validation/fit_presets.py [../shared/data]

Every figure is fitted per preset over all models and TP degrees of a profile, never per row.
docs/validation.md ("Where each parameter comes from") quotes this script's output.

1. GEMMs (attn_pre_proj + attn_post_proj + mlp_up_proj + mlp_down_proj, medians):
   compute_efficiency = median over rows with 2048-4096 tokens of FLOPs / (time x peak);
   memory_efficiency  = median over 1-token rows at TP 1-4 of weight bytes / (time x HBM bandwidth).
2. Small per-layer kernels (input_layernorm, attn_rope, post_attention_layernorm, mlp_act, and the
   residual add counted twice), per layer and TP rank:
       time = max(layer_overhead, activation_bytes / (HBM bandwidth x activation_efficiency))
       activation_bytes = tokens x (20 h + 4 (q_width + kv_width) / tp + 6 ffn / tp)   [BF16]
   (two RMSNorms read and write n x h; rotary reads and writes q and k; SiLU-and-mul reads 2 x ffn
   and writes ffn; each residual add reads 2 and writes 1 x n x h). The two parameters minimise the
   mean absolute relative error, averaged over five token ranges (1-8, 9-128, 129-512, 513-1024,
   1025-4096) so that the many large-token rows do not drown the few small ones.
3. Tensor-parallel all-reduce (all_reduce_h100_dgx.csv, 8x H100 SXM on NVSwitch, devices_per_node =
   workers as vidur uses it): per worker count, time = latency + bytes / bandwidth, least squares in
   relative error over all 993 message sizes (2 KiB - 64 MiB).
4. CPU time per iteration (cpu_overheads_a100.csv, vLLM on an A100 host): schedule + sampler_e2e +
   prepare_inputs_e2e + process_model_outputs (medians) = floor + extra when tp > 1 (inputs are
   broadcast to the workers) + slope x batch size, least squares over all models and TP degrees. ray_comm_time is left out (Ray RPC of vLLM's old multi-GPU
   executor, not a per-iteration cost of current engines).
"""
import csv
import os
import sys

import numpy as np

H100_PEAK, H100_BW = 989e12, 3.35e12
A100_PEAK, A100_BW = 312e12, 2.039e12
GEMMS = ["attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj"]
SMALL = ["input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add"]
H100_MODELS = ["CodeLlama-34b-Instruct-hf", "Qwen-72B", "internlm-20b", "phi-2"]
A100_MODELS = ["Meta-Llama-3-8B", "Meta-Llama-3-70B"]
BUCKETS = ((1, 8), (9, 128), (129, 512), (513, 1024), (1025, 4096))


def median(r, op):
    v = r.get("time_stats.%s.median" % op, "")
    return float(v) * 1e-3 if v not in ("", None) else None


def profile_rows(directory, models):
    """(model, tp, tokens, gemm_s, weight_bytes_per_rank, small_s, activation_bytes) per profiled
    size (the first run where a size was profiled twice)."""
    out = []
    for m in models:
        seen = set()
        for r in csv.DictReader(open(os.path.join(directory, m + "_mlp.csv"))):
            n, tp = int(r["num_tokens"]), int(r["num_tensor_parallel_workers"])
            if (n, tp) in seen:
                continue
            seen.add((n, tp))
            h, nh, kv = int(r["n_embd"]), int(r["n_head"]), int(r["n_kv_head"])
            ff, gated = int(r["n_expanded_embd"]), r["use_gated_mlp"] == "True"
            hd = h // nh
            params = (h * (nh + 2 * kv) * hd + nh * hd * h + h * ff * (2 if gated else 1) + ff * h) / tp
            gemm = sum(median(r, op) for op in GEMMS)
            small = 0.0
            act = 0.0
            per_op = {"input_layernorm": 4 * n * h, "post_attention_layernorm": 4 * n * h,
                      "attn_rope": 4 * n * (nh + kv) * hd / tp,
                      "mlp_act": 2 * n * ff / tp * ((2 if gated else 1) + 1), "add": 6 * n * h}
            for op in SMALL:
                t = median(r, op)
                if t is None:  # phi-2: no post-attention norm (parallel attention and MLP)
                    continue
                times = 2 if op == "add" else 1
                small += times * t
                act += times * per_op[op]
            out.append((m, tp, n, gemm, 2 * params, small, act))
    return out


def fit_gemm(rows, peak, bw):
    ce = [2 * n * (wb / 2) / (t * peak) for m, tp, n, t, wb, s, a in rows if 2048 <= n <= 4096]
    me = [wb / (t * bw) for m, tp, n, t, wb, s, a in rows if n == 1 and tp <= 4]
    return float(np.median(ce)), len(ce), float(np.median(me)), len(me)


def small_errors(rows, floor, eff, bw):
    return np.array([max(floor, a / (bw * eff)) / s - 1 for m, tp, n, t, wb, s, a in rows])


def balanced(err, tokens):
    return np.mean([np.abs(err[(tokens >= lo) & (tokens <= hi)]).mean() for lo, hi in BUCKETS])


def fit_small(rows, bw):
    tokens = np.array([r[2] for r in rows])
    best = None
    for floor in np.arange(5e-6, 40.5e-6, 1e-6):
        for eff in np.arange(0.30, 0.80, 0.01):
            b = balanced(small_errors(rows, floor, eff, bw), tokens)
            if best is None or b < best[0]:
                best = (b, floor, eff)
    return best[1], round(best[2], 2)


def describe_small(rows, floor, eff, bw):
    tokens = np.array([r[2] for r in rows])
    err = small_errors(rows, floor, eff, bw)
    parts = ["%d-%d tokens: mean %+.0f%%, MAPE %.0f%%" % (lo, hi, 100 * err[(tokens >= lo) & (tokens <= hi)].mean(),
                                                         100 * np.abs(err[(tokens >= lo) & (tokens <= hi)]).mean())
             for lo, hi in BUCKETS]
    return "; ".join(parts)


def fit_allreduce(path):
    rows = list(csv.DictReader(open(path)))
    fits = {}
    for w in sorted({int(r["num_workers"]) for r in rows}):
        pts = [(float(r["size"]), float(r["time_stats.all_reduce.median"]) * 1e-3) for r in rows
               if int(r["num_workers"]) == w and int(r["devices_per_node"]) == w]
        s = np.array([p[0] for p in pts])
        t = np.array([p[1] for p in pts])
        # minimise sum ((a + s c) / t - 1)^2
        coef, *_ = np.linalg.lstsq(np.vstack([1 / t, s / t]).T, np.ones_like(t), rcond=None)
        err = (coef[0] + coef[1] * s) / t - 1
        fits[w] = (coef[0], 1 / coef[1], float(np.abs(err).mean()), len(pts))
    return fits


def fit_cpu(path):
    rows = list(csv.DictReader(open(path)))
    cols = ["schedule_median", "sampler_e2e_median", "prepare_inputs_e2e_median", "process_model_outputs_median"]
    b = np.array([float(r["batch_size"]) for r in rows])
    multi = np.array([1.0 if int(r["tensor_parallel_degree"]) > 1 else 0.0 for r in rows])
    t = np.array([sum(float(r[c]) for c in cols) * 1e-3 for r in rows])
    coef, *_ = np.linalg.lstsq(np.vstack([np.ones_like(b), multi, b]).T, t, rcond=None)
    err = (coef[0] + coef[1] * multi + coef[2] * b) / t - 1
    return coef[0], coef[1], coef[2], float(np.abs(err).mean()), len(rows), (b.min(), b.max())


def main(data):
    h100_dir = os.path.join(data, "vidur-profiles-h100")
    a100_dir = os.path.join(data, "vidur-profiles-a100")
    for name, directory, models, peak, bw in (("h100-sxm", h100_dir, H100_MODELS, H100_PEAK, H100_BW),
                                              ("a100-80g", a100_dir, A100_MODELS, A100_PEAK, A100_BW)):
        rows = profile_rows(directory, models)
        ce, nce, me, nme = fit_gemm(rows, peak, bw)
        floor, eff = fit_small(rows, bw)
        print("[%s] GEMMs of %s" % (name, ", ".join(models)))
        print("  compute_efficiency = %.3f  (median of %d rows, 2048-4096 tokens, all TP)" % (ce, nce))
        print("  memory_efficiency  = %.3f  (median of %d 1-token rows, TP 1-4)" % (me, nme))
        print("  small kernels: layer_overhead = %.0f us, activation_efficiency = %.2f  (%d rows)" % (floor * 1e6, eff, len(rows)))
        print("    " + describe_small(rows, floor, eff, bw))
        if name == "a100-80g":
            hf, he = fit_small(profile_rows(h100_dir, H100_MODELS), H100_BW)
            print("  H100 small-kernel fit (%.0f us, %.2f) applied to these rows: %s" % (hf * 1e6, he, describe_small(rows, hf, he, bw)))
    for w, (lat, bw, mape, n) in fit_allreduce(os.path.join(h100_dir, "all_reduce_h100_dgx.csv")).items():
        print("[h100-sxm] all-reduce, %d workers: latency %.1f us, bandwidth %.0f GB/s (MAPE %.1f%% over %d sizes)"
              % (w, lat * 1e6, bw / 1e9, 100 * mape, n))
    floor, multi, slope, mape, n, (bmin, bmax) = fit_cpu(os.path.join(h100_dir, "cpu_overheads_a100.csv"))
    print("[cpu, vLLM on A100 host] cpu_overhead = %.3f ms, + %.3f ms when tp > 1 (cpu_overhead_tp), "
          "cpu_overhead_per_request = %.1f us (MAPE %.1f%% over %d rows, batch %d-%d)"
          % (floor * 1e3, multi * 1e3, slope * 1e6, 100 * mape, n, bmin, bmax))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
