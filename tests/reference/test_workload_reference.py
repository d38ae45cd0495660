#!/usr/bin/python3
"""`kvsim workload` against numpy statistics of the same trace files, parsed here independently.

The committed samples (tests/data/azure_conv_sample.csv, mooncake_conversation_sample.jsonl) and
the full Azure conversation trace (configs/workloads/azure_conv.csv) are read with Python's csv and
json modules and datetime; request count, duration, arrival rate, prompt/output mean, p50, p90, p99
(numpy.percentile, linear) and max, and for Mooncake the block count, distinct blocks and ideal
prefix reuse (1 - distinct/all) must match what kvsim prints, to the digits it prints. Also:
--max-requests keeps the first N rows; rows with 0 output tokens count as 1 and are reported; a
synthetic spec gives identical output for the same --seed and different output for another.

usage: /usr/bin/python3 tests/reference/test_workload_reference.py --kvsim BIN --workdir DIR
"""
import csv
import datetime
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AZURE_SAMPLE = os.path.join(ROOT, "tests", "data", "azure_conv_sample.csv")
MOONCAKE_SAMPLE = os.path.join(ROOT, "tests", "data", "mooncake_conversation_sample.jsonl")
AZURE_FULL = os.path.join(ROOT, "configs", "workloads", "azure_conv.csv")


# ---------------------------------------------------------------------------------------------
# Independent readers

def azure_ns(text):
    """'2023-11-16 18:15:46.6805900' -> integer nanoseconds since 2000-01-01 (naive, no time zone)."""
    whole, _, fraction = text.partition(".")
    t = datetime.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S")
    seconds = (t - datetime.datetime(2000, 1, 1)) // datetime.timedelta(seconds=1)
    return seconds * 10**9 + int((fraction + "000000000")[:9])


def read_azure(path, max_requests=0):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if max_requests:
        rows = rows[:max_requests]
    ns = [azure_ns(r["TIMESTAMP"]) for r in rows]
    return dict(arrival=[(t - ns[0]) / 1e9 for t in ns],
                prompt=[int(r["ContextTokens"]) for r in rows],
                output=[int(r["GeneratedTokens"]) for r in rows], blocks=None)


