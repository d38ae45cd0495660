#!/usr/bin/python3
"""Plots for a kvsim sweep folder (kvsim sweep/merge --out DIR) or a kvsim run folder.

  tools/plot.py DIR [--out PLOTDIR]     (default PLOTDIR = DIR/plots)

Writes PNGs and a one-page report.html with the tables:
  pareto.png          footprint vs fidelity (attention recall), Pareto front per policy family; with
                      [workload] seeds (columns <metric>_ci95) each point has 95 % interval error bars
  peak_memory.png     peak KV bytes vs prompt length per policy (sweeps with prompt_tokens swept)
  memory_time.png     resident KV bytes over time for one scenario, post-fill vs chunked eviction
  latency_cdf.png     TTFT and TPOT CDFs over scenarios (each scenario's p50) when a sweep has them
  request_latency.png per-request TTFT and TPOT CDFs of a serving run (its requests.csv), one line per
                      policy, with the scenario's SLO marked; in a sweep folder, of the scenario
                      named by --scenario (default: the first one that served requests)
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
            row = {"scenario": "0", "policy": p["spec"]}
            prompt = summary.get("scenario", {}).get("workload", {}).get("prompt_tokens")
            if prompt is not None:  # a serving run has many prompts, no single length
                row["workload.prompt_tokens"] = str(prompt)
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


def short_label(spec):
    """Family plus the size parameters that tell two specs of one family apart, for legends."""
    sizes = re.findall(r"\b(budget|sinks|window|bits)=([\w.]+)", spec)
    return " ".join([family(spec)] + ["%s=%s" % kv for kv in sizes])


def pareto(points):
    """Points not dominated when footprint is minimised and fidelity maximised."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def ci95(row, key):
    """The half-width of `key`'s 95 % interval over draws ([workload] seeds: column key_ci95), 0
    where the row has none (one draw, or a metric the same in every draw)."""
    v = number(row.get(key + "_ci95"))
    return 0.0 if math.isnan(v) else v


