#!/usr/bin/env python3
"""Peak memory of a long single-request run (issue 8): kvsim runs a 128K-token llama-3.1-8b
request with every one of its 32 layers traced (synthetic trace, generated one layer at a time the
way a file is read one layer at a time) and its peak RSS must stay below 2x the size of one layer's
K/V/Q data, i.e. kvsim holds about one layer, never the trace.

  /usr/bin/python3 tools/bench_memory.py --kvsim build/tools/kvsim/kvsim [--layers 32] [--out bench/memory.json]

One layer's data, as kvsim holds it (float32): K and V of every KV head over n + m positions, plus
the stored queries of every query head (the last `query_window` prompt positions and every decode
step). Peak RSS comes from getrusage of the child, so no extra package is needed.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

MODEL = dict(layers=32, q_heads=32, kv_heads=8, head_dim=128)  # llama-3.1-8b
# 131008 + 64 = 131072 tokens, Llama-3.1's context length (kvsim refuses more).
PROMPT, GENERATED, QUERY_WINDOW = 131008, 64, 64

SCENARIO = """[model]
preset = llama-3.1-8b
[workload]
prompt_tokens = {prompt}
generated_tokens = {generated}
chunk_tokens = 4096
trace = synthetic
seed = 1
traced_layers = {layers}
[policy]
spec = snapkv(budget=0.2, window=32, prefill=post_fill)
[hardware]
preset = h100-sxm
"""


def layer_bytes():
    positions = PROMPT + GENERATED
    kv = 2 * MODEL["kv_heads"] * positions * MODEL["head_dim"] * 4
    q = MODEL["q_heads"] * (QUERY_WINDOW + GENERATED) * MODEL["head_dim"] * 4
    return kv + q


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--layers", type=int, default=32, help="traced layers, spread over the model (default 32: all)")
    ap.add_argument("--out", help="write the measurement as JSON here")
    args = ap.parse_args()
    if not 1 <= args.layers <= MODEL["layers"]:
        sys.exit("bench_memory.py: --layers must be 1..%d" % MODEL["layers"])
    step = MODEL["layers"] / args.layers
    layers = ",".join(str(int(i * step)) for i in range(args.layers))
    with tempfile.TemporaryDirectory() as tmp:
        scenario = os.path.join(tmp, "memory.ini")
        with open(scenario, "w") as f:
            f.write(SCENARIO.format(prompt=PROMPT, generated=GENERATED, layers=layers))
        start = time.time()
        proc = subprocess.run([args.kvsim, "run", scenario, "--out", os.path.join(tmp, "out")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall_s = time.time() - start
        if proc.returncode != 0:
            sys.exit("bench_memory.py: kvsim run failed: " + proc.stderr.strip()[-500:])
    peak_rss_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    one_layer = layer_bytes()
    result = {"prompt_tokens": PROMPT, "generated_tokens": GENERATED, "traced_layers": args.layers,
              "peak_rss_bytes": peak_rss_bytes, "one_layer_kvq_bytes": one_layer,
              "ratio": peak_rss_bytes / one_layer, "target_ratio": 2.0, "wall_s": wall_s}
    print("peak RSS %.2f GiB = %.2fx one layer's K/V/Q (%.2f GiB); target < 2x; %d traced layers, %.0f s" % (
        peak_rss_bytes / 2**30, result["ratio"], one_layer / 2**30, args.layers, wall_s))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    sys.exit(0 if result["ratio"] < 2.0 else 1)


if __name__ == "__main__":
    main()