def read_mooncake(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return dict(arrival=[(r["timestamp"] - rows[0]["timestamp"]) / 1000 for r in rows],
                prompt=[r["input_length"] for r in rows], output=[r["output_length"] for r in rows],
                blocks=[h for r in rows for h in r["hash_ids"]])


def expected(trace):
    """What `kvsim workload` must print for `trace`, as numbers."""
    n = len(trace["arrival"])
    output = [max(1, x) for x in trace["output"]]  # 0 generated tokens are read as 1
    e = {"requests": n, "duration": trace["arrival"][-1], "zero_output": sum(1 for x in trace["output"] if x == 0)}
    e["rate"] = (n - 1) / e["duration"]
    for name, values in (("prompt", trace["prompt"]), ("output", output)):
        v = np.array(values, dtype=np.float64)
        e[name] = [v.mean(), *np.percentile(v, [50, 90, 99]), v.max()]
    if trace["blocks"] is not None:
        e["blocks"] = len(trace["blocks"])
        e["distinct"] = len(set(trace["blocks"]))
        e["reuse"] = 100 * (1 - e["distinct"] / e["blocks"])
    return e


# ---------------------------------------------------------------------------------------------
# kvsim's output

def run(kvsim, *argv):
    p = subprocess.run([kvsim, "workload", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def parse_output(text):
    got = {}
    for pattern, key, kind in ((r"^requests:\s+(\d+)$", "requests", int),
                               (r"^duration:\s+([\d.]+) s", "duration", float),
                               (r"^arrival rate:\s+([\d.]+) req/s", "rate", float),
                               (r"^note:\s+(\d+) requests with 0 output tokens", "zero_output", int),
                               (r"^prefix blocks: (\d+) of 512 tokens, (\d+) distinct; ideal prefix reuse ([\d.]+)%$",
                                "prefix", str)):
        m = re.search(pattern, text, re.M)
        if m:
            got[key] = m.groups() if key == "prefix" else kind(m.group(1))
    for name in ("prompt", "output"):
        m = re.search(r"^  %s((?:\s+[\d.]+){5})$" % name, text, re.M)
        if m:
            got[name] = [float(x) for x in m.group(1).split()]
    got.setdefault("zero_output", 0)
    return got


def compare(ck, label, got, want):
    """Each printed number equals the independent value to the printed precision."""
    ck.eq(got.get("requests"), want["requests"], "%s: request count" % label)
    ck.close(got.get("duration"), want["duration"], "%s: duration" % label, rel=0, abs_=0.0005 + 1e-9)
    ck.close(got.get("rate"), want["rate"], "%s: arrival rate" % label, rel=0, abs_=0.0005 + 1e-9)
    ck.eq(got.get("zero_output"), want["zero_output"], "%s: rows with 0 output tokens" % label)
    for name in ("prompt", "output"):
        values = got.get(name) or [None] * 5
        for stat, tolerance, g, w in zip(("mean", "p50", "p90", "p99", "max"), (0.005, 0.05, 0.05, 0.05, 0.5),
                                         values, want[name]):
            ck.close(g, w, "%s: %s tokens %s" % (label, name, stat), rel=0, abs_=tolerance + 1e-9)
    if "blocks" in want:
        prefix = got.get("prefix") or (None, None, None)
        ck.eq(prefix[0] and int(prefix[0]), want["blocks"], "%s: prefix blocks" % label)
        ck.eq(prefix[1] and int(prefix[1]), want["distinct"], "%s: distinct prefix blocks" % label)
        ck.close(prefix[2] and float(prefix[2]), want["reuse"], "%s: ideal prefix reuse %%" % label, rel=0,
                 abs_=0.005 + 1e-9)
    else:
        ck.check("prefix" not in got, "%s: no prefix-block line for a trace without hashes" % label)


def self_tests(ck):
    ck.eq(azure_ns("2000-01-01 00:00:01.5"), 1_500_000_000, "azure_ns: fraction")
    ck.eq(azure_ns("2000-01-02 00:00:00.0000001"), 86_400 * 10**9 + 100, "azure_ns: 7 digits")
    ck.eq(azure_ns("2000-03-01 00:00:00") - azure_ns("2000-02-28 00:00:00"), 2 * 86_400 * 10**9, "azure_ns: leap 2000")
    e = expected(dict(arrival=[0, 1, 3], prompt=[1, 2, 3], output=[0, 5, 7], blocks=[1, 2, 1, 1]))
    ck.eq(e["output"][0], 13 / 3, "expected: 0 output counts as 1")
    ck.eq(e["rate"], 2 / 3, "expected: rate = (n-1) / duration")
    ck.eq(e["reuse"], 50.0, "expected: reuse = 1 - distinct/all")


def run_checks(ck, args):
    cases = [("azure sample", AZURE_SAMPLE, read_azure(AZURE_SAMPLE), []),
             ("mooncake sample", MOONCAKE_SAMPLE, read_mooncake(MOONCAKE_SAMPLE), []),
             ("azure full", AZURE_FULL, read_azure(AZURE_FULL), []),
             ("azure first 100", AZURE_SAMPLE, read_azure(AZURE_SAMPLE, 100), ["--max-requests", "100"])]
    for label, path, trace, extra in cases:
        rc, out, err = run(args.kvsim, path, *extra)
        if not ck.eq(rc, 0, "%s: kvsim workload exits 0" % label):
            print(err)
            continue
        compare(ck, label, parse_output(out), expected(trace))

    # Rows with 0 generated tokens: a copy of the sample with every 7th GeneratedTokens set to 0.
    zero_path = os.path.join(args.workdir, "azure_zero_output.csv")
    with open(AZURE_SAMPLE, newline="") as f:
        rows = list(csv.reader(f))
    for i in range(1, len(rows), 7):
        rows[i][2] = "0"
    with open(zero_path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    rc, out, err = run(args.kvsim, zero_path)
    if ck.eq(rc, 0, "zero outputs: kvsim workload exits 0"):
        compare(ck, "zero outputs", parse_output(out), expected(read_azure(zero_path)))

    # Synthetic: deterministic per seed.
    spec = "gamma(rate=5, cv=3, requests=3000, prompt_mean=2048)"
    a, b, c = run(args.kvsim, spec, "--seed", "7"), run(args.kvsim, spec, "--seed", "7"), run(args.kvsim, spec, "--seed", "8")
    ck.eq(a[0], 0, "synthetic: exits 0")
    ck.eq(a[1], b[1], "synthetic: same seed, identical output")
    ck.check(a[1] != c[1], "synthetic: another seed, another workload")
    ck.check(re.search(r"^source:\s+gamma\(rate=5, cv=3, requests=3000, prompt_mean=2048, prompt_cv=1, prompt_max=8192, "
                       r"output_mean=200, output_cv=1, output_max=2048\)$", a[1], re.M) is not None,
             "synthetic: canonical spec printed", a[1])


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run_checks)
