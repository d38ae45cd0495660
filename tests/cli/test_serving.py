#!/usr/bin/env python3
"""End-to-end checks of serving runs (issue 6): `kvsim run` on scenarios with [workload] arrivals
and `kvsim plan`.

  * determinism: threads 1 and 2 give byte-identical summary.json, requests.csv, timeline.csv;
  * the summary agrees with requests.csv recomputed independently here (numpy percentiles,
    throughput over the makespan, goodput under the SLO), and per-request times are coherent;
  * prefix sharing on a workload in the Mooncake form: hits counted, prompt tokens computed =
    prompt tokens minus hits when nothing is preempted;
  * `kvsim plan` writes plan.json with one row per policy and hardware;
  * serving keys without arrivals, or contradictory ones, are refused with one line (exit 2).
"""
import argparse
import csv
import filecmp
import json
import os
import shutil
import subprocess
import sys

import numpy as np

import checks
from checks import check


def run(kvsim, *argv):
    return subprocess.run([kvsim, *argv], capture_output=True, text=True, timeout=600)


SCENARIO = """[model]
preset = llama-3.1-8b
[workload]
arrivals = {arrivals}
chunk_tokens = 1024
seed = 3
{workload_extra}
[policy]
spec = snapkv(budget=0.2, prefill=chunk)
spec = streaming(sinks=4, window=512)
[hardware]
preset = h100-sxm
{hardware_extra}
[serving]
max_batch_tokens = 1024
slo = ttft=0.5s, tpot=30ms
profile_decode_tokens = 64
{serving_extra}
[sim]
threads = {threads}
"""

SYNTHETIC = ("gamma(rate=12, cv=2, requests=300, prompt_mean=3000, prompt_cv=0.8, prompt_max=12000, "
             "output_mean=150, output_cv=1, output_max=800)")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def scenario(workdir, name, arrivals, threads=2, workload_extra="", serving_extra="", hardware_extra=""):
    path = os.path.join(workdir, name)
    write(path, SCENARIO.format(arrivals=arrivals, threads=threads, workload_extra=workload_extra,
                                serving_extra=serving_extra, hardware_extra=hardware_extra))
    return path


