#!/usr/bin/env python3
"""End-to-end checks of the kvsim command line: determinism (same seed -> identical trace file,
identical results at any thread count, file trace == in-memory synthesis), and bad input (exit 2,
one line naming the file, no partial output)."""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time

from tiny_model import TINY_MODEL as MODEL

import checks
from checks import check


def run(kvsim, *argv):
    return subprocess.run([kvsim, *argv], capture_output=True, text=True, timeout=300)


def scenario(trace, threads, extra=""):
    return f"""[model]
preset = model.ini
[workload]
prompt_tokens = 700
generated_tokens = 12
chunk_tokens = 256
trace = {trace}
seed = 5
traced_layers = 0,2
{extra}
[policy]
spec = snapkv(budget=0.2, window=16, prefill=chunk)
spec = snapkv(budget=0.3, window=16, pooling=avg)
spec = streaming(sinks=4, window=64)
[sim]
threads = {threads}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    k, w = args.kvsim, args.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    with open(os.path.join(w, "model.ini"), "w") as f:
        f.write(MODEL)
    model = os.path.join(w, "model.ini")

    # Same seed -> byte-identical trace file; another seed -> a different one.
    synth = ["synth", "--model", model, "--prompt-tokens", "700", "--generated-tokens", "12", "--layers", "0,2",
             "--chunk-tokens", "256", "--window", "16", "--seed"]
    for name, seed in (("a.h5", "5"), ("b.h5", "5"), ("c.h5", "6")):
        time.sleep(1.1)  # HDF5 would store modification times with one-second resolution
        r = run(k, *synth, seed, "--out", os.path.join(w, name))
        check(r.returncode == 0, "synth %s: %s" % (name, r.stderr))
    check(filecmp.cmp(os.path.join(w, "a.h5"), os.path.join(w, "b.h5"), shallow=False), "same seed, identical file")
    check(not filecmp.cmp(os.path.join(w, "a.h5"), os.path.join(w, "c.h5"), shallow=False), "other seed differs")
    r = run(k, "inspect", os.path.join(w, "a.h5"), "--quiet")
    check(r.returncode == 0 and "valid" in r.stdout, "inspect a valid file: %s %s" % (r.stdout[-200:], r.stderr))

    # Results identical at 1 and 2 threads, and for the file trace vs in-memory synthesis.
    outs = {}
    for name, trace, threads in (("t1", "synthetic", 1), ("t2", "synthetic", 2), ("file", "a.h5", 2)):
        ini = os.path.join(w, name + ".ini")
        with open(ini, "w") as f:
            f.write(scenario(trace, threads))
        time.sleep(1.1)
        out = os.path.join(w, "out_" + name)
        r = run(k, "run", ini, "--out", out, "--quiet", "--save-kept", os.path.join(w, name + "_kept.h5"))
        check(r.returncode == 0, "run %s: %s" % (name, r.stderr))
        outs[name] = out
    for f in ("timeline.csv", "requests.csv"):
        check(filecmp.cmp(os.path.join(outs["t1"], f), os.path.join(outs["t2"], f), shallow=False),
              "%s identical at threads=1 and threads=2" % f)
    # summary.json names its scenario file (t1.ini vs t2.ini); everything else must match byte for byte.
    texts = [open(os.path.join(outs[n], "summary.json")).read().replace(n + ".ini", "X.ini") for n in ("t1", "t2")]
    check(texts[0] == texts[1], "summary.json identical at threads=1 and threads=2")
    check(filecmp.cmp(os.path.join(w, "t1_kept.h5"), os.path.join(w, "t2_kept.h5"), shallow=False),
          "kept masks identical at threads=1 and threads=2")
    # The same for the policies with cross-policy or cross-layer sharing and parallel kernels: H2O's
    # shared prompt sums (two post-fill budgets and a chunked one), dbudget on a partial trace,
    # LAVa's entropy split, KV-Compress's blocks ranked across layers, OBCache's per-query-head
    # copies, and the chunked precision policies.
    many = ("spec = h2o(budget=0.2, prefill=post_fill, decode=none)\nspec = h2o(budget=0.3, prefill=post_fill, decode=none)\n"
            "spec = h2o(budget=0.2, prefill=chunk, decode=step)\nspec = dbudget(threshold=0.95, window=16, prefill=chunk)\n"
            "spec = lava(budget=0.2, window=16)\nspec = kvcompress(budget=0.2, window=16, prefill=chunk)\n"
            "spec = kvcompress(budget=0.2, window=16)\nspec = obcache(budget=0.2, window=16)\n"
            "spec = mixed_precision(budget=0.2, window=16, prefill=chunk)\nspec = think(ratio=0.5, window=16, prefill=chunk)\n")
    texts = []
    for threads in (1, 2):
        ini = os.path.join(w, "many%d.ini" % threads)
        with open(ini, "w") as f:
            f.write(scenario("synthetic", threads).replace("[policy]\n", "[policy]\n" + many))
        out = os.path.join(w, "out_many%d" % threads)
        r = run(k, "run", ini, "--out", out, "--quiet")
        check(r.returncode == 0, "run many%d: %s" % (threads, r.stderr))
        texts.append(open(os.path.join(out, "summary.json")).read().replace("many%d.ini" % threads, "X.ini")
                     if r.returncode == 0 else "")
    check(texts[0] == texts[1] and texts[0] != "", "h2o/dbudget/lava/kvcompress/obcache/precision summary identical at 1 and 2 threads")
    mem = json.load(open(os.path.join(outs["t1"], "summary.json")))["policies"]
    filed = json.load(open(os.path.join(outs["file"], "summary.json")))["policies"]
    check(mem == filed, "trace file gives the same results as in-memory synthesis")
    check(len(mem) == 4 and mem[0]["spec"] == "full", "full runs first as the baseline")
    # A trace file stores no precision: the scenario's kv_bits applies (8-bit KV: half the bytes).
    ini = os.path.join(w, "file8.ini")
    with open(ini, "w") as f:
        f.write(scenario("a.h5", 2).replace("preset = model.ini", "preset = model.ini\nkv_bits = 8"))
    r = run(k, "run", ini, "--out", os.path.join(w, "out_file8"), "--quiet")
    check(r.returncode == 0, "file trace with kv_bits = 8: %s" % r.stderr)
    if r.returncode == 0:
        eight = json.load(open(os.path.join(w, "out_file8", "summary.json")))["policies"]
        check(all(a["peak_bytes"] * 2 == b["peak_bytes"] and a["peak_entries"] == b["peak_entries"]
                  for a, b in zip(eight, filed)), "kv_bits = 8 halves peak_bytes of a file trace")

    # With [hardware]: times in summary.json and a Chrome trace whose slices add up to e2e.
    ini = os.path.join(w, "hw.ini")
    with open(ini, "w") as f:
        f.write(scenario("synthetic", 2) + "[hardware]\npreset = h100-sxm\nattach = host-ddr5\n"
                "placement = offload(tier=dram, prefetch=layer)\n")
    trace_json = os.path.join(w, "trace.json")
    r = run(k, "run", ini, "--out", os.path.join(w, "out_hw"), "--quiet", "--timeline", trace_json)
    check(r.returncode == 0, "run with hardware: %s" % r.stderr)
    if r.returncode == 0:
        summary = json.load(open(os.path.join(w, "out_hw", "summary.json")))["policies"]
        events = json.load(open(trace_json))["traceEvents"]
        passes = 3 + 12  # ceil(700 / 256) chunks + 12 decode steps
        for pid, policy in enumerate(summary):
            compute = [e for e in events if e["ph"] == "X" and e["pid"] == pid and e["tid"] == 0]
            check(len(compute) == passes, "one compute slice per pass (%d)" % len(compute))
            starts = [e["ts"] for e in compute]
            check(starts == sorted(starts), "slices in time order")
            total_s = sum(e["dur"] for e in compute) / 1e6
            check(abs(total_s - policy["e2e_s"]["p50"]) <= 1e-9 * max(1.0, total_s), "slices add up to e2e_s")
            check(policy["ttft_s"]["p50"] > 0 and policy["tpot_s"]["p50"] > 0, "ttft and tpot present")
        counters = [e for e in events if e["ph"] == "C"]
        check(len(counters) == passes * len(summary), "a resident-bytes counter per pass")
    r = run(k, "run", os.path.join(w, "t1.ini"), "--out", os.path.join(w, "out_nohw"), "--quiet", "--timeline", trace_json + "2")
    check(r.returncode == 2 and "needs a [hardware]" in r.stderr, "--timeline without hardware: %r" % r.stderr)
    check(not os.path.exists(os.path.join(w, "out_nohw")), "--timeline without hardware writes nothing")

    # Bad input: exit 2, one line naming the file, nothing written.
    bad_cases = {
        "unknown_key.ini": (scenario("synthetic", 1, "promt_tokens = 5"), "unknown key 'workload.promt_tokens'"),
        "bad_policy.ini": (scenario("synthetic", 1).replace("pooling=avg", "pooling=mean"), "pooling"),
        "missing_trace.ini": (scenario("nope.h5", 1), "nope.h5"),
        "bad_placement.ini": (scenario("synthetic", 1) + "[hardware]\npreset = h100-sxm\nplacement = offload(tier=cxl)\n",
                              "no lower tier 'cxl'"),
        "bad_hardware.ini": (scenario("synthetic", 1) + "[hardware]\npreset = h1000\n", "unknown hardware preset 'h1000'"),
    }
    for name, (text, fragment) in bad_cases.items():
        ini = os.path.join(w, name)
        with open(ini, "w") as f:
            f.write(text)
        out = os.path.join(w, "out_" + name)
        r = run(k, "run", ini, "--out", out, "--quiet")
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2, "%s: exit %d" % (name, r.returncode))
        check(len(lines) == 1 and fragment in lines[0], "%s: one clear line, got %r" % (name, r.stderr))
        check(not os.path.exists(os.path.join(out, "summary.json")), "%s: no summary written" % name)
    truncated = os.path.join(w, "truncated.h5")
    with open(os.path.join(w, "a.h5"), "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[: os.path.getsize(os.path.join(w, "a.h5")) // 2])
    r = run(k, "inspect", truncated)
    check(r.returncode == 2 and "truncated.h5" in r.stderr, "truncated trace: %r" % r.stderr)
    r = run(k, "frobnicate")
    check(r.returncode == 2, "unknown command exits 2")

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
