#!/usr/bin/env python3
"""Validation of kvsim's cost model against measurements (issue 5 item 6).

1. Linear operators: vidur's A100 profiles (tests/data/vidur_a100_linear_ops.csv: median time of
   the QKV, O, MLP up/gate and MLP down GEMMs of one layer) against `kvsim hw cost a100-80g
   ... linear_layer_s`, for Llama-3-8B and -70B (same shapes as 3.1) at TP 1/2/4/8.
2. Published end-to-end latencies, each with its source: decode time per output token and prefill
   time (time to first token) of Llama-2/3-class 7-8B and 70B models at batch 1 on A100 and H100
   (`kvsim hw cost`, one pass), and the KV transfer of vLLM's CPU offloading connector on H100
   (`kvsim run` on tests/validation/offload-h100-dram.ini, transfer slices of its Chrome trace).

The published figures below are copied from their sources (or derived from them by the formula
given next to them); nothing here is fitted to kvsim's output. Regenerates the tables of
docs/validation.md (--write) or checks that the committed file is current, and checks the accuracy
targets. Prints "N passed, M failed"."""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "validation.md")
BEGIN, END = "<!-- BEGIN GENERATED: tests/validation/test_validation.py --write -->", "<!-- END GENERATED -->"
TARGET = 0.15           # published end-to-end measurements (issue 18 §2)
OPERATOR_TARGET = 0.25  # single vidur operator rows
LLAMA2_7B = os.path.join(HERE, "llama-2-7b.ini")
LLAMA2_70B = os.path.join(HERE, "llama-2-70b.ini")
OFFLOAD_SCENARIO = os.path.join(HERE, "offload-h100-dram.ini")

# Sources, cited by tag in the tables (full reference printed under them).
SOURCES = [
    ("vLLM-H100", "vLLM 0.21 concurrency sweep, H100-80GB-HBM3, Llama-3.1-8B-Instruct fp16, chatbot-short, concurrency 1 (D1), 4 and 16 (B14, B15) "
                  "(yobitelcomm.github.io/bench/recipes/concurrency-sweep, run of 2026-05-16; model-configs.md §4c)"),
    ("vLLM-A100", "vLLM 0.23, A100-40GB, Llama-3.1-8B-Instruct BF16, random 1024-token input / 128-token output, "
                  "--ignore-eos, concurrency 1 (johnmusgrave.com/p/vllm-throughput-latency-sweep-on; model-configs.md §4c)"),
    ("TRT-LLM", "TensorRT-LLM v0.5, docs/source/performance.md, \"Low Latency\" tables, \"A100 GPUs (FP16)\", batch 1, "
                "1st token latency (github.com/NVIDIA/TensorRT-LLM, file at commit 138f96d; LLaMA = Llama-2)"),
    ("LMDeploy", "LMDeploy v0.1.0a1 (TurboMind), docs/en/benchmark/a100_fp16.md, \"Static Inference Benchmark\", "
                 "llama2-7b and llama2-70b tables, batch 1 (D, P rows) and 16/32/64 (B rows; '50%(s)' = median per-token "
                 "latency), A100-80G, FP16, CUDA 11.8 (github.com/InternLM/lmdeploy, "
                 "file at commit 3e391df)"),
    ("vLLM-offload", "vLLM blog \"Inside vLLM's New Offloading Connector\" (blog.vllm.ai/2026/01/08/kv-offloading-connector.html; "
                     "vllm-project.github.io _posts/2025-12-29-offloading-connector.md), section \"Evaluating GPU-CPU "
                     "Transfer Techniques\": NVIDIA H100 80GB HBM3, Xeon Sapphire Rapids host, cudaMemcpyAsync (DMA), 2 MB "
                     "blocks (= 16 tokens of Llama-3.1-8B KV in vLLM >= 0.12)"),
]


# Engines whose per-iteration CPU work is not vLLM's: TensorRT-LLM's and LMDeploy TurboMind's batch
# loops run in C++, so their rows are priced without the presets' vLLM-measured CPU overhead
# (`kvsim hw cost --cpu-overhead off`); vLLM rows include it.
NO_VLLM_CPU = {"TRT-LLM", "LMDeploy"}


def cpu_for(source):
    return "off" if source in NO_VLLM_CPU else "on"


def lmdeploy_tpot(out_tokens, throughput, first_token_s):
    """Mean time per output token after the first from LMDeploy's table: its throughput column is
    output tokens over the whole generation time (first token included)."""
    return (out_tokens / throughput - first_token_s) / (out_tokens - 1)


