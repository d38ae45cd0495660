#!/usr/bin/python3
"""tools/plot.py (issue 7): on a smoke-sweep results folder it writes valid, non-empty PNGs that
report.html references; its Pareto front matches a hand-worked example; on a serving run (300 Azure
requests) it draws per-request TTFT/TPOT CDFs whose table percentiles, computed by plot.py from
requests.csv, equal the ones kvsim wrote to summary.json; on a run with several draws
([workload] seeds) the Pareto points carry the 95 % intervals of summary.json as error bars; a
folder with no results is one clear error and exit 1."""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys

from tiny_model import TINY_MODEL

ap = argparse.ArgumentParser()
ap.add_argument("--kvsim", required=True)
ap.add_argument("--workdir", required=True)
ap.add_argument("--sweep", required=True)
args = ap.parse_args()
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
plot_py = os.path.join(root, "tools", "plot.py")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def png_ok(path):
    data = open(path, "rb").read() if os.path.exists(path) else b""
    ok = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
    return ok and len(data) > 5000 and w >= 300 and h >= 200, "%dx%d, %d bytes" % (w, h, len(data))


SERVING = """[model]
preset = llama-3.1-8b
[workload]
arrivals = %s
chunk_tokens = 1024
seed = 3
[policy]
spec = snapkv(budget=0.2, prefill=chunk)
spec = streaming(sinks=4, window=512)
[hardware]
preset = h100-sxm
[serving]
max_batch_tokens = 1024
slo = ttft=0.5s, tpot=30ms
profile_decode_tokens = 64
"""


# Hand-worked Pareto front (minimise footprint, maximise fidelity): (0.5,0.6) is dominated by
# (0.4,0.7), (0.9,0.8) by (0.8,0.9); ties in footprint keep the better fidelity only.
spec = importlib.util.spec_from_file_location("plot", plot_py)
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)
pts = [(0.9, 0.8), (0.4, 0.7), (0.5, 0.6), (0.8, 0.9), (1.0, 1.0), (0.4, 0.5), (0.1, 0.2)]
check(plot.pareto(pts) == [(0.1, 0.2), (0.4, 0.7), (0.8, 0.9), (1.0, 1.0)], "pareto front by hand")
check(plot.family("snapkv(budget=0.2, window=16, prefill=chunk)") == "snapkv/chunk", "family names prefill mode")
check(plot.percentiles([4.0, 1.0, 3.0, 2.0], (50, 90)) == [2.5, 3.7], "linear-interpolated percentiles by hand")
check(plot.slo_seconds("ttft_p99=2s, tpot=100ms") == {"ttft": 2.0, "tpot": 0.1}, "SLO string to seconds")

shutil.rmtree(args.workdir, ignore_errors=True)
os.makedirs(args.workdir)
res = os.path.join(args.workdir, "res")
subprocess.run([args.kvsim, "sweep", args.sweep, "--out", res, "-q", "-j", "2"], check=True)
out = os.path.join(args.workdir, "plots")
r = subprocess.run([sys.executable, plot_py, res, "--out", out], capture_output=True, text=True)
check(r.returncode == 0, "plot.py exits 0 (stderr: %s)" % r.stderr.strip())
report = open(os.path.join(out, "report.html")).read() if os.path.exists(os.path.join(out, "report.html")) else ""
for name in ("pareto.png", "peak_memory.png", "memory_time.png", "latency_cdf.png"):
    ok, what = png_ok(os.path.join(out, name))
    check(ok, "%s is a PNG of %s" % (name, what))
    check("src='%s'" % name in report, "report.html shows %s" % name)
# The report's Pareto table lists each policy family with as many points as results.csv rows.
check(report.count("<td>snapkv/chunk</td><td>12</td>") == 1, "report counts 12 snapkv/chunk points (6 scenarios x 2 budgets)")

# A serving run: per-request CDFs, and the table's percentiles (plot.py, from requests.csv) match
# kvsim's own summary.json (C++, from its in-memory results) to the CSV's 9 significant digits.
ini = os.path.join(args.workdir, "serve.ini")
with open(ini, "w") as f:
    f.write(SERVING % os.path.join(root, "tests", "data", "azure_conv_sample.csv"))
