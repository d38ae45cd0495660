#!/usr/bin/python3
"""tools/plot.py (issue 7): on a smoke-sweep results folder it writes valid, non-empty PNGs that
report.html references; its Pareto front matches a hand-worked example; on a serving run (300 Azure
requests) it draws per-request TTFT/TPOT CDFs whose table percentiles, computed by plot.py from
requests.csv, equal the ones kvsim wrote to summary.json; on a run with several draws
([workload] seeds) the Pareto points carry the 95 % intervals of summary.json as error bars; a
folder with no results is one clear error and exit 1.

Issue 21 §3 (plots a person reads at a glance), read back from figures.json (plot.py's description
of each drawn figure, taken from the matplotlib artists after drawing): --metric picks the Pareto
y values (they equal results.csv's column; the output-error front falls with footprint, recall's
rises); the legend's box lies outside the axes' box; points at footprint ~1 sit at distinct x
within the axes; memory_time has at most 8 series a panel, distinct colour/style pairs and a title
naming the model, prompt and chunk (no hash); no figure has overlapping tick labels; a single-
scenario run draws no latency CDF and the report says why; on a kvsim plan folder plan_load.png
plots every load the search tried (as many as the row's simulations), the SLO lines at the SLO and
the chosen load as a star at plan.json's max_rate_per_s; --metric foo is one error line, exit 2."""
import argparse
import importlib.util
import json
import os
import re
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