# Batch-1 single passes. kind: decode rows price one step at the mean context of the measured
# steps (a decode step's cost is linear in its context); prefill rows price the whole prompt in
# one pass. scope "target": held to +-15%; "miss-" / "miss+": a documented miss (kvsim under- /
# over-predicts by more than 15%; the reason is in docs/validation.md) that the check keeps honest.
# (id, kind, model, hardware, tp, tokens, context, published s, how the published figure is read, source, scope)
PUBLISHED = [
    ("D1", "decode", "llama-3.1-8b", "h100-sxm", 1, 1, 512, 6.48e-3,
     "TPOT p50, concurrency 1; prompt length not stated (context 512 assumed: its KV read is 0.4% of the step)",
     "vLLM-H100",
     "target"),
    ("D2", "decode", "llama-3.1-8b", "a100-40g", 1, 1, 1024 + 64, 13.3e-3,
     "~75 tok/s at concurrency 1, in 1024 / out 128 fixed",
     "vLLM-A100",
     "target"),
    ("D3", "decode", LLAMA2_7B, "a100-80g", 1, 1, 1 + 64, lmdeploy_tpot(128, 100.02, 0.011),
     "prompt 1 / out 128: (128 / 100.02 tok/s - FTL 0.011 s) / 127", "LMDeploy", "target"),
    ("D4", "decode", LLAMA2_7B, "a100-80g", 1, 1, 2048 + 1024, lmdeploy_tpot(2048, 93.78, 0.14),
     "prompt 2048 / out 2048: (2048 / 93.78 tok/s - FTL 0.14 s) / 2047", "LMDeploy", "target"),
    ("D5", "decode", LLAMA2_70B, "a100-80g", 4, 1, 1 + 64, lmdeploy_tpot(128, 33.94, 0.031),
     "TP 4, prompt 1 / out 128: (128 / 33.94 tok/s - FTL 0.031 s) / 127", "LMDeploy", "target"),
    ("D6", "decode", LLAMA2_70B, "a100-80g", 4, 1, 2048 + 1024, lmdeploy_tpot(2048, 31.9, 0.405),
     "TP 4, prompt 2048 / out 2048: (2048 / 31.9 tok/s - FTL 0.405 s) / 2047", "LMDeploy", "target"),
    ("P1", "prefill", LLAMA2_7B, "a100-80g", 1, 2048, 0, 133e-3,
     "1st token latency, input 2048", "TRT-LLM", "target"),
    ("P2", "prefill", LLAMA2_70B, "a100-80g", 4, 2048, 0, 377e-3,
     "TP 4, 1st token latency, input 2048", "TRT-LLM", "target"),
    ("P3", "prefill", LLAMA2_7B, "a100-80g", 1, 2048, 0, 0.139,
     "FTL(ave), prompt 2048 / out 128", "LMDeploy", "target"),
    ("P4", "prefill", LLAMA2_70B, "a100-80g", 4, 2048, 0, 0.402,
     "TP 4, FTL(ave), prompt 2048 / out 128", "LMDeploy", "target"),
    ("P5", "prefill", LLAMA2_7B, "a100-80g", 1, 128, 0, 16e-3,
     "1st token latency, input 128", "TRT-LLM", "miss-"),
    ("P6", "prefill", LLAMA2_70B, "a100-80g", 4, 128, 0, 47e-3,
     "TP 4, 1st token latency, input 128", "TRT-LLM", "miss-"),
    ("P7", "prefill", LLAMA2_7B, "a100-80g", 1, 128, 0, 0.022,
     "FTL(ave), prompt 128 / out 128", "LMDeploy", "miss-"),
    ("P8", "prefill", LLAMA2_70B, "a100-80g", 4, 128, 0, 0.074,
     "TP 4, FTL(ave), prompt 128 / out 128", "LMDeploy", "miss-"),
]

