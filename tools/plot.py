#!/usr/bin/python3
"""Plots for a kvsim sweep folder (kvsim sweep/merge --out DIR) or a kvsim run folder.

  tools/plot.py DIR [--out PLOTDIR]     (default PLOTDIR = DIR/plots)

Writes PNGs and a one-page report.html with the tables:
  pareto.png          footprint vs fidelity (attention recall), Pareto front per policy family
  peak_memory.png     peak KV bytes vs prompt length per policy (sweeps with prompt_tokens swept)
  memory_time.png     resident KV bytes over time for one scenario, post-fill vs chunked eviction
  latency_cdf.png     TTFT and TPOT CDFs (over scenarios, p50 per scenario) when present
"""
import argparse
import csv
import html
import json
import math
import os
import re
import sys

import matplotlib
matplotlib.use("Agg")  # headless: CI and cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402


def fail(msg):
    print("plot.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return math.nan


def read_rows(folder):
    """Rows of results.csv, or of a kvsim run folder's summary.json made to look like them."""
    path = os.path.join(folder, "results.csv")
    if os.path.isfile(path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            fail("%s has a header but no rows" % path)
        return rows
    path = os.path.join(folder, "summary.json")
    if os.path.isfile(path):
        with open(path) as f:
            summary = json.load(f)
        rows = []
        for p in summary.get("policies", []):
            row = {"scenario": "0", "policy": p["spec"],
                   "workload.prompt_tokens": str(summary["scenario"]["workload"]["prompt_tokens"])}
            flatten(p, "", row)
            rows.append(row)
        return rows
    fail("%s holds no results.csv (kvsim sweep/merge) nor summary.json (kvsim run)" % folder)


def flatten(obj, prefix, out):
    for k, v in obj.items():
        key = prefix + k
        if isinstance(v, dict):
            flatten(v, key + "_", out)
        elif not isinstance(v, list):
            out[key] = str(v)


def family(spec):
    """Policy name plus its prefill mode: the unit a Pareto front is drawn for."""
    name = spec.split("(", 1)[0].strip()
    m = re.search(r"prefill=(\w+)", spec)
    return name + ("/" + m.group(1) if m and name != "full" else "")


def pareto(points):
    """Points not dominated when footprint is minimised and fidelity maximised."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def fidelity_key(rows):
    for k in ("attention_recall_mean", "needle_retention"):
        if any(not math.isnan(number(r.get(k))) for r in rows):
            return k
    return None


def plot_pareto(rows, out):
    fk = fidelity_key(rows)
    if fk is None or "footprint_normalized" not in rows[0]:
        return None, []
    groups = {}
    for r in rows:
        x, y = number(r["footprint_normalized"]), number(r[fk])
        if not (math.isnan(x) or math.isnan(y)):
            groups.setdefault(family(r["policy"]), []).append((x, y))
    fig, ax = plt.subplots(figsize=(7, 5))
    table = []
    for name in sorted(groups):
        pts = groups[name]
        front = pareto(pts)
        line, = ax.plot([p[0] for p in front], [p[1] for p in front], "-o", ms=4, label=name)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.3, color=line.get_color())
        table.append([name, len(pts), len(front), "%.3f" % min(p[0] for p in pts),
                      "%.4f" % (sum(p[1] for p in pts) / len(pts))])
    ax.set_xlabel("footprint (normalised KV entry-steps, full = 1)")
    ax.set_ylabel(fk.replace("_", " "))
    ax.set_title("Footprint vs fidelity: Pareto front per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out, "pareto.png"), [["policy", "points", "on front", "min footprint",
                                          "mean " + fk]] + table


def plot_peak(rows, out):
    pk = next((k for k in rows[0] if k.endswith("prompt_tokens")), None)
    if pk is None or "peak_bytes" not in rows[0]:
        return None, []
    series = {}
    for r in rows:
        x, y = number(r[pk]), number(r["peak_bytes"])
        if not (math.isnan(x) or math.isnan(y)):
            series.setdefault(family(r["policy"]), {}).setdefault(x, []).append(y)
    fig, ax = plt.subplots(figsize=(7, 5))
    table = [["policy", "prompt tokens", "peak KV GiB (max over rows)"]]
    for name in sorted(series):
        xs = sorted(series[name])
        ys = [max(series[name][x]) / 2**30 for x in xs]
        ax.plot(xs, ys, "-o", ms=4, label=name)
        table += [[name, "%d" % x, "%.3f" % y] for x, y in zip(xs, ys)]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("peak KV cache (GiB)")
    ax.set_title("Peak memory vs context length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out, "peak_memory.png"), table


def pick_run_folder(folder):
    """The scenario to draw over time: the largest-prompt one in a sweep, or the run folder itself."""
    if os.path.isfile(os.path.join(folder, "timeline.csv")):
        return folder
    scen = os.path.join(folder, "scenarios")
    if not os.path.isdir(scen):
        return None
    best, best_tokens = None, -1
    for d in sorted(os.listdir(scen)):
        p = os.path.join(scen, d)
        try:
            with open(os.path.join(p, "summary.json")) as f:
                tokens = json.load(f)["scenario"]["workload"]["prompt_tokens"]
        except (OSError, KeyError, ValueError):
            continue
        if os.path.isfile(os.path.join(p, "timeline.csv")) and tokens > best_tokens:
            best, best_tokens = p, tokens
    return best


def plot_memory_time(folder, out):
    run = pick_run_folder(folder)
    if run is None:
        return None, []
    with open(os.path.join(run, "summary.json")) as f:
        specs = [p["spec"] for p in json.load(f)["policies"]]
    series = {}
    with open(os.path.join(run, "timeline.csv"), newline="") as f:
        for r in csv.DictReader(f):
            i = int(r["policy"])
            t0, dt = number(r["time_s"]), number(r["duration_s"])
            b = number(r["hbm_kv_bytes"]) / 2**30
            s = series.setdefault(i, ([], []))
            s[0].extend([t0, t0 + dt])  # a step function: the level holds over each pass
            s[1].extend([b, b])
    fig, ax = plt.subplots(figsize=(7, 5))
    table = [["policy", "peak resident GiB", "end time s"]]
    for i in sorted(series):
        name = family(specs[i]) if i < len(specs) else str(i)
        budget = re.search(r"budget=([\d.]+)", specs[i]) if i < len(specs) else None
        label = name + (" b=" + budget.group(1) if budget else "")
        ax.plot(series[i][0], series[i][1], label=label,
                ls="--" if "post_fill" in label else "-")
        table.append([html.escape(specs[i] if i < len(specs) else str(i)),
                      "%.3f" % max(series[i][1]), "%.3f" % series[i][0][-1]])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("resident KV in HBM (GiB)")
    ax.set_title("Memory over time: " + os.path.basename(run.rstrip("/")))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out, "memory_time.png"), table


def plot_latency(rows, out):
    keys = [k for k in ("ttft_s_p50", "tpot_s_p50") if k in rows[0]]
    if not keys or all(math.isnan(number(r[k])) for r in rows for k in keys):
        return None, []
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    table = [["policy", "metric", "median over scenarios (s)"]]
    for ax, k in zip(axes[0], keys):
        groups = {}
        for r in rows:
            v = number(r[k])
            if not math.isnan(v):
                groups.setdefault(family(r["policy"]), []).append(v)
        for name in sorted(groups):
            v = sorted(groups[name])
            ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=name)
            table.append([name, k, "%.4g" % v[len(v) // 2]])
        ax.set_xlabel(k + " (s)")
        ax.set_ylabel("fraction of scenarios")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Latency CDFs")
    return save(fig, out, "latency_cdf.png"), table


def save(fig, out, name):
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def html_table(rows):
    if not rows:
        return ""
    head = "".join("<th>%s</th>" % html.escape(str(c)) for c in rows[0])
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % c for c in r) for r in rows[1:])
    return "<table><tr>%s</tr>%s</table>" % (head, body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dir", help="kvsim sweep/merge output folder, or a kvsim run folder")
    ap.add_argument("--out", help="folder for PNGs and report.html (default DIR/plots)")
    args = ap.parse_args()
    if not os.path.isdir(args.dir):
        fail("%s is not a folder" % args.dir)
    rows = read_rows(args.dir)
    out = args.out or os.path.join(args.dir, "plots")
    os.makedirs(out, exist_ok=True)
    sections = [("Footprint vs fidelity", plot_pareto(rows, out)),
                ("Peak memory vs context length", plot_peak(rows, out)),
                ("Memory over time", plot_memory_time(args.dir, out)),
                ("TTFT / TPOT CDFs", plot_latency(rows, out))]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>kvsim report</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}</style></head><body>",
             "<h1>kvsim report: %s</h1><p>%d result rows.</p>" % (html.escape(args.dir), len(rows))]
    written = []
    for title, (png, table) in sections:
        if png is None:
            parts.append("<h2>%s</h2><p>not drawn: the results lack the columns it needs.</p>"
                         % html.escape(title))
            continue
        written.append(png)
        parts.append("<h2>%s</h2><img src='%s' alt='%s'>%s" % (html.escape(title), png,
                                                               html.escape(title), html_table(table)))
    parts.append("</body></html>")
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write("\n".join(parts))
    print("plot.py: wrote %s and report.html in %s" % (", ".join(written), out))


if __name__ == "__main__":
    main()
