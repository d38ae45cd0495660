#!/usr/bin/env python3
"""Validation of kvsim's cost model against measurements (issue 5 item 6).

1. Linear operators: vidur's A100 profiles (tests/data/vidur_a100_linear_ops.csv: median time of
   the QKV, O, MLP up/gate and MLP down GEMMs of one layer) against `kvsim hw cost a100-80g
   ... linear_layer_s`, for Llama-3-8B and -70B (same shapes as 3.1) at TP 1/2/4/8.
2. Published end-to-end single-request numbers (decode TPOT), each with its source.

Regenerates the tables of docs/validation.md (--write) or checks that the committed file is
current, and checks the accuracy targets. Prints "N passed, M failed"."""
import argparse
import csv
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "validation.md")
BEGIN, END = "<!-- BEGIN GENERATED: tests/validation/test_validation.py --write -->", "<!-- END GENERATED -->"

# (what, hardware, model, tokens in the pass, cached context, measured seconds, source)
PUBLISHED = [
    ("Llama-3.1-8B decode TPOT, batch 1, short chat", "h100-sxm", "llama-3.1-8b", 1, 512, 6.48e-3,
     "vLLM 0.21 concurrency sweep, H100-80GB, chatbot-short, concurrency 1, TPOT p50 "
     "(yobitelcomm.github.io/bench/recipes/concurrency-sweep; model-configs.md §4c)"),
    ("Llama-3.1-8B decode TPOT, batch 1, in 1024 / out 128", "a100-40g", "llama-3.1-8b", 1, 1088, 13.3e-3,
     "vLLM 0.23 on A100-40GB, ~75 tok/s at batch 1 (johnmusgrave.com vllm-throughput-latency-sweep; "
     "model-configs.md §4c)"),
]
TARGET = 0.25


def kvsim_cost(kvsim, hardware, model, tokens, tp=1, context=0):
    out = subprocess.run([kvsim, "hw", "cost", hardware, "--model", model, "--tp", str(tp), "--context", str(context),
                          "--tokens"] + [str(t) for t in tokens], capture_output=True, text=True, check=True).stdout
    return {int(r["tokens"]): r for r in csv.DictReader(out.splitlines())}


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
    lines += ["", "### Published single-request measurements", "",
              "| measurement | hardware | measured | kvsim | error | source |", "|---|---|---|---|---|---|"]
    published = []
    for what, hw, model, tokens, context, measured, source in PUBLISHED:
        predicted = float(kvsim_cost(kvsim, hw, model, [tokens], 1, context)[tokens]["pass_s"])
        err = predicted / measured - 1
        published.append((what, err))
        lines.append("| %s | %s | %.2f ms | %.2f ms | %+.1f%% | %s |" % (what, hw, measured * 1e3, predicted * 1e3, 100 * err, source))
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
            check(abs(err) <= TARGET, "%s TP%d %d tokens: error %+.1f%% beyond %d%%" % (model, tp, t, 100 * err, 100 * TARGET))
    for what, err in published:
        check(abs(err) <= TARGET, "%s: error %+.1f%%" % (what, 100 * err))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