# Batched decode: one decode step of `batch` requests, each after `context` cached tokens, against
# a published median time per output token at that batch. LMDeploy's static benchmark runs `batch`
# requests of fixed prompt/output lengths together; its "50%(s)" column is the median per-token
# latency, i.e. the median decode step, priced at the median context prompt + output/2 (a step's
# cost is linear in its context). Rows whose KV overflowed the cache (queued prefills, FTL(max) of
# tens of seconds) are left out. The vLLM H100 rows are a closed loop at that concurrency.
# (id, model, hardware, tp, batch, context, published s, how the figure is read, source, scope)
BATCHED = [
    ("B1", LLAMA2_7B, "a100-80g", 1, 16, 128 + 64, 0.011, "batch 16, prompt 128 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B2", LLAMA2_7B, "a100-80g", 1, 32, 128 + 64, 0.012, "batch 32, prompt 128 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B3", LLAMA2_7B, "a100-80g", 1, 64, 128 + 64, 0.014, "batch 64, prompt 128 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B4", LLAMA2_7B, "a100-80g", 1, 64, 1 + 64, 0.012, "batch 64, prompt 1 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B5", LLAMA2_7B, "a100-80g", 1, 16, 128 + 1024, 0.015, "batch 16, prompt 128 / out 2048, 50%(s)", "LMDeploy", "target"),
    ("B6", LLAMA2_7B, "a100-80g", 1, 32, 128 + 1024, 0.021, "batch 32, prompt 128 / out 2048, 50%(s)", "LMDeploy", "target"),
    ("B7", LLAMA2_7B, "a100-80g", 1, 16, 2048 + 1024, 0.025, "batch 16, prompt 2048 / out 2048, 50%(s)", "LMDeploy", "target"),
    ("B8", LLAMA2_70B, "a100-80g", 4, 16, 128 + 64, 0.030, "TP 4, batch 16, prompt 128 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B9", LLAMA2_70B, "a100-80g", 4, 32, 128 + 64, 0.032, "TP 4, batch 32, prompt 128 / out 128, 50%(s)", "LMDeploy", "target"),
    ("B10", LLAMA2_70B, "a100-80g", 4, 64, 128 + 64, 0.037, "TP 4, batch 64, prompt 128 / out 128, 50%(s)", "LMDeploy", "miss-"),
    ("B11", LLAMA2_70B, "a100-80g", 4, 64, 128 + 1024, 0.043, "TP 4, batch 64, prompt 128 / out 2048, 50%(s)", "LMDeploy", "miss-"),
    ("B12", LLAMA2_70B, "a100-80g", 4, 16, 2048 + 1024, 0.036, "TP 4, batch 16, prompt 2048 / out 2048, 50%(s)", "LMDeploy", "target"),
    ("B13", LLAMA2_70B, "a100-80g", 4, 32, 2048 + 1024, 0.043, "TP 4, batch 32, prompt 2048 / out 2048, 50%(s)", "LMDeploy", "miss-"),
    ("B14", "llama-3.1-8b", "h100-sxm", 1, 4, 512, 6.59e-3,
     "TPOT p50 at concurrency 4; prompt length not stated (context 512 assumed, as D1)", "vLLM-H100", "target"),
    ("B15", "llama-3.1-8b", "h100-sxm", 1, 16, 512, 10.94e-3,
     "TPOT p50 at concurrency 16; prompt length not stated (context 512 assumed, as D1)", "vLLM-H100", "miss-"),
]

# Llama-3.1-8B KV per token: 2 x 32 layers x 8 KV heads x 128 x 2 bytes (model-configs.md §2b).
KV_BYTES_PER_TOKEN = 131072
# The offload scenario: chunk 1 (8192 tokens out while the first 8192 come back) and decode step 0
# (all 16384 tokens come back; its own new entries, 128 KiB, go out).
# (id, pass name in the trace, bytes the published rate applies to, published bytes/s, reading, scope)
OFFLOAD = [
    ("O1", "decode step 0", 16384 * KV_BYTES_PER_TOKEN, 50e9,
     "DRAM -> HBM, one direction: 'for single-direction both can get up to about 50GB/s'", "target"),
    ("O2", "prefill chunk 1", 2 * 8192 * KV_BYTES_PER_TOKEN, 83.4e9,
     "both directions at once, equal amounts: 'DMA achieves 83.4 GB/s' (bi-directional)", "miss-"),
]


def short_model(model):
    name = os.path.basename(model)
    return name[:-len(".ini")] if name.endswith(".ini") else name


def kvsim_cost(kvsim, hardware, model, tokens, tp=1, context=0, batch=1, cpu="on"):
    out = subprocess.run([kvsim, "hw", "cost", hardware, "--model", model, "--tp", str(tp), "--context", str(context),
                          "--batch", str(batch), "--cpu-overhead", cpu, "--tokens"] + [str(t) for t in tokens],
                         capture_output=True, text=True, check=True).stdout
    return {int(r["tokens"]): r for r in csv.DictReader(out.splitlines())}


