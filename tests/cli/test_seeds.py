#!/usr/bin/env python3
"""[workload] seeds (issue 20 section 3): independent synthetic draws of one scenario.

  * the 95 % interval of a fidelity metric narrows as t(N-1)/sqrt(N) from 5 to 20 draws (within a
    factor 2: five draws estimate the spread to about +-35 %), and the 20-draw mean lies in the
    5-draw interval;
  * the summary's means and half-widths are those of the single-seed runs, recomputed here;
  * footprint and peak of fixed-budget policies are exact (half-width 0); a threshold policy's
    footprint depends on the draw and has an interval;
  * outputs are byte-identical at threads = 1 and 2; seeds = 1 is byte-identical to no key, and
    seeds = 3 to the list 1,2,3;
  * a sweep carries <metric>_ci95 columns in results.csv and results.h5, empty / NaN for a
    scenario of one draw.
Small on purpose (tiny model, 600-token prompt): a few seconds in Release."""
import argparse
import csv
import filecmp
import json
import math
import os
import shutil
import subprocess
import sys

from tiny_model import TINY_MODEL

import checks
from checks import check

# Two-sided 95 % Student-t critical values t(0.975, dof) (R: qt(0.975, dof)).
T975 = {2: 4.302652729749464, 4: 2.7764451051977987, 19: 2.093024054408263}

POLICIES = """[policy]
spec = snapkv(budget=0.2, window=16, prefill=chunk)
spec = streaming(sinks=4, window=64)
spec = dbudget(threshold=0.9)
"""