def has_ci95(rows, key):
    return any(ci95(r, key) > 0 for r in rows)


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
            groups.setdefault(family(r["policy"]), []).append((x, y, ci95(r, "footprint_normalized"), ci95(r, fk)))
    bars = has_ci95(rows, fk) or has_ci95(rows, "footprint_normalized")
    fig, ax = plt.subplots(figsize=(7, 5))
    table = []
    for name in sorted(groups):
        pts = groups[name]
        front = pareto([p[:2] for p in pts])
        line, = ax.plot([p[0] for p in front], [p[1] for p in front], "-o", ms=4, label=name)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.3, color=line.get_color())
        if bars:  # the 95 % interval of each point over its draws
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], xerr=[p[2] for p in pts],
                        yerr=[p[3] for p in pts], fmt="none", elinewidth=0.8, alpha=0.5, color=line.get_color())
        row = [name, len(pts), len(front), "%.3f" % min(p[0] for p in pts),
               "%.4f" % (sum(p[1] for p in pts) / len(pts))]
        table.append(row + (["%.4f" % max(p[3] for p in pts)] if bars else []))
    ax.set_xlabel("footprint (normalised KV entry-steps, full = 1)")
    ax.set_ylabel(fk.replace("_", " ") + (" (mean over draws, 95 % interval)" if bars else ""))
    ax.set_title("Footprint vs fidelity: Pareto front per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    head = ["policy", "points", "on front", "min footprint", "mean " + fk]
    return save(fig, out, "pareto.png"), [head + (["widest 95 % interval (+-)"] if bars else [])] + table


def plot_peak(rows, out):
    pk = next((k for k in rows[0] if k.endswith("prompt_tokens")), None)
    if pk is None or "peak_bytes" not in rows[0]:
        return None, []
    series = {}
    for r in rows:
        x, y = number(r[pk]), number(r["peak_bytes"])
        if not (math.isnan(x) or math.isnan(y)):
            series.setdefault(family(r["policy"]), {}).setdefault(x, []).append((y, ci95(r, "peak_bytes")))
    bars = has_ci95(rows, "peak_bytes")  # a peak that depends on the draw (threshold policies)
    fig, ax = plt.subplots(figsize=(7, 5))
    table = [["policy", "prompt tokens", "peak KV GiB (max over rows)"]]
    for name in sorted(series):
        xs = sorted(series[name])
        peaks = [max(series[name][x]) for x in xs]
        ys = [y / 2**30 for y, _ in peaks]
        line, = ax.plot(xs, ys, "-o", ms=4, label=name)
        if bars:
            ax.errorbar(xs, ys, yerr=[e / 2**30 for _, e in peaks], fmt="none", alpha=0.5, color=line.get_color())
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
    first_seed = None
    with open(os.path.join(run, "timeline.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if "time_s" not in (reader.fieldnames or []):  # a replay without [hardware] has no clock
            return None, []
        for r in reader:
            # Several draws ([workload] seeds) have a seed column: draw the first one.
            first_seed = r.get("seed") if first_seed is None else first_seed
            if r.get("seed") != first_seed:
                continue
            i = int(r["policy"])
            t0, b = number(r["time_s"]), number(r["hbm_kv_bytes"]) / 2**30
            s = series.setdefault(i, ([], []))
            if "duration_s" in r:  # a replay: the level holds over each pass
                s[0].extend([t0, t0 + number(r["duration_s"])])
                s[1].extend([b, b])
            else:  # a serving run samples the level at each iteration's end
                s[0].append(t0)
                s[1].append(b)
    fig, ax = plt.subplots(figsize=(7, 5))
    table = [["policy", "peak resident GiB", "end time s"]]
    for i in sorted(series):
        label = short_label(specs[i]) if i < len(specs) else str(i)
        ax.plot(series[i][0], series[i][1], label=label,
                ls="--" if "post_fill" in label else "-")
        table.append([html.escape(specs[i] if i < len(specs) else str(i)),
                      "%.3f" % max(series[i][1]), "%.3f" % series[i][0][-1]])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("resident KV in HBM (GiB)")
    ax.set_title("Memory over time: " + os.path.basename(run.rstrip("/")) +
                 (", seed %s" % first_seed if first_seed is not None else ""))
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


def pick_serving_folder(folder, scenario):
    """The serving run whose requests.csv to draw: the folder itself, or one scenario of a sweep."""
    def serving(d):
        path = os.path.join(d, "requests.csv")
        if not os.path.isfile(path):
            return False
        with open(path, newline="") as f:
            return "ttft_s" in next(csv.reader(f), [])
    if scenario is not None:
        d = os.path.join(folder, "scenarios", scenario)
        if not serving(d):
            fail("--scenario %s: %s holds no serving requests.csv (with a ttft_s column)" % (scenario, d))
        return d
    if serving(folder):
        return folder
    scen = os.path.join(folder, "scenarios")
    if os.path.isdir(scen):
        for d in sorted(os.listdir(scen)):
            if serving(os.path.join(scen, d)):
                return os.path.join(scen, d)
    return None


def percentiles(values, qs):
    """Linear-interpolated percentiles (numpy's default, as kvsim's summary.json computes them)."""
    v = sorted(values)
    out = []
    for q in qs:
        x = (len(v) - 1) * q / 100.0
        lo = int(math.floor(x))
        hi = min(lo + 1, len(v) - 1)
        out.append(v[lo] + (v[hi] - v[lo]) * (x - lo))
    return out


def slo_seconds(text):
    """{'ttft': 2.0, 'tpot': 0.1} from a scenario's slo string such as 'ttft=2s, tpot=100ms'."""
    out = {}
    for key, value, unit in re.findall(r"(\w+?)(?:_p\d+)?\s*=\s*([\d.eE+-]+)\s*(ms|s)?", text or ""):
        out[key] = float(value) * (1e-3 if unit == "ms" else 1.0)
    return out


def plot_request_latency(folder, out, scenario=None):
    run = pick_serving_folder(folder, scenario)
    if run is None:
        return None, []
    specs, per_policy = {}, {}
    with open(os.path.join(run, "requests.csv"), newline="") as f:
        for r in csv.DictReader(f):
            i = int(r["policy"])
            specs[i] = r["spec"]
            d = per_policy.setdefault(i, {"ttft_s": [], "tpot_s": [], "rejected": 0})
            if r["rejected"] == "1":
                d["rejected"] += 1
                continue
            for k in ("ttft_s", "tpot_s"):
                v = number(r[k])
                if not math.isnan(v):  # a one-token answer has no TPOT
                    d[k].append(v)
    slo = {}
    try:
        with open(os.path.join(run, "summary.json")) as f:
            slo = slo_seconds(json.load(f)["scenario"]["serving"].get("slo"))
    except (OSError, KeyError, ValueError):
        pass
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    table = [["policy", "served", "rejected", "TTFT p50 s", "TTFT p90 s", "TTFT p99 s", "TPOT p50 s", "TPOT p99 s"]]
    for i in sorted(per_policy):
        d = per_policy[i]
        for ax, k in zip(axes, ("ttft_s", "tpot_s")):
            v = sorted(d[k])
            if v:
                ax.step(v, [(j + 1) / len(v) for j in range(len(v))], where="post", label=short_label(specs[i]))
        row = [html.escape(specs[i]), len(d["ttft_s"]), d["rejected"]]
        row += ["%.6g" % x for x in percentiles(d["ttft_s"], (50, 90, 99))] if d["ttft_s"] else ["-"] * 3
        row += ["%.6g" % x for x in percentiles(d["tpot_s"], (50, 99))] if d["tpot_s"] else ["-"] * 2
        table.append(row)
    for ax, k in zip(axes, ("ttft_s", "tpot_s")):
        name = k.split("_")[0]
        if name in slo:
            ax.axvline(slo[name], color="k", ls=":", lw=1, label="SLO %s = %g s" % (name.upper(), slo[name]))
        ax.set_xlabel("%s per request (s)" % name.upper())
        ax.set_ylabel("fraction of served requests")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Per-request latency CDFs: " + os.path.basename(run.rstrip("/")))
    return save(fig, out, "request_latency.png"), table


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
    ap.add_argument("--scenario", help="in a sweep folder, the scenario (its folder name under scenarios/) whose "
                    "per-request latencies to draw")
    args = ap.parse_args()
    if not os.path.isdir(args.dir):
        fail("%s is not a folder" % args.dir)
    rows = read_rows(args.dir)
    out = args.out or os.path.join(args.dir, "plots")
    os.makedirs(out, exist_ok=True)
    sections = [("Footprint vs fidelity", plot_pareto(rows, out)),
                ("Peak memory vs context length", plot_peak(rows, out)),
                ("Memory over time", plot_memory_time(args.dir, out)),
                ("TTFT / TPOT CDFs over scenarios", plot_latency(rows, out)),
                ("Per-request TTFT / TPOT CDFs", plot_request_latency(args.dir, out, args.scenario))]
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