def read_requests(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_determinism_and_summary(kvsim, workdir):
    outs = []
    ini = scenario(workdir, "serve.ini", SYNTHETIC)
    for threads in (1, 2):
        out = os.path.join(workdir, f"out_t{threads}")
        # --no-cache: the second run must measure its profiles again, at its own thread count.
        r = run(kvsim, "run", ini, "--out", out, "--quiet", "--no-cache", "--threads", str(threads))
        check(r.returncode == 0, f"serving run (threads {threads}) exit {r.returncode}: {r.stderr.strip()}")
        outs.append(out)
    for name in ("summary.json", "requests.csv", "timeline.csv"):
        check(filecmp.cmp(os.path.join(outs[0], name), os.path.join(outs[1], name), shallow=False),
              f"{name} differs between threads 1 and 2")

    with open(os.path.join(outs[0], "summary.json")) as f:
        summary = json.load(f)
    rows = read_requests(os.path.join(outs[0], "requests.csv"))
    policies = summary["policies"]
    check([p["spec"].split("(")[0] for p in policies] == ["full", "snapkv", "streaming"], "policy order")
    check(len(rows) == 300 * len(policies), f"requests.csv has {len(rows)} rows, expected {300 * len(policies)}")
    for index, policy in enumerate(policies):
        mine = [r for r in rows if int(r["policy"]) == index]
        served = [r for r in mine if r["rejected"] == "0"]
        check(policy["served"] == len(served), f"{policy['spec']}: served {policy['served']} vs {len(served)} rows")
        ttft = np.array([float(r["ttft_s"]) for r in served])
        e2e = np.array([float(r["e2e_s"]) for r in served])
        queue = np.array([float(r["queue_s"]) for r in served])
        tpot_rows = [r for r in served if r["tpot_s"] != ""]
        tpot = np.array([float(r["tpot_s"]) for r in tpot_rows])
        outputs = np.array([int(r["output_tokens"]) for r in tpot_rows])
        for key, values in (("ttft_s", ttft), ("e2e_s", e2e), ("tpot_s", tpot), ("queue_s", queue)):
            for q in (50, 90, 99):
                expected = float(np.percentile(values, q))
                got = policy[key][f"p{q}"]
                check(abs(got - expected) <= 1e-6 * max(1.0, abs(expected)),
                      f"{policy['spec']}: {key} p{q} = {got}, numpy {expected}")
        check(np.all(queue >= -1e-12) and np.all(queue <= ttft + 1e-12) and np.all(ttft <= e2e + 1e-12),
              f"{policy['spec']}: queue <= ttft <= e2e")
        # e2e = ttft + tpot * (outputs - 1) for every multi-token request
        ttft_t = np.array([float(r["ttft_s"]) for r in tpot_rows])
        e2e_t = np.array([float(r["e2e_s"]) for r in tpot_rows])
        check(np.allclose(ttft_t + tpot * (outputs - 1), e2e_t, rtol=1e-6, atol=1e-9), f"{policy['spec']}: e2e split")
        arrival = np.array([float(r["arrival_s"]) for r in served])
        makespan = float(np.max(arrival + e2e) - np.min([float(r["arrival_s"]) for r in mine]))
        check(abs(policy["makespan_s"] - makespan) <= 1e-6 * makespan, f"{policy['spec']}: makespan")
        total_out = sum(int(r["output_tokens"]) for r in served)
        check(abs(policy["throughput_output_tokens_per_s"] - total_out / makespan) <= 1e-6 * total_out / makespan,
              f"{policy['spec']}: output throughput")
        good = sum(1 for r in served if float(r["ttft_s"]) <= 0.5 and (r["tpot_s"] == "" or float(r["tpot_s"]) <= 0.03))
        check(abs(policy["goodput_requests_per_s"] - good / makespan) <= 1e-6 * max(1.0, good / makespan),
              f"{policy['spec']}: goodput {policy['goodput_requests_per_s']} vs {good / makespan}")
        peak_rows = max(float(r["peak_hbm_kv_bytes"]) for r in mine)
        check(policy["peak_bytes"] >= peak_rows, f"{policy['spec']}: system peak below a request's peak")
        # Breaches (issue 18 §3): requests.csv names each late request's bound, summary.json counts them.
        late_ttft = sum(1 for r in served if float(r["ttft_s"]) > 0.5)
        late_tpot = sum(1 for r in served if r["tpot_s"] != "" and float(r["tpot_s"]) > 0.03)
        check(sum(1 for r in mine if "ttft:" in r["slo_breach"]) == late_ttft == policy["slo_breaches"]["ttft"]["requests"],
              f"{policy['spec']}: {late_ttft} late first tokens vs {policy['slo_breaches']['ttft']}")
        check(sum(1 for r in mine if "tpot:" in r["slo_breach"]) == late_tpot == policy["slo_breaches"]["tpot"]["requests"],
              f"{policy['spec']}: {late_tpot} slow decodes vs {policy['slo_breaches']['tpot']}")
        causes = policy["slo_breaches"]["ttft"]["causes"]
        check(set(causes) <= {"queueing", "hbm_capacity", "compute", "hbm_bandwidth", "link_bandwidth"} and
              sum(causes.values()) == late_ttft, f"{policy['spec']}: ttft causes {causes}")
    # Compressing policies hold less KV than the full cache on the same arrivals.
    full, snap, stream = policies
    check(snap["mean_kv_bytes"]["hbm"] < 0.5 * full["mean_kv_bytes"]["hbm"],
          f"snapkv 20% mean KV {snap['mean_kv_bytes']['hbm']} vs full {full['mean_kv_bytes']['hbm']}")
    check(stream["mean_kv_bytes"]["hbm"] < full["mean_kv_bytes"]["hbm"], "streaming holds less than full")


def test_timeline(kvsim, workdir):
    """--timeline on a serving run: one slice per iteration on each policy's compute track, KV and
    request counters, and the same results as without it."""
    ini = scenario(workdir, "serve.ini", SYNTHETIC)
    out = os.path.join(workdir, "out_timeline")
    r = run(kvsim, "run", ini, "--out", out, "--timeline", os.path.join(out, "trace.json"), "--quiet", "--threads", "1")
    check(r.returncode == 0, f"serving run with --timeline: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    for name in ("summary.json", "requests.csv", "timeline.csv"):
        check(filecmp.cmp(os.path.join(out, name), os.path.join(workdir, "out_t1", name), shallow=False),
              f"--timeline changes {name}")
    with open(os.path.join(out, "trace.json")) as f:
        events = json.load(f)["traceEvents"]
    with open(os.path.join(out, "summary.json")) as f:
        policies = json.load(f)["policies"]
    for pid, policy in enumerate(policies):
        slices = [e for e in events if e["pid"] == pid and e["ph"] == "X" and e["tid"] == 0]
        check(len(slices) == policy["iterations"], f"{policy['spec']}: {len(slices)} slices, {policy['iterations']} iterations")
        busy = sum(e["dur"] for e in slices) / 1e6
        check(0 < busy <= policy["makespan_s"] * (1 + 1e-9),
              f"{policy['spec']}: slices {busy} s within the makespan {policy['makespan_s']} s")
        check(all(b["ts"] >= a["ts"] + a["dur"] - 1e-3 for a, b in zip(slices, slices[1:])), "iterations do not overlap")
        counters = {e["name"] for e in events if e["pid"] == pid and e["ph"] == "C"}
        check(counters == {"KV bytes", "requests"}, f"counters {counters}")


def mooncake_like(path):
    """80 requests in the Mooncake form: four conversations, each turn repeating its conversation's
    earlier 512-token blocks and adding new ones (prompts 1.5K-5K tokens, so profiling stays quick)."""
    rng = np.random.default_rng(11)
    next_id = 0
    history = {c: [] for c in range(4)}
    with open(path, "w") as f:
        for i in range(80):
            conv = i % 4
            grow = int(rng.integers(1, 3))
            history[conv] = (history[conv] + list(range(next_id, next_id + grow)))[-9:]
            next_id += grow
            blocks = history[conv]
            prompt = 512 * (len(blocks) - 1) + int(rng.integers(1, 513))
            f.write(json.dumps({"timestamp": 150 * i, "input_length": prompt,
                                "output_length": int(rng.integers(20, 200)), "hash_ids": blocks}) + "\n")


def test_prefix_sharing(kvsim, workdir):
    sample = os.path.join(workdir, "mooncake_like.jsonl")
    mooncake_like(sample)
    ini = scenario(workdir, "mooncake.ini", sample)
    out = os.path.join(workdir, "out_mooncake")
    r = run(kvsim, "run", ini, "--out", out, "--quiet")
    check(r.returncode == 0, f"mooncake run exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    full = summary["policies"][0]
    check(full["prefix_caching"] is True, "full cache shares prefixes")
    check(summary["policies"][1]["prefix_caching"] is False, "a compressing policy does not")
    rows = [x for x in read_requests(os.path.join(out, "requests.csv")) if x["policy"] == "0"]
    hits = sum(int(x["cached_prompt_tokens"]) for x in rows)
    prompts = sum(int(x["prompt_tokens"]) for x in rows)
    check(hits > 0 and full["prefix_hit_tokens"] == hits, f"prefix hits {full['prefix_hit_tokens']} vs rows {hits}")
    check(all(int(x["cached_prompt_tokens"]) % 512 == 0 or int(x["cached_prompt_tokens"]) == int(x["prompt_tokens"]) - 1
              for x in rows), "hits are whole 512-token blocks")
    if full["preemptions"] == 0:
        check(full["prompt_tokens_computed"] == prompts - hits,
              f"prompt tokens computed {full['prompt_tokens_computed']} vs {prompts} - {hits}")


def test_plan(kvsim, workdir):
    ini = scenario(workdir, "plan.ini", SYNTHETIC, workload_extra="max_requests = 150")
    out = os.path.join(workdir, "out_plan")
    r = run(kvsim, "plan", ini, "--slo", "ttft_p99=1s,tpot_p99=50ms", "--hardware", "h100-sxm,a100-80g",
            "--out", out, "--quiet")
    check(r.returncode == 0, f"plan exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    with open(os.path.join(out, "plan.json")) as f:
        plan = json.load(f)
    check(len(plan["rows"]) == 6, f"plan rows {len(plan['rows'])}")
    by = {(row["hardware"], row["spec"].split("(")[0]): row for row in plan["rows"]}
    for spec in ("full", "snapkv", "streaming"):
        h100, a100 = by[("h100-sxm", spec)], by[("a100-80g", spec)]
        check(h100["feasible"] and h100["max_rate_per_s"] > a100["max_rate_per_s"],
              f"{spec}: H100 sustains more than A100 ({h100['max_rate_per_s']} vs {a100['max_rate_per_s']})")
        check(h100["ttft_p99_s"] <= 1.0 and h100["tpot_p99_s"] <= 0.05, f"{spec}: the rate found meets the SLO")
    table = r.stdout.split("\n\n")[0]  # then the best deployments, the memory per GPU
    check("max_req/s" in table and table.count("h100-sxm") == 3, "plan prints the table")

    # A deployment grid (issue 21): TP x token budget on a priced copy of the preset, the SLO from
    # the scenario's [serving] slo; per-GPU load and memory, cost per million output tokens.
    priced = os.path.join(workdir, "h100-priced.ini")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "hardware", "h100-sxm.ini")) as f:
        write(priced, f.read() + "\n[cost]\nusd_per_gpu_hour = 2.5\nsource = test\n")
    out = os.path.join(workdir, "out_plan_grid")
    r = run(kvsim, "plan", ini, "--hardware", priced, "--tp", "1,2", "--max-batch-tokens", "512,1024",
            "--max-requests", "60", "--out", out, "--quiet")
    check(r.returncode == 0, f"plan grid exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    with open(os.path.join(out, "plan.json")) as f:
        grid = json.load(f)
    check(grid["slo_from"] == "[serving] slo" and len(grid["rows"]) == 12, f"grid rows {len(grid['rows'])}")
    blocks = {}
    for row in grid["rows"]:
        m = row["memory"]
        unused = m["usable_bytes_per_gpu"] - m["weight_bytes_per_gpu"] - m["reserve_bytes_per_gpu"] - m["kv_bytes_per_gpu"]
        check(0 <= unused < 16 * 131072, f"memory per GPU adds up (unused {unused})")
        check(m["usable_bytes_per_gpu"] == 81559 * 2**20, "usable capacity is nvidia-smi's 81,559 MiB")
        check(abs(row["max_rate_per_s_per_gpu"] * row["tp"] - row["max_rate_per_s"]) < 1e-9, "rate per GPU = rate / tp")
        if row["feasible"]:
            expected = 2.5 * row["tp"] / (row["output_tokens_per_s"] * 3600) * 1e6
            check(abs(row["usd_per_million_output_tokens"] - expected) < 1e-9 * expected, "cost per million tokens")
        blocks[row["tp"]] = m["kv_blocks"]
    check(blocks[2] > 2 * blocks[1], f"TP 2 holds more than twice TP 1's blocks ({blocks})")
    check("Best deployment per policy" in r.stdout and "$/Mtok_out" in r.stdout, "grid prints best and cost")

    # No load meets a 5 ms TTFT: the zero-load floor says why.
    out = os.path.join(workdir, "out_plan_floor")
    r = run(kvsim, "plan", ini, "--slo", "ttft_p99=5ms", "--max-requests", "20", "--out", out, "--quiet")
    check(r.returncode == 0, f"plan floor exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0:
        with open(os.path.join(out, "plan.json")) as f:
            floor = json.load(f)
        check(all(not row["feasible"] and row["zero_load_floor"]["resource"].startswith("prefill")
                  and row["zero_load_floor"]["ttft_p99_s"] > 0.005 for row in floor["rows"]),
              "infeasible rows carry the zero-load floor")
        check("zero-load floor" in r.stdout, "the floor is printed")


def test_bad_serving_inputs(kvsim, workdir):
    cases = {
        "serving_without_arrivals": ("[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 100\n"
                                     "[serving]\nblock_tokens = 16\n", "needs [workload] arrivals"),
        "rate_and_concurrency": (SCENARIO.format(arrivals=SYNTHETIC, threads=1, workload_extra="arrival_rate = 3\nconcurrency = 4",
                                                 serving_extra="", hardware_extra=""), "contradicts arrival_rate"),
        "unknown_preemption": (SCENARIO.format(arrivals=SYNTHETIC, threads=1, workload_extra="",
                                               serving_extra="preemption = evict", hardware_extra=""), "unknown preemption"),
        "swap_without_tier": (SCENARIO.format(arrivals=SYNTHETIC, threads=1, workload_extra="",
                                              serving_extra="preemption = swap(tier=dram)", hardware_extra=""),
                              "no lower tier 'dram'"),
        "zero_block_tokens": (SCENARIO.format(arrivals=SYNTHETIC, threads=1, workload_extra="",
                                              serving_extra="block_tokens = 0", hardware_extra=""), "block_tokens"),
        "slo_without_unit": (SCENARIO.format(arrivals=SYNTHETIC, threads=1, workload_extra="",
                                             serving_extra="slo = ttft=2", hardware_extra="").replace(
                                                 "slo = ttft=0.5s, tpot=30ms\n", ""), "slo"),
    }
    for name, (text, fragment) in cases.items():
        path = os.path.join(workdir, name + ".ini")
        write(path, text)
        out = os.path.join(workdir, "out_" + name)
        r = run(kvsim, "run", path, "--out", out, "--quiet")
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and fragment in lines[0] and name in lines[0],
              f"{name}: exit {r.returncode}, stderr {r.stderr.strip()!r}, expected one line with {fragment!r}")
        check(not os.path.exists(out), f"{name}: left an output folder")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kvsim", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    test_determinism_and_summary(args.kvsim, args.workdir)
    test_timeline(args.kvsim, args.workdir)
    test_prefix_sharing(args.kvsim, args.workdir)
    test_plan(args.kvsim, args.workdir)
    test_bad_serving_inputs(args.kvsim, args.workdir)
    return checks.summary("%d checks passed, %d failed")


if __name__ == "__main__":
    sys.exit(main())