def scenario(draws, threads=1):
    return f"""[model]
preset = model.ini
[workload]
prompt_tokens = 600
generated_tokens = 16
chunk_tokens = 200
trace = synthetic
{draws}
traced_layers = 0,2
{POLICIES}[sim]
threads = {threads}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    k, w = os.path.abspath(args.kvsim), args.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)

    def run(name, text):
        """kvsim run of `text` as <name>/s.ini (every scenario has the same path, so summaries can
        be compared byte for byte); returns (folder, summary, printed table)."""
        folder = os.path.join(w, name)
        os.makedirs(folder)
        with open(os.path.join(folder, "model.ini"), "w") as f:
            f.write(TINY_MODEL)
        with open(os.path.join(folder, "s.ini"), "w") as f:
            f.write(text)
        r = subprocess.run([k, "run", "s.ini", "--out", "out", "-q"], cwd=folder, capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            print(r.stderr)
            raise SystemExit("kvsim run %s failed" % name)
        out = os.path.join(folder, "out")
        with open(os.path.join(out, "summary.json")) as f:
            return out, json.load(f), r.stdout

    def same_outputs(a, b):
        return all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)
                   for f in ("summary.json", "timeline.csv", "requests.csv"))

    def metric(policy, path):
        value = policy
        for key in path.split("."):
            value = value[key]
        return value

    # 1/sqrt(N): seeds 1..5 against seeds 1..20.
    _, five, _ = run("n5", scenario("seeds = 5"))
    _, twenty, _ = run("n20", scenario("seeds = 20"))
    check(five["scenario"]["workload"]["seeds"] == [1, 2, 3, 4, 5] and "seed" not in five["scenario"]["workload"],
          "summary lists the seeds 1..5 (%s)" % five["scenario"]["workload"])
    check(five["scenario"]["workload"].get("interval") == "student_t_95", "summary names the interval")
    predicted = math.sqrt(5 / 20) * T975[19] / T975[4]  # 0.377
    for p in (1, 2):
        for path, ci in (("attention_recall.mean", "attention_recall.mean_ci95"),
                         ("output_error.mean", "output_error.mean_ci95")):
            spec = five["policies"][p]["spec"]
            h5, h20 = metric(five["policies"][p], ci), metric(twenty["policies"][p], ci)
            m5, m20 = metric(five["policies"][p], path), metric(twenty["policies"][p], path)
            ratio = h20 / h5 if h5 > 0 else math.inf
            print("%s %s: N=5 %.5f +- %.5f, N=20 %.5f +- %.5f, width ratio %.3f (1/sqrt(N) x t: %.3f)"
                  % (spec, path, m5, h5, m20, h20, ratio, predicted))
            check(h5 > 0 and h20 > 0, "%s %s varies between draws" % (spec, path))
            check(predicted / 2 <= ratio <= predicted * 2,
                  "%s %s: the interval narrows as 1/sqrt(N) (ratio %.3f, expected %.3f within a factor 2)"
                  % (spec, path, ratio, predicted))
            check(abs(m20 - m5) <= h5, "%s %s: the 20-draw mean %.5f lies in the 5-draw interval %.5f +- %.5f"
                  % (spec, path, m20, m5, h5))

    # Exact where the draw cannot matter, an interval where it does.
    for p in (0, 1, 2):
        pol = five["policies"][p]
        check(pol["footprint_normalized_ci95"] == 0 and pol["peak_entries_ci95"] == 0,
              "%s: footprint and peak are the same in every draw" % pol["spec"])
    full = five["policies"][0]["attention_recall"]
    check(abs(full["mean"] - 1) < 1e-6 and full["mean_ci95"] < 1e-6, "full: recall 1 up to rounding (%s)" % full)
    dbudget = five["policies"][3]
    check(dbudget["footprint_normalized_ci95"] > 0,
          "dbudget (a threshold, not a budget): its footprint depends on the draw and has an interval (%s)"
          % dbudget["footprint_normalized_ci95"])

    # The summary is the mean and Student-t interval of the single-seed runs.
    singles = [run("seed%d" % s, scenario("seed = %d" % s))[1] for s in (1, 2, 3)]
    out3, three, table3 = run("n3", scenario("seeds = 3"))
    for p in range(4):
        for path in ("attention_recall.mean", "attention_recall.p5", "output_error.mean", "footprint_normalized",
                     "needle_retention"):
            values = [metric(s["policies"][p], path) for s in singles]
            mean = sum(values) / 3
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
            half = T975[2] * sd / math.sqrt(3) if len(set(values)) > 1 else 0.0
            got_mean, got_half = metric(three["policies"][p], path), metric(three["policies"][p], path + "_ci95")
            check(math.isclose(got_mean, mean, rel_tol=1e-12, abs_tol=1e-15) and
                  math.isclose(got_half, half, rel_tol=1e-9, abs_tol=1e-15),
                  "%s %s: %r +- %r = mean and t interval of seeds 1-3 %s (%r +- %r)"
                  % (three["policies"][p]["spec"], path, got_mean, got_half, values, mean, half))
    with open(os.path.join(out3, "timeline.csv")) as f:
        rows = list(csv.DictReader(f))
    check(rows and list(rows[0])[0] == "seed" and sorted({r["seed"] for r in rows}) == ["1", "2", "3"],
          "timeline.csv has a seed column with every draw")
    with open(os.path.join(out3, "requests.csv")) as f:
        rows = list(csv.DictReader(f))
    check(len(rows) == 3 * 4 and [r["seed"] for r in rows[::4]] == ["1", "2", "3"], "requests.csv: a row per draw")
    check("+-" in table3 and "95% Student-t interval over 3 draws (seeds 1..3)" in table3 and
          table3.splitlines()[3].split()[4] == "1.0000",
          "the printed table shows mean +- half-width:\n" + table3)

    # Byte-identical: any thread count; seeds = 1 and no key; a count and its list.
    out3t, _, table3t = run("n3_threads2", scenario("seeds = 3", threads=2))
    check(same_outputs(out3, out3t) and table3 == table3t, "seeds = 3: threads 1 and 2 give identical outputs")
    out1, _, table1 = run("seeds1", scenario("seeds = 1"))
    out0, _, table0 = run("nokey", scenario(""))
    check(same_outputs(out1, out0) and table1 == table0, "seeds = 1 gives the outputs of a scenario without seeds")
    outl, _, tablel = run("list", scenario("seeds = 1, 2, 3"))
    check(same_outputs(out3, outl) and table3 == tablel, "seeds = 1,2,3 gives the outputs of seeds = 3")

    # A sweep over the number of draws: interval columns, empty for the one-draw scenario.
    sweep = os.path.join(w, "sweep")
    os.makedirs(sweep)
    with open(os.path.join(sweep, "model.ini"), "w") as f:
        f.write(TINY_MODEL)
    with open(os.path.join(sweep, "sweep.ini"), "w") as f:
        f.write(scenario("seeds = 1, 3").replace(POLICIES, "[policy]\nspec = snapkv(budget=0.2, window=16, prefill=chunk)\n"))
    r = subprocess.run([k, "sweep", "sweep.ini", "--out", "out", "-q", "-j", "2"], cwd=sweep, capture_output=True,
                       text=True, timeout=300)
    check(r.returncode == 0, "sweep over seeds = 1, 3 (%s)" % r.stderr.strip())
    with open(os.path.join(sweep, "out", "results.csv")) as f:
        table = list(csv.DictReader(f))
    snap = [row for row in table if row["policy"].startswith("snapkv")]
    check(len(snap) == 2 and "attention_recall_mean_ci95" in table[0] and "footprint_normalized_ci95" in table[0],
          "results.csv carries <metric>_ci95 columns")
    if len(snap) == 2:
        check(snap[0]["workload.seeds"] == "1" and snap[0]["attention_recall_mean_ci95"] == "",
              "one draw: the interval cells are empty (absent, not 0)")
        check(snap[1]["workload.seeds"] == "3" and float(snap[1]["attention_recall_mean_ci95"]) > 0,
              "three draws: a positive half-width")
        try:
            import h5py
            with h5py.File(os.path.join(sweep, "out", "results.h5"), "r") as h5:
                column = list(h5["attention_recall_mean_ci95"][:])
            cells = [row["attention_recall_mean_ci95"] for row in table]
            check(all((c == "" and math.isnan(v)) or (c != "" and float(c) == v) for c, v in zip(cells, column)),
                  "results.h5 has the column too (NaN where absent)")
        except ImportError:
            print("h5py not installed: results.h5 not checked")
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
