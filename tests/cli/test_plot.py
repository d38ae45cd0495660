#!/usr/bin/python3
"""tools/plot.py (issue 7): on a smoke-sweep results folder it writes valid, non-empty PNGs that
report.html references; its Pareto front matches a hand-worked example; a folder with no results
is one clear error and exit 1."""
import argparse
import importlib.util
import os
import shutil
import struct
import subprocess
import sys

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


# Hand-worked Pareto front (minimise footprint, maximise fidelity): (0.5,0.6) is dominated by
# (0.4,0.7), (0.9,0.8) by (0.8,0.9); ties in footprint keep the better fidelity only.
spec = importlib.util.spec_from_file_location("plot", plot_py)
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)
pts = [(0.9, 0.8), (0.4, 0.7), (0.5, 0.6), (0.8, 0.9), (1.0, 1.0), (0.4, 0.5), (0.1, 0.2)]
check(plot.pareto(pts) == [(0.1, 0.2), (0.4, 0.7), (0.8, 0.9), (1.0, 1.0)], "pareto front by hand")
check(plot.family("snapkv(budget=0.2, window=16, prefill=chunk)") == "snapkv/chunk", "family names prefill mode")

shutil.rmtree(args.workdir, ignore_errors=True)
os.makedirs(args.workdir)
res = os.path.join(args.workdir, "res")
subprocess.run([args.kvsim, "sweep", args.sweep, "--out", res, "-q", "-j", "2"], check=True)
out = os.path.join(args.workdir, "plots")
r = subprocess.run([sys.executable, plot_py, res, "--out", out], capture_output=True, text=True)
check(r.returncode == 0, "plot.py exits 0 (stderr: %s)" % r.stderr.strip())
report = open(os.path.join(out, "report.html")).read() if os.path.exists(os.path.join(out, "report.html")) else ""
for name in ("pareto.png", "peak_memory.png", "memory_time.png", "latency_cdf.png"):
    path = os.path.join(out, name)
    data = open(path, "rb").read() if os.path.exists(path) else b""
    ok = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
    check(ok and len(data) > 5000 and w >= 300 and h >= 200, "%s is a PNG of %dx%d, %d bytes" % (name, w, h, len(data)))
    check("src='%s'" % name in report, "report.html shows %s" % name)
# The report's Pareto table lists each policy family with as many points as results.csv rows.
check(report.count("<td>snapkv/chunk</td><td>12</td>") == 1, "report counts 12 snapkv/chunk points (6 scenarios x 2 budgets)")

empty = os.path.join(args.workdir, "empty")
os.makedirs(empty)
r = subprocess.run([sys.executable, plot_py, empty], capture_output=True, text=True)
check(r.returncode == 1 and r.stderr.count("\n") == 1 and "no results.csv" in r.stderr,
      "empty folder: one error line, exit 1 (%r)" % r.stderr)
print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