def figures(folder):
    path = os.path.join(folder, "figures.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def no_overlaps(figs, where):
    bad = ["%s %r" % (name, p["title"]) for name, f in figs.items() for p in f["panels"] if p["overlapping_tick_labels"]]
    check(figs and not bad, "%s: no overlapping tick labels (%s)" % (where, bad or "none"))


def plotted(fig, prefix):
    """The y values of the named scatters (every result point) of a one-panel figure."""
    return sorted(y for s in fig["panels"][0]["series"] if s["kind"] == "points" and s["label"].startswith(prefix)
                  for y in s["y"])


# The overlap check itself sees crowded labels: 40 numbered ticks on a 3-inch axis.
crowded, cax = plot.plt.subplots(figsize=(3, 2))
cax.set_xticks(range(40))
check(plot.describe(crowded)["panels"][0]["overlapping_tick_labels"] > 0, "describe() counts overlapping tick labels")
plot.plt.close(crowded)

import csv  # noqa: E402
results = list(csv.DictReader(open(os.path.join(res, "results.csv"))))
figs = figures(out)
no_overlaps(figs, "smoke sweep")
par = figs.get("pareto.png", {"panels": [{}]})["panels"][0]
ax_box, leg_box = par.get("axes_box"), par.get("legend_box")
check(ax_box and leg_box and leg_box[0] >= ax_box[2], "pareto legend %s lies right of the axes %s" % (leg_box, ax_box))
want = sorted(float(r["attention_recall_mean"]) for r in results)
got = plotted(figs.get("pareto.png", {"panels": [{"series": []}]}), "points")
check(len(got) == len(want) and all(abs(g - w) < 1e-9 for g, w in zip(got, want)),
      "default pareto plots results.csv's attention_recall_mean (%d points)" % len(got))
near = [s for s in par.get("series", []) if s["label"].startswith("points~1:")]
xs = [s["x"][0] for s in near]
check(len(near) >= 2 and len(set(xs)) == len(xs) and max(max(s["x"]) for s in near) < par["xlim"][1],
      "points at footprint ~1: one marker group per family at distinct x %s inside xlim %s" % (xs, par.get("xlim")))
fronts = {s["label"]: s for s in par.get("series", []) if s["kind"] == "line"}
check(all(all(b > a for a, b in zip(f["y"], f["y"][1:])) for f in fronts.values()) and fronts,
      "recall fronts rise with footprint")
for metric, column, label in (("needles", "needle_retention", "needle retention"),
                              ("output_error", "output_error_mean", "output error")):
    mout = os.path.join(args.workdir, "plots_" + metric)
    r = subprocess.run([sys.executable, plot_py, res, "--out", mout, "--metric", metric], capture_output=True, text=True)
    fig = figures(mout).get("pareto.png", {"panels": [{"series": [], "ylabel": ""}]})
    got, want = plotted(fig, "points"), sorted(float(r[column]) for r in results)
    check(r.returncode == 0 and len(got) == len(want) and all(abs(g - w) < 1e-9 for g, w in zip(got, want))
          and label in fig["panels"][0]["ylabel"], "--metric %s plots %s (%d points, y label %r)"
          % (metric, column, len(got), fig["panels"][0]["ylabel"]))
    if metric == "output_error":  # lower is better: each front falls as the footprint grows
        fr = [s for s in fig["panels"][0]["series"] if s["kind"] == "line"]
        check(fr and all(all(b < a for a, b in zip(f["y"], f["y"][1:])) for f in fr),
              "output-error fronts fall with footprint: %s" % [f["y"] for f in fr])
check(plot.pareto([(0.2, 0.5), (0.4, 0.3), (0.5, 0.4), (1.0, 0.0)], higher_better=False) == [(0.2, 0.5), (0.4, 0.3), (1.0, 0.0)],
      "error front by hand (minimised)")
mem = figs.get("memory_time.png", {"title": "", "panels": []})
check(re.search(r"tiny-gqa, prompt 4096 tokens, chunk (128|256)", mem["title"]) and not re.search(r"[0-9a-f]{16}", mem["title"]),
      "memory_time title names model, prompt, chunk, no hash: %r" % mem["title"])
for p in mem["panels"]:
    styles = [(s["color"], s["ls"]) for s in p["series"]]
    check(0 < len(p["legend"]) <= 8 and len(set(styles)) == len(styles),
          "memory_time panel %r: %d series <= 8, distinct colour/style" % (p["title"], len(p["legend"])))
check(sorted(p["title"] for p in mem["panels"]) == ["snapkv", "streaming"], "memory_time: one panel per family")
panels = plot.facets(["full"] + ["snapkv/chunk budget=%d" % i for i in range(17)] + ["h2o/chunk budget=1"])
check([len(m) for _, m in panels] == [2, 8, 8, 4] and all(m[0] == 0 for _, m in panels)
      and sorted({i for _, m in panels for i in m}) == list(range(19)),
      "facets: h2o its own panel, 17 snapkv specs split 7+7+3 beside the full cache: %s" % panels)
r = subprocess.run([sys.executable, plot_py, res, "--metric", "foo"], capture_output=True, text=True)
check(r.returncode == 2 and r.stderr.count("\n") == 1 and "--metric foo" in r.stderr and "needles" in r.stderr,
      "--metric foo: one error line, exit 2 (%r)" % r.stderr)

# A capacity plan on 40 requests of the serving scenario: load vs p99 TTFT/TPOT per deployment.
plan_ini = os.path.join(args.workdir, "plan.ini")
with open(plan_ini, "w") as f:
    f.write(SERVING % os.path.join(root, "tests", "data", "azure_conv_sample.csv"))
plan_dir = os.path.join(args.workdir, "plan")
subprocess.run([args.kvsim, "plan", plan_ini, "--max-requests", "40", "--out", plan_dir, "-q"], check=True,
               stdout=subprocess.DEVNULL)
r = subprocess.run([sys.executable, plot_py, plan_dir], capture_output=True, text=True)
ok, what = png_ok(os.path.join(plan_dir, "plots", "plan_load.png"))
check(r.returncode == 0 and ok, "plot.py on a plan folder: plan_load.png is a PNG of %s (%s)" % (what, r.stderr.strip()))
plan_json = json.load(open(os.path.join(plan_dir, "plan.json")))
pfig = figures(os.path.join(plan_dir, "plots")).get("plan_load.png", {"panels": []})
no_overlaps({"plan_load.png": pfig}, "plan")
for row in plan_json["rows"]:
    tried = sorted(t["rate_per_s"] for t in row["trials"])
    meets = [t["rate_per_s"] for t in row["trials"] if t["meets_slo"]]
    check(len(tried) == row["simulations"] - (0 if row["feasible"] else 1) and (not meets or max(meets) == row["max_rate_per_s"]),
          "%s: %d trials (simulations %d), the largest that meets the SLO is the chosen rate"
          % (row["spec"], len(tried), row["simulations"]))
    check(all(t["ttft_p99_s"] <= 0.5 and t["tpot_p99_s"] <= 0.03 for t in row["trials"] if t["meets_slo"]),
          "%s: trials that meet the SLO are within ttft 0.5 s, tpot 30 ms" % row["spec"])
    for metric, bound in (("ttft", 0.5), ("tpot", 0.03)):
        p = next((p for p in pfig["panels"] if p["ylabel"].startswith(metric.upper())
                  and p["title"].startswith("%s tp %d" % (row["hardware"], row["tp"]))), {"series": []})
        line = next((s for s in p["series"] if s["kind"] == "line" and s["label"] == plot.short_label(row["spec"])), {})
        star = next((s for s in p["series"] if s["label"] == "chosen:" + row["spec"]), {})
        slo_y = [s["y"][0] for s in p["series"] if s["label"].startswith("SLO")]
        check(line.get("x") == tried and slo_y == [bound] and len(p["legend"]) <= 8 + 1,
              "%s %s panel: the line has every tried load, the SLO line at %g s" % (row["spec"], metric, bound))
        check(star.get("x") == [row["max_rate_per_s"]] and star.get("y") == [row[metric + "_p99_s"]],
              "%s %s panel: the star is at the chosen rate %g" % (row["spec"], metric, row["max_rate_per_s"]))
# A plan.json that is not kvsim plan's (a row without its fields): one error line naming it, exit 2.
broken_plan = os.path.join(args.workdir, "broken_plan")
os.makedirs(broken_plan, exist_ok=True)
with open(os.path.join(broken_plan, "plan.json"), "w") as f:
    f.write('{"by": "rate", "rows": [{"spec": "full"}]}')
r = subprocess.run([sys.executable, plot_py, broken_plan], capture_output=True, text=True)
check(r.returncode == 2 and r.stderr.count("\n") == 1 and "plan.json" in r.stderr
      and not os.path.exists(os.path.join(broken_plan, "plots", "report.html")),
      "malformed plan.json: one error line naming it, exit 2, no report (%r)" % r.stderr)
check("plan_load.png" in open(os.path.join(plan_dir, "plots", "report.html")).read(), "the plan report shows plan_load.png")

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
check(bad.returncode == 2 and "--scenario nope" in bad.stderr, "unknown --scenario: clear error (%r)" % bad.stderr)

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
check(not os.path.exists(os.path.join(drawn, "plots", "latency_cdf.png")) and
      "not drawn: each policy has 1 scenario(s) with a latency, fewer than the %d" % plot.MIN_CDF_POINTS in report,
      "one scenario: no latency CDF, and the report says why")
no_overlaps(figures(os.path.join(drawn, "plots")), "three draws")
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
check(r.returncode == 2 and r.stderr.count("\n") == 1 and "no results.csv" in r.stderr,
      "empty folder: one error line, exit 1 (%r)" % r.stderr)
print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