serve = os.path.join(args.workdir, "serve")
subprocess.run([args.kvsim, "run", ini, "--out", serve, "-q"], check=True)
splots = os.path.join(args.workdir, "serve_plots")
r = subprocess.run([sys.executable, plot_py, serve, "--out", splots], capture_output=True, text=True)
check(r.returncode == 0, "plot.py on a serving run exits 0 (stderr: %s)" % r.stderr.strip())
ok, what = png_ok(os.path.join(splots, "request_latency.png"))
check(ok, "request_latency.png is a PNG of %s" % what)
ok, what = png_ok(os.path.join(splots, "memory_time.png"))
check(ok, "serving memory_time.png is a PNG of %s" % what)
summary = json.load(open(os.path.join(serve, "summary.json")))
served, table = plot.plot_request_latency(serve, splots)
check(served == "request_latency.png" and len(table) == 1 + len(summary["policies"]), "one table row per policy")
for row, pol in zip(table[1:], summary["policies"]):
    check(int(row[1]) == pol["served"] and int(row[2]) == pol["rejected"],
          "%s: served %s / rejected %s as summary.json" % (pol["spec"], row[1], row[2]))
    want = [pol["ttft_s"]["p50"], pol["ttft_s"]["p90"], pol["ttft_s"]["p99"], pol["tpot_s"]["p50"], pol["tpot_s"]["p99"]]
    got = [float(x) for x in row[3:8]]
    check(all(abs(g - w) <= 1e-5 * w for g, w in zip(got, want)),
          "%s: TTFT/TPOT percentiles %s match summary.json %s" % (pol["spec"], got, want))
bad = subprocess.run([sys.executable, plot_py, res, "--scenario", "nope"], capture_output=True, text=True)
check(bad.returncode == 1 and "--scenario nope" in bad.stderr, "unknown --scenario: clear error (%r)" % bad.stderr)

# Three draws: summary.json's <metric>_ci95 half-widths become the Pareto plot's error bars.
with open(os.path.join(args.workdir, "model.ini"), "w") as f:
    f.write(TINY_MODEL)
with open(os.path.join(args.workdir, "seeds.ini"), "w") as f:
    f.write("[model]\npreset = model.ini\n[workload]\nprompt_tokens = 400\ngenerated_tokens = 8\nchunk_tokens = 128\n"
            "seeds = 3\ntraced_layers = 0\n[policy]\nspec = snapkv(budget=0.2, window=16, prefill=chunk)\n"
            "[hardware]\npreset = h100-sxm\n")
drawn = os.path.join(args.workdir, "seeds")
subprocess.run([args.kvsim, "run", os.path.join(args.workdir, "seeds.ini"), "--out", drawn, "-q"], check=True,
               stdout=subprocess.DEVNULL)
rows = plot.read_rows(drawn)
half = [plot.ci95(r, "attention_recall_mean") for r in rows]
want = [p["attention_recall"].get("mean_ci95") for p in json.load(open(os.path.join(drawn, "summary.json")))["policies"]]
check(half == want and half[1] > 0, "error bars are summary.json's 95 %% half-widths %s (%s)" % (want, half))
check(plot.ci95(rows[0], "footprint_normalized") == 0, "the full cache's footprint is exact (no bar)")
r = subprocess.run([sys.executable, plot_py, drawn], capture_output=True, text=True)
ok, what = png_ok(os.path.join(drawn, "plots", "pareto.png"))
check(r.returncode == 0 and ok, "plot.py on three draws: pareto.png is a PNG of %s (%s)" % (what, r.stderr.strip()))
report = open(os.path.join(drawn, "plots", "report.html")).read() if r.returncode == 0 else ""
check("widest 95 % interval" in report and "%.4f" % half[1] in report, "the report's table gives the widest interval")
ok, what = png_ok(os.path.join(drawn, "plots", "memory_time.png"))
_, table = plot.plot_memory_time(drawn, os.path.join(drawn, "plots"))
check(ok and len(table) == 1 + 2, "memory_time.png is drawn from a timeline with a seed column: %s, %d rows" % (what, len(table)))
# Without [hardware] a replay's timeline has no clock: memory over time is not drawn (it crashed).
with open(os.path.join(args.workdir, "untimed.ini"), "w") as f:
    f.write(open(os.path.join(args.workdir, "seeds.ini")).read().split("[hardware]")[0].replace("seeds = 3", "seed = 2"))
untimed = os.path.join(args.workdir, "untimed")
subprocess.run([args.kvsim, "run", os.path.join(args.workdir, "untimed.ini"), "--out", untimed, "-q"], check=True,
               stdout=subprocess.DEVNULL)
r = subprocess.run([sys.executable, plot_py, untimed], capture_output=True, text=True)
check(r.returncode == 0 and not os.path.exists(os.path.join(untimed, "plots", "memory_time.png")),
      "a run without hardware: plot.py exits 0 and draws no memory over time (%s)" % r.stderr.strip())

empty = os.path.join(args.workdir, "empty")
os.makedirs(empty)
r = subprocess.run([sys.executable, plot_py, empty], capture_output=True, text=True)
check(r.returncode == 1 and r.stderr.count("\n") == 1 and "no results.csv" in r.stderr,
      "empty folder: one error line, exit 1 (%r)" % r.stderr)
print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