def offload_transfers(kvsim):
    """Per-pass KV transfer time (s) of the offload scenario, from its Chrome trace."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        subprocess.run([kvsim, "run", OFFLOAD_SCENARIO, "--out", os.path.join(tmp, "out"), "--timeline", trace],
                       capture_output=True, text=True, check=True)
        events = json.load(open(trace))["traceEvents"]
    passes = sorted((e for e in events if e.get("ph") == "X" and e.get("tid") == 0), key=lambda e: e["ts"])
    transfers = {}
    for p in passes:
        # The transfer slice of a pass starts with it, one per link on the path (all equal).
        durations = [e["dur"] for e in events if e.get("ph") == "X" and e["name"] == "KV transfer" and e["ts"] == p["ts"]]
        transfers[p["name"]] = (max(durations) if durations else 0.0) * 1e-6
    return transfers


def fmt_ms(seconds):
    return "%.1f ms" % (seconds * 1e3) if seconds >= 0.1 else "%.2f ms" % (seconds * 1e3)


def generate(kvsim):
    rows = list(csv.DictReader(open(os.path.join(ROOT, "tests", "data", "vidur_a100_linear_ops.csv"))))
    lines = ["### Linear operators of one layer on A100-80GB (vidur profiles)", "",
             "| model | TP | tokens | vidur (ms) | kvsim (ms) | error | regime |", "|---|---|---|---|---|---|---|"]
    errors = []
    for (model, tp) in sorted({(r["model"], int(r["tp"])) for r in rows}):
        group = [r for r in rows if r["model"] == model and int(r["tp"]) == tp]
        tokens = [int(r["tokens"]) for r in group]
        cost = kvsim_cost(kvsim, "a100-80g", model, tokens, tp)
        for r in group:
            t = int(r["tokens"])
            measured = sum(float(r[k]) for k in r if k.endswith("_ms"))
            predicted = float(cost[t]["linear_layer_s"]) * 1e3
            err = predicted / measured - 1
            regime = "compute" if float(cost[t]["compute_s"]) >= float(cost[t]["memory_s"]) else "memory"
            errors.append((model, tp, t, err))
            lines.append("| %s | %d | %d | %.3f | %.3f | %+.1f%% | %s |" % (model, tp, t, measured, predicted, 100 * err, regime))

    published = []  # (id, kind, hardware, model, scope, err)
    titles = {"decode": "Decode: time per output token, batch 1", "prefill": "Prefill: time to first token, batch 1"}
    for kind in ("decode", "prefill"):
        lines += ["", "### " + titles[kind], "",
                  "| # | model | hardware | TP | tokens | context | published | kvsim | error | published figure | source |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for pid, k, model, hw, tp, tokens, context, measured, reading, source, scope in PUBLISHED:
            if k != kind:
                continue
            predicted = float(kvsim_cost(kvsim, hw, model, [tokens], tp, context, cpu=cpu_for(source))[tokens]["pass_s"])
            err = predicted / measured - 1
            published.append((pid, kind, hw, short_model(model), scope, err))
            mark = " (miss, see below)" if scope.startswith("miss") else ""
            lines.append("| %s | %s | %s | %d | %d | %d | %s | %s | %+.1f%%%s | %s | %s |" % (
                pid, short_model(model), hw, tp, tokens, context, fmt_ms(measured), fmt_ms(predicted), 100 * err, mark,
                reading, source))

    lines += ["", "### Batched decode: time per output token at batch >= 4", "",
              "| # | model | hardware | TP | batch | context | published | kvsim | error | published figure | source |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pid, model, hw, tp, batch, context, measured, reading, source, scope in BATCHED:
        predicted = float(kvsim_cost(kvsim, hw, model, [1], tp, context, batch, cpu_for(source))[1]["pass_s"])
        err = predicted / measured - 1
        published.append((pid, "batched", hw, short_model(model), scope, err))
        mark = " (miss, see below)" if scope.startswith("miss") else ""
        lines.append("| %s | %s | %s | %d | %d | %d | %s | %s | %+.1f%%%s | %s | %s |" % (
            pid, short_model(model), hw, tp, batch, context, fmt_ms(measured), fmt_ms(predicted), 100 * err, mark,
            reading, source))

    transfers = offload_transfers(kvsim)
    lines += ["", "### KV offloading: Llama-3.1-8B KV between H100 HBM and host DRAM over PCIe Gen5", "",
              "| # | pass of offload-h100-dram.ini | bytes moved | published | kvsim | error | published figure | source |",
              "|---|---|---|---|---|---|---|---|"]
    for pid, pass_name, nbytes, rate, reading, scope in OFFLOAD:
        measured = nbytes / rate
        predicted = transfers[pass_name]
        err = predicted / measured - 1
        published.append((pid, "offload", "h100-sxm + host-ddr5", "llama-3.1-8b", scope, err))
        mark = " (miss, see below)" if scope.startswith("miss") else ""
        lines.append("| %s | %s | %.2f GiB | %s (%.1f GB/s) | %s | %+.1f%%%s | %s | %s |" % (
            pid, pass_name, nbytes / 2**30, fmt_ms(measured), rate / 1e9, fmt_ms(predicted), 100 * err, mark, reading,
            "vLLM-offload"))
    errs = [abs(p[5]) for p in published]
    held = [p for p in published if p[4] == "target"]
    lines += ["", "All %d published measurements above: mean absolute error %.1f%%; the %d held to +-%d%%: %.1f%%, "
              "%d of them inside it; %d documented misses." % (
                  len(errs), 100 * sum(errs) / len(errs), len(held), 100 * TARGET,
                  100 * sum(abs(p[5]) for p in held) / len(held), sum(abs(p[5]) <= TARGET for p in held),
                  len(published) - len(held))]
    lines += ["", "Rows of TRT-LLM and LMDeploy (C++ batch loops) are priced without the presets' vLLM CPU "
              "overhead (`kvsim hw cost --cpu-overhead off`); vLLM rows include it."]
    lines += ["", "Sources:", ""] + ["- **%s**: %s" % (tag, text) for tag, text in SOURCES]
    return "\n".join(lines) + "\n", errors, published


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir")
    ap.add_argument("--write", action="store_true", help="rewrite the generated part of docs/validation.md")
    args = ap.parse_args()
    table, errors, published = generate(args.kvsim)
    doc = open(DOC).read()
    head, rest = doc.split(BEGIN)
    _, tail = rest.split(END)
    if args.write:
        with open(DOC, "w") as f:
            f.write(head + BEGIN + "\n" + table + END + tail)
        print("wrote", DOC)
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        if not ok:
            print("FAIL:", what)

    check(args.write or rest.split(END)[0].strip() == table.strip(),
          "docs/validation.md is stale: rerun tests/validation/test_validation.py --write")
    # A roofline holds for weight streaming (1 token) and large GEMMs (>= 1024 tokens). It misses
    # where fixed kernel costs dominate: mid-size or very small per-rank GEMMs (docs/validation.md).
    for model, tp, t, err in errors:
        if (t == 1 and tp <= 4) or t >= 1024:
            check(abs(err) <= OPERATOR_TARGET, "%s TP%d %d tokens: error %+.1f%% beyond %d%%"
                  % (model, tp, t, 100 * err, 100 * OPERATOR_TARGET))
    for pid, kind, hw, model, scope, err in published:
        if scope == "target":
            check(abs(err) <= TARGET, "%s (%s %s on %s): error %+.1f%% beyond %d%%" % (pid, kind, model, hw, 100 * err, 100 * TARGET))
        elif scope == "miss-":
            # docs/validation.md explains these as under-predictions beyond the target; if kvsim
            # stops missing (or misses the other way), the explanation is stale.
            check(err < -TARGET, "%s (%s %s on %s) is documented as a miss by under-prediction but is %+.1f%%"
                  % (pid, kind, model, hw, 100 * err))
        else:
            assert scope == "miss+", scope
            check(err > TARGET, "%s (%s %s on %s) is documented as a miss by over-prediction but is %+.1f%%"
                  % (pid, kind, model, hw, 100 * err))
    # Issue 5 item 6: at least six published measurements within the target, covering decode and
    # prefill, 7-8B and 70B models, A100 and H100, and one KV offloading measurement.
    held = [p for p in published if p[4] == "target"]
    check(len(held) >= 6, "only %d published measurements held to the target" % len(held))
    # Issue 18 §2: at least 12 batched measurements in the table, most of them held to the target.
    check(len([p for p in published if p[1] == "batched"]) >= 12, "fewer than 12 batched measurements")
    check(len([p for p in held if p[1] == "batched"]) >= 8, "fewer than 8 batched measurements held to the target")
    for what, pred in (("decode", lambda p: p[1] == "decode"), ("prefill", lambda p: p[1] == "prefill"),
                       ("batched", lambda p: p[1] == "batched"),
                       ("offload", lambda p: p[1] == "offload"), ("70B", lambda p: "70b" in p[3]),
                       ("7-8B", lambda p: "8b" in p[3] or "7b" in p[3]), ("A100", lambda p: p[2].startswith("a100")),
                       ("H100", lambda p: p[2].startswith("h100"))):
        check(any(pred(p) for p in held), "no %s measurement held to the target" % what)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
