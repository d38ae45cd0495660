#!/usr/bin/python3
"""Plots for a kvsim sweep folder (kvsim sweep/merge --out DIR), a kvsim run folder or a kvsim plan folder.

  tools/plot.py DIR [--out PLOTDIR] [--metric recall|needles|output_error]   (default PLOTDIR = DIR/plots)

Writes PNGs, a one-page report.html (each figure with a line on how to read it, and its table) and
figures.json (what each figure shows, read back from the drawn figure: series and their points,
titles, legend and axes boxes, overlapping tick labels; the tests read it):
  pareto.png          footprint vs fidelity (--metric: attention recall, needle retention or output
                      error), Pareto front per policy family; points at footprint ~1 drawn as hollow
                      diamonds spread sideways so they do not hide each other; legend outside the axes;
                      with [workload] seeds (columns <metric>_ci95) each point has 95 % error bars
  peak_memory.png     peak KV bytes vs prompt length per policy (sweeps with prompt_tokens swept)
  memory_time.png     resident KV bytes over time for one scenario, one panel per policy family (at
                      most 8 series each, the full cache as reference), post-fill dashed, chunked solid
  latency_cdf.png     TTFT and TPOT CDFs over scenarios (each scenario's p50), for the policies with
                      at least MIN_CDF_POINTS scenarios; not drawn (the report says why) when none has
  request_latency.png per-request TTFT and TPOT CDFs of a serving run (its requests.csv), one line per
                      policy, with the scenario's SLO marked; in a sweep folder, of the scenario
                      named by --scenario (default: the first one that served requests)
  plan_load.png       in a kvsim plan folder (plan.json): p99 TTFT and TPOT vs the loads the search
                      tried, one row of panels per deployment, one line per policy, the SLO as a
                      dashed line and the chosen load as a star
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
from matplotlib import ticker  # noqa: E402

# Colours a reader tells apart (matplotlib's tab10), each series also its own line style, so that
# curves that coincide (policies with the same latency) still show one another.
COLOURS = plt.get_cmap("tab10").colors
STYLES = ["-", "--", "-.", ":"]


def look(n):
    """Colour and line style of the n-th series of a panel: distinct pairs for n < 20."""
    return COLOURS[n % len(COLOURS)], STYLES[n % len(STYLES)]


def fail(msg, code=2):
    """Bad input: one error line, exit 2 (the project's contract for every tool)."""
    print("plot.py: error: " + msg, file=sys.stderr)
    sys.exit(code)


def write_atomically(path, write):
    """Calls write(temporary path), then renames it over `path`: a reader never sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    write_atomically(path, write)


# --metric: the results.csv column it plots, its axis label, and whether higher is better.
METRICS = {"recall": ("attention_recall_mean", "attention recall (mean)", True),
           "needles": ("needle_retention", "needle retention", True),
           "output_error": ("output_error_mean", "output error (mean, lower is better)", False)}
MAX_SERIES = 8  # lines per panel a reader can tell apart (tab10 colours x two line styles)
MIN_CDF_POINTS = 5  # a CDF of fewer scenarios is a handful of steps, not a distribution
NEAR_FULL = 0.98  # footprints at least this close to the full cache's 1 pile up at the right edge


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


def pareto(points, higher_better=True):
    """Points not dominated when footprint is minimised and fidelity maximised (or, for an error,
    minimised)."""
    sign = 1 if higher_better else -1
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if sign * y > best:
            front.append((x, y))
            best = sign * y
    return front


def ci95(row, key):
    """The half-width of `key`'s 95 % interval over draws ([workload] seeds: column key_ci95), 0
    where the row has none (one draw, or a metric the same in every draw)."""
    v = number(row.get(key + "_ci95"))
    return 0.0 if math.isnan(v) else v


def has_ci95(rows, key):
    return any(ci95(r, key) > 0 for r in rows)


def has_column(rows, key):
    return any(not math.isnan(number(r.get(key))) for r in rows)


def pick_metric(rows, metric):
    """--metric's (column, label, higher_better); by default recall, else needle retention."""
    if metric is not None:
        return METRICS[metric]
    return next((METRICS[m] for m in ("recall", "needles") if has_column(rows, METRICS[m][0])), METRICS["recall"])


def spread_near_full(groups):
    """Sideways offsets for the points at footprint ~1, one per family, so that the full cache and
    policies that keep (almost) everything do not all sit on one pixel at the right edge."""
    near = [name for name in sorted(groups) if any(p[0] >= NEAR_FULL for p in groups[name])]
    step = 0.012
    return {name: (i - (len(near) - 1) / 2) * step for i, name in enumerate(near)}


def plot_pareto(rows, out, metric=None):
    fk, ylabel, higher = pick_metric(rows, metric)
    if "footprint_normalized" not in rows[0] or not has_column(rows, fk):
        return None, "the results have no %s column (footprint_normalized and %s are needed)" % (fk, fk)
    groups = {}
    for r in rows:
        x, y = number(r["footprint_normalized"]), number(r[fk])
        if not (math.isnan(x) or math.isnan(y)):
            groups.setdefault(family(r["policy"]), []).append((x, y, ci95(r, "footprint_normalized"), ci95(r, fk)))
    bars = has_ci95(rows, fk) or has_ci95(rows, "footprint_normalized")
    offset = spread_near_full(groups)
    fig, ax = plt.subplots(figsize=(9, 5))
    table = []
    for k, name in enumerate(sorted(groups)):
        pts = groups[name]
        front = pareto([p[:2] for p in pts], higher)
        colour, ls = look(k)
        line, = ax.plot([p[0] for p in front], [p[1] for p in front], ls=ls, marker="o", ms=4, label=name,
                        color=colour)
        far = [p for p in pts if p[0] < NEAR_FULL]
        near = [p for p in pts if p[0] >= NEAR_FULL]
        ax.scatter([p[0] for p in far], [p[1] for p in far], s=8, alpha=0.3, color=line.get_color(),
                   gid="points:" + name)
        if near:  # hollow, large, shifted per family: still visible where several coincide
            ax.scatter([p[0] + offset[name] for p in near], [p[1] for p in near], s=60, marker="D",
                       facecolors="none", edgecolors=line.get_color(), linewidths=1.2, zorder=3,
                       gid="points~1:" + name)
        if bars:  # the 95 % interval of each point over its draws
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], xerr=[p[2] for p in pts],
                        yerr=[p[3] for p in pts], fmt="none", elinewidth=0.8, alpha=0.5, color=line.get_color())
        row = [name, len(pts), len(front), "%.3f" % min(p[0] for p in pts),
               "%.4f" % (sum(p[1] for p in pts) / len(pts))]
        table.append(row + (["%.4f" % max(p[3] for p in pts)] if bars else []))
    xmax = max(p[0] + offset.get(name, 0) for name in groups for p in groups[name])
    ax.set_xlim(right=max(xmax, 1.0) + 0.04)  # room for the hollow markers at the edge
    ax.set_xlabel("footprint (normalised KV entry-steps, full = 1)")
    ax.set_ylabel(ylabel + (" (mean over draws, 95 % interval)" if bars else ""))
    ax.set_title("Footprint vs %s: Pareto front per policy" % ylabel.split(" (")[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    head = ["policy", "points", "on front", "min footprint", "mean " + fk]
    return save(fig, out, "pareto.png"), [head + (["widest 95 % interval (+-)"] if bars else [])] + table


def plot_peak(rows, out):
    pk = next((k for k in rows[0] if k.endswith("prompt_tokens")), None)
    if pk is None or "peak_bytes" not in rows[0]:
        return None, "the results have no prompt_tokens or peak_bytes column"
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


def scenario_title(summary):
    """'tiny-gqa, prompt 4096 tokens, chunk 256' from a run's summary.json (a sweep names its
    scenario folders by hash, which tells a reader nothing)."""
    scen = summary.get("scenario", {})
    work = scen.get("workload", {})
    parts = [scen.get("model", {}).get("name", "?")]
    if "prompt_tokens" in work:
        parts.append("prompt %s tokens" % work["prompt_tokens"])
    elif "arrivals" in work:  # a serving run: its requests, not one prompt
        parts.append("serving %s requests (%s)" % (work.get("requests", "?"), os.path.basename(str(work["arrivals"]))))
    if "chunk_tokens" in work:
        parts.append("chunk %s" % (work["chunk_tokens"] or "none"))
    return ", ".join(parts)


def facets(labels):
    """Panels of at most MAX_SERIES series: one per policy name (prefill modes side by side, the
    full cache repeated in each as the reference), a name with more specs split over several."""
    full = [i for i, l in enumerate(labels) if l.split()[0] == "full"]
    by_name = {}
    for i, l in enumerate(labels):
        if i not in full:
            by_name.setdefault(l.split("/")[0].split()[0], []).append(i)
    if not by_name:
        return [("full cache", full)]
    panels = []
    room = MAX_SERIES - len(full[:1])
    for name in sorted(by_name):
        idx = by_name[name]
        for k in range(0, len(idx), room):
            part = "" if len(idx) <= room else " (%d/%d)" % (k // room + 1, -(-len(idx) // room))
            panels.append((name + part, full[:1] + idx[k:k + room]))
    return panels


def plot_memory_time(folder, out):
    run = pick_run_folder(folder)
    if run is None:
        return None, "no run folder with a timeline.csv (a sweep's scenarios/*/ or a kvsim run folder)"
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    specs = [p["spec"] for p in summary["policies"]]
    series = {}
    first_seed = None
    with open(os.path.join(run, "timeline.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if "time_s" not in (reader.fieldnames or []):  # a replay without [hardware] has no clock
            return None, "the timeline has no time_s column (a replay without [hardware] has no clock)"
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
    order = sorted(series)
    labels = [short_label(specs[i]) if i < len(specs) else str(i) for i in order]
    panels = facets(labels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.6 + 2.8 * len(panels)), squeeze=False, sharex=True)
    for ax, (name, members) in zip(axes[:, 0], panels):
        for k, j in enumerate(members):
            label = labels[j]
            if label.split()[0] == "full":
                kw = dict(color="k", ls=":", lw=1.5)
            else:
                kw = dict(color=COLOURS[k % len(COLOURS)], ls="--" if "post_fill" in label else "-", lw=1.2)
            ax.plot(series[order[j]][0], series[order[j]][1], label=label, **kw)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("resident KV (GiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("Memory over time: " + scenario_title(summary) +
                 (", seed %s" % first_seed if first_seed is not None else ""))
    table = [["policy", "peak resident GiB", "end time s"]]
    for i in order:
        table.append([html.escape(specs[i] if i < len(specs) else str(i)),
                      "%.3f" % max(series[i][1]), "%.3f" % series[i][0][-1]])
    return save(fig, out, "memory_time.png"), table


def log_or_linear(ax, values, axis="x", seconds=False):
    """A log scale where the values span more than a decade, else linear; major labels only, a few
    of them, so that tick labels never run into each other (minor log labels did). `seconds`:
    labels in engineering units (974 µs, 8 ms, 1.2 s) rather than 0.0009736."""
    v = [x for x in values if x > 0 and not math.isnan(x)]
    target = ax.xaxis if axis == "x" else ax.yaxis
    if v and max(v) / min(v) > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        # Under three decades, 1-2-5 steps (else only one or two powers of ten are labelled).
        subs = (1.0, 2.0, 5.0) if max(v) / min(v) < 1000 else (1.0,)
        target.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=8))
        target.set_minor_formatter(ticker.NullFormatter())
        if not seconds:
            target.set_major_formatter(ticker.FuncFormatter(lambda x, _: "%g" % x))
    else:
        target.set_major_locator(ticker.MaxNLocator(nbins=5))
    if seconds:
        target.set_major_formatter(ticker.EngFormatter(unit="s"))


def plot_latency(rows, out):
    keys = [k for k in ("ttft_s_p50", "tpot_s_p50") if k in rows[0]]
    if not keys or all(math.isnan(number(r[k])) for r in rows for k in keys):
        return None, "the results have no ttft_s_p50 / tpot_s_p50 columns (no [hardware])"
    groups = {}
    for k in keys:
        for r in rows:
            v = number(r[k])
            if not math.isnan(v):
                groups.setdefault(k, {}).setdefault(family(r["policy"]), []).append(v)
    most = max(len(v) for g in groups.values() for v in g.values())
    if most < MIN_CDF_POINTS:
        return None, ("each policy has %d scenario(s) with a latency, fewer than the %d a CDF needs to say "
                      "more than the table" % (most, MIN_CDF_POINTS))
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    table = [["policy", "metric", "scenarios", "median over scenarios (s)"]]
    for ax, k in zip(axes[0], keys):
        drawn = []
        for n, name in enumerate(sorted(groups.get(k, {}))):
            v = sorted(groups[k][name])
            table.append([name, k, len(v), "%.4g" % v[len(v) // 2]])
            if len(v) < MIN_CDF_POINTS:
                continue  # in the table only
            ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=name,
                    color=look(n)[0], ls=look(n)[1])
            drawn += v
        ax.set_xlabel(k.replace("_s_p50", " p50").upper() + " of each scenario")
        ax.set_ylabel("fraction of scenarios")
        log_or_linear(ax, drawn, seconds=True)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle("Latency CDFs over scenarios (policies with at least %d)" % MIN_CDF_POINTS)
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
        return None, "no serving run (a requests.csv with a ttft_s column)"
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
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    table = [["policy", "served", "rejected", "TTFT p50 s", "TTFT p90 s", "TTFT p99 s", "TPOT p50 s", "TPOT p99 s"]]
    for i in sorted(per_policy):
        d = per_policy[i]
        for ax, k in zip(axes, ("ttft_s", "tpot_s")):
            v = sorted(d[k])
            if v:
                n = sorted(per_policy).index(i)
                ax.step(v, [(j + 1) / len(v) for j in range(len(v))], where="post", label=short_label(specs[i]),
                        color=look(n)[0], ls=look(n)[1])
        row = [html.escape(specs[i]), len(d["ttft_s"]), d["rejected"]]
        row += ["%.6g" % x for x in percentiles(d["ttft_s"], (50, 90, 99))] if d["ttft_s"] else ["-"] * 3
        row += ["%.6g" % x for x in percentiles(d["tpot_s"], (50, 99))] if d["tpot_s"] else ["-"] * 2
        table.append(row)
    for ax, k in zip(axes, ("ttft_s", "tpot_s")):
        name = k.split("_")[0]
        if name in slo:
            ax.axvline(slo[name], color="k", ls=":", lw=1, label="SLO %s = %g s" % (name.upper(), slo[name]))
        ax.set_xlabel("%s per request" % name.upper())
        ax.set_ylabel("fraction of served requests")
        log_or_linear(ax, [x for d in per_policy.values() for x in d[k]] + [slo.get(name, math.nan)], seconds=True)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    slo_lines = [ln for ln in axes[0].get_lines() if ln.get_label().startswith("SLO")]
    if slo_lines:  # the TTFT panel's legend: its SLO only (the policies are named once, at the right)
        axes[0].legend(handles=slo_lines, fontsize=7, loc="lower right")
    title = os.path.basename(run.rstrip("/"))
    try:
        with open(os.path.join(run, "summary.json")) as f:
            title = scenario_title(json.load(f))
    except (OSError, ValueError):
        pass
    fig.suptitle("Per-request latency CDFs: " + title)
    return save(fig, out, "request_latency.png"), table


PLAN_LOAD = {"rate": ("rate_per_s", "max_rate_per_s", "arrival rate (requests/s)"),
             "concurrency": ("concurrency", "max_concurrency", "concurrent clients")}


def plot_plan(folder, out):
    """p99 TTFT and TPOT against every load the search tried, per deployment and policy."""
    with open(os.path.join(folder, "plan.json")) as f:
        plan = json.load(f)
    load_key, max_key, xlabel = PLAN_LOAD[plan.get("by", "rate")]
    slo = slo_seconds(plan.get("slo"))
    deployments = {}
    for r in plan["rows"]:
        name = "%s tp %s, batch %s tokens, chunk %s" % (r["hardware"], r["tp"], r["max_batch_tokens"],
                                                        r["chunk_tokens"] or "none")
        deployments.setdefault(name, []).append(r)
    panels = []  # (deployment, rows): at most MAX_SERIES policies a panel
    for name, rs in deployments.items():
        for k in range(0, len(rs), MAX_SERIES):
            panels.append((name + ("" if len(rs) <= MAX_SERIES else " (%d)" % (k // MAX_SERIES + 1)),
                           rs[k:k + MAX_SERIES]))
    if not panels or not any(r.get("trials") for r in plan["rows"]):
        return None, "plan.json has no trials (written by kvsim plan since issue 21)"
    fig, axes = plt.subplots(len(panels), 2, figsize=(13, 0.8 + 3.2 * len(panels)), squeeze=False)
    table = [["policy", "deployment", "chosen " + max_key, "TTFT p99 s", "TPOT p99 s", "loads tried", "limit"]]
    for (name, rs), pair in zip(panels, axes):
        for metric, ax in zip(("ttft", "tpot"), pair):
            xs_all, ys_all = [], []
            for n, r in enumerate(rs):
                colour, ls = look(n)
                trials = sorted((t for t in r.get("trials", []) if metric + "_p99_s" in t), key=lambda t: t[load_key])
                xs = [t[load_key] for t in trials]
                ys = [t[metric + "_p99_s"] for t in trials]
                ax.plot(xs, ys, ls=ls, color=colour, lw=1, label=short_label(r["spec"]))
                ok = [t for t in trials if t["meets_slo"]]
                ax.scatter([t[load_key] for t in ok], [t[metric + "_p99_s"] for t in ok], s=14, color=colour,
                           gid="meets:" + r["spec"])
                miss = [t for t in trials if not t["meets_slo"]]
                ax.scatter([t[load_key] for t in miss], [t[metric + "_p99_s"] for t in miss], s=20, marker="x",
                           color=colour, gid="misses:" + r["spec"])
                if r["feasible"] and metric + "_p99_s" in r:
                    ax.scatter([r[max_key]], [r[metric + "_p99_s"]], s=140, marker="*", color=colour,
                               edgecolors="k", linewidths=0.6, zorder=4, gid="chosen:" + r["spec"])
                xs_all += xs
                ys_all += ys
            if metric in slo:
                ax.axhline(slo[metric], color="k", ls="--", lw=1,
                           label="SLO %s p99 = %g s" % (metric.upper(), slo[metric]))
                ys_all.append(slo[metric])
            log_or_linear(ax, xs_all, "x")
            log_or_linear(ax, ys_all, "y", seconds=True)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("%s p99" % metric.upper())
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        pair[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        slo_lines = [ln for ln in pair[0].get_lines() if ln.get_label().startswith("SLO")]
        if slo_lines:
            pair[0].legend(handles=slo_lines, fontsize=7, loc="upper left")
        for r in rs:
            table.append([html.escape(r["spec"]), html.escape(name), "%.4g" % r[max_key] if r["feasible"] else "-",
                          "%.4g" % r["ttft_p99_s"], "%.4g" % r["tpot_p99_s"] if "tpot_p99_s" in r else "-",
                          len(r.get("trials", [])), html.escape(r.get("limit", ""))])
    fig.suptitle("Load vs p99 latency: %s (SLO %s)" % (os.path.basename(str(plan.get("scenario", folder))),
                                                       plan.get("slo", "?")))
    return save(fig, out, "plan_load.png"), table


FIGURES = {}  # name -> what describe() read back from it; main writes it to figures.json


def overlaps(labels):
    """Pairs of tick labels on one axis whose drawn boxes intersect (a reader cannot read them)."""
    boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
    return sum(1 for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j]))


def describe(fig):
    """The drawn figure as data: what a reader sees, for figures.json and the tests."""
    fig.canvas.draw()
    to_fig = fig.transFigure.inverted()

    def box(artist):
        b = artist.get_window_extent().transformed(to_fig)
        return [round(v, 4) for v in (b.x0, b.y0, b.x1, b.y1)]
    panels = []
    for ax in fig.axes:
        series = []
        for ln in ax.get_lines():
            series.append({"kind": "line", "label": ln.get_label(), "x": [float(v) for v in ln.get_xdata()],
                           "y": [float(v) for v in ln.get_ydata()], "color": matplotlib.colors.to_hex(ln.get_color()),
                           "ls": ln.get_linestyle()})
        for c in ax.collections:
            if c.get_gid():  # the scatters this script names (error bars are collections too)
                xy = c.get_offsets()
                series.append({"kind": "points", "label": c.get_gid(), "x": [float(p[0]) for p in xy],
                               "y": [float(p[1]) for p in xy]})
        legend = ax.get_legend()
        ticks = [t for t in ax.get_xticklabels() + ax.get_yticklabels()]
        panels.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                       "xlim": [float(v) for v in ax.get_xlim()], "axes_box": box(ax), "series": series,
                       "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                       "legend_box": box(legend) if legend else None,
                       "overlapping_tick_labels": overlaps(ax.get_xticklabels()) + overlaps(ax.get_yticklabels()),
                       "tick_labels": len([t for t in ticks if t.get_text()])})
    suptitle = getattr(fig, "_suptitle", None)  # Figure.get_suptitle() is matplotlib 3.8+, Debian 12 has 3.6
    return {"title": suptitle.get_text() if suptitle else "", "panels": panels}


def save(fig, out, name):
    fig.tight_layout()
    FIGURES[name] = describe(fig)
    write_atomically(os.path.join(out, name), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return name


def html_table(rows):
    if not rows:
        return ""
    head = "".join("<th>%s</th>" % html.escape(str(c)) for c in rows[0])
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % c for c in r) for r in rows[1:])
    return "<table><tr>%s</tr>%s</table>" % (head, body)


# One line under each figure on how to read it.
READING = {
    "pareto.png": "Up and left is better (for output error: down and left): each line is a policy's Pareto front, "
                  "the results no other result of that policy beats on both footprint and fidelity; faint dots are "
                  "all its results; hollow diamonds are results at footprint ~1, spread sideways so none "
                  "hides another.",
    "peak_memory.png": "Lower is better: the largest peak KV of each policy at each prompt length; a policy that "
                       "bounds its cache flattens out while the full cache grows linearly.",
    "memory_time.png": "One panel per policy family, the full cache dotted black as the reference; dashed lines evict "
                       "after prefill (post_fill), solid ones after every chunk: the gap between them is the memory "
                       "chunked eviction saves.",
    "latency_cdf.png": "Further left is faster: each step is one scenario's median latency; a curve that reaches 1 "
                       "sooner has fewer slow scenarios.",
    "request_latency.png": "Each curve is one policy's per-request latency distribution; where it crosses the dotted "
                           "SLO line is the share of requests that meet the SLO.",
    "plan_load.png": "Each line is one policy's p99 latency at the loads the search tried (dots meet the SLO, crosses "
                     "miss it); the dashed line is the SLO and the star the highest load chosen under it.",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dir", help="kvsim sweep/merge output folder, a kvsim run folder or a kvsim plan folder")
    ap.add_argument("--out", help="folder for PNGs and report.html (default DIR/plots)")
    ap.add_argument("--scenario", help="in a sweep folder, the scenario (its folder name under scenarios/) whose "
                    "per-request latencies to draw")
    ap.add_argument("--metric", help="the fidelity axis of pareto.png: %s (default: recall, else needles)"
                    % "|".join(METRICS))
    args = ap.parse_args()
    if args.metric is not None and args.metric not in METRICS:
        fail("--metric %s: expected one of %s" % (args.metric, ", ".join(METRICS)), 2)
    if not os.path.isdir(args.dir):
        fail("%s is not a folder" % args.dir)
    out = args.out or os.path.join(args.dir, "plots")
    if os.path.isfile(os.path.join(args.dir, "plan.json")):
        os.makedirs(out, exist_ok=True)
        try:
            sections = [("Load vs p99 latency per deployment", plot_plan(args.dir, out))]
        except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            fail("%s: not a plan.json of kvsim plan (%s: %s)" % (os.path.join(args.dir, "plan.json"),
                                                                type(e).__name__, e))
        intro = "a capacity plan (kvsim plan)"
    else:
        rows = read_rows(args.dir)
        os.makedirs(out, exist_ok=True)
        sections = [("Footprint vs fidelity", plot_pareto(rows, out, args.metric)),
                    ("Peak memory vs context length", plot_peak(rows, out)),
                    ("Memory over time", plot_memory_time(args.dir, out)),
                    ("TTFT / TPOT CDFs over scenarios", plot_latency(rows, out)),
                    ("Per-request TTFT / TPOT CDFs", plot_request_latency(args.dir, out, args.scenario))]
        intro = "%d result rows" % len(rows)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>kvsim report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}p.read{color:#444;font-style:italic}</style></head><body>",
             "<h1>kvsim report: %s</h1><p>%s.</p>" % (html.escape(args.dir), html.escape(intro))]
    written = []
    for title, (png, table) in sections:
        if png is None:
            parts.append("<h2>%s</h2><p class='skipped'>not drawn: %s.</p>" % (html.escape(title), html.escape(table)))
            continue
        written.append(png)
        parts.append("<h2>%s</h2><p class='read'>%s</p><img src='%s' alt='%s'>%s" % (
            html.escape(title), html.escape(READING[png]), png, html.escape(title), html_table(table)))
    parts.append("</body></html>")
    write_text(os.path.join(out, "report.html"), "\n".join(parts))
    write_text(os.path.join(out, "figures.json"), json.dumps(FIGURES, indent=1))
    print("plot.py: wrote %s, report.html and figures.json in %s" % (", ".join(written), out))


if __name__ == "__main__":
    main()
