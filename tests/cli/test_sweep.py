#!/usr/bin/env python3
"""End-to-end checks of kvsim sweep and kvsim merge on configs/sweeps/smoke.ini (issue 7):
  (a) a sweep killed with SIGKILL after its first scenario, then rerun, gives results.csv and
      results.h5 byte-identical to an uninterrupted run, and leaves no temporary folder;
  (b) --jobs 1 and --jobs 2 give identical results;
  (c) shards 1/3, 2/3, 3/3 merged give the unsharded tables; a missing shard fails with exit 2
      and one line naming a missing scenario and its key values; identical duplicates are
      accepted, conflicting ones refused;
  (c') merge refuses a changed copy already in --out, a malformed input rows.csv (before writing
      anything) and a shard whose sweep.ini does not match its sweep.id (issue 17 item 4);
  (c'') --list of 50 000 scenarios in seconds (issue 17 item 9);
  (d) a changed sweep file into the same folder is refused (exit 2, one line), a comment-only
      change is not;
  (e) results.h5 holds the same table as results.csv (h5py), and results.csv holds the same
      metrics as each scenario's summary.json (one flattening for both).
"""
import argparse
import csv
import filecmp
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import checks
from checks import check


def run(kvsim, *argv):
    return subprocess.run([kvsim, *argv], capture_output=True, text=True, timeout=600)


def same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and filecmp.cmp(a, b, shallow=False)


def same_tables(a, b, what):
    check(same_file(os.path.join(a, "results.csv"), os.path.join(b, "results.csv")), what + ": results.csv identical")
    check(same_file(os.path.join(a, "results.h5"), os.path.join(b, "results.h5")), what + ": results.h5 identical")


def finished_scenarios(out):
    folder = os.path.join(out, "scenarios")
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if not n.startswith(".tmp-"))


def one_error_line(r, fragments, what):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    ok = check(r.returncode == 2, "%s: exit %d, expected 2 (%s)" % (what, r.returncode, r.stderr.strip()))
    ok = check(len(lines) == 1, "%s: one line on stderr, got %r" % (what, r.stderr)) and ok
    for f in fragments:
        ok = check(f in r.stderr, "%s: %r not in %r" % (what, f, r.stderr)) and ok
    return ok


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(prefix + [k], v, out)
    else:
        out["_".join(prefix)] = value


def test_kill_and_resume(k, sweep, w, ref, total):
    out = os.path.join(w, "killed")
    proc = subprocess.Popen([k, "sweep", sweep, "--out", out, "--jobs", "1", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not finished_scenarios(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = finished_scenarios(out)
    interrupted = check(proc.returncode == -signal.SIGKILL, "the sweep was killed (exit %s)" % proc.returncode)
    interrupted = check(1 <= len(done) < total, "killed after %d of %d scenarios" % (len(done), total)) and interrupted
    check(not os.path.exists(os.path.join(out, "results.csv")), "no results.csv from a killed sweep")
    if not interrupted:
        return
    # What a kill during a scenario's writing leaves: its temporary folder, named after this host and
    # the dead process; the resumed run removes it. A live process's temporary folder is kept.
    host = socket.gethostname()
    scenarios = os.path.join(out, "scenarios")
    dead = os.path.join(scenarios, ".tmp-%s~%s~%d" % (finished_scenarios(ref)[-1], host, proc.pid))
    live = os.path.join(scenarios, ".tmp-%s~%s~%d" % (finished_scenarios(ref)[-1], host, os.getpid()))
    for folder in (dead, live):
        os.makedirs(folder)
        with open(os.path.join(folder, "summary.json"), "w") as f:
            f.write('{"partial')
    r = run(k, "sweep", sweep, "--out", out, "--jobs", "1", "--quiet")
    check(r.returncode == 0, "resume: %s" % r.stderr)
    check("(%d scenarios run now" % (total - len(done)) in r.stdout, "resume runs only what is missing: %s" % r.stdout)
    same_tables(out, ref, "killed and resumed vs uninterrupted")
    leftovers = [n for n in os.listdir(scenarios) if n.startswith(".tmp-")]
    check(leftovers == [os.path.basename(live)], "the dead process's temporary folder is removed, a live one's "
                                                 "kept: %s" % leftovers)
    shutil.rmtree(live)
    # A rerun of a complete sweep runs nothing and rewrites the same tables.
    r = run(k, "sweep", sweep, "--out", out, "--quiet")
    check(r.returncode == 0 and "(0 scenarios run now" in r.stdout, "rerun of a complete sweep: %s %s" % (r.stdout, r.stderr))
    same_tables(out, ref, "rerun of a complete sweep")


def test_shards(k, sweep, w, ref, total):
    shards = []
    for i in (1, 2, 3):
        out = os.path.join(w, "shard%d" % i)
        r = run(k, "sweep", sweep, "--out", out, "--shard", "%d/3" % i, "--quiet")
        check(r.returncode == 0, "shard %d/3: %s" % (i, r.stderr))
        expected = [n for n in finished_scenarios(ref) if int(n.split("-")[0]) % 3 == i - 1]
        check(finished_scenarios(out) == expected, "shard %d/3 runs indices = %d mod 3" % (i, i - 1))
        check(not os.path.exists(os.path.join(out, "results.csv")), "a shard writes no partial results.csv")
        shards.append(out)
    merged = os.path.join(w, "merged")
    r = run(k, "merge", *shards, "--out", merged)
    check(r.returncode == 0, "merge: %s" % r.stderr)
    same_tables(merged, ref, "merged shards vs unsharded")
    check(finished_scenarios(merged) == finished_scenarios(ref), "merge copies every scenario folder")

    # A missing shard: scenario 1 (shard 2/3) is named with its key values; nothing is written.
    partial = os.path.join(w, "merged_partial")
    r = run(k, "merge", shards[0], shards[2], "--out", partial)
    one_error_line(r, ["scenario 1 (workload.prompt_tokens=1024, workload.chunk_tokens=256)", "missing"],
                   "merge without shard 2/3")
    check(not os.path.exists(partial), "a failed merge creates nothing")

    # The same shard twice is harmless; a conflicting copy is refused naming both folders.
    dup = os.path.join(w, "merged_dup")
    r = run(k, "merge", shards[0], shards[1], shards[1], shards[2], "--out", dup)
    check(r.returncode == 0, "identical duplicates are accepted: %s" % r.stderr)
    same_tables(dup, ref, "merge with a duplicated shard")
    forged = os.path.join(w, "shard1_forged")
    shutil.copytree(shards[0], forged)
    rows = os.path.join(forged, "scenarios", finished_scenarios(forged)[0], "rows.csv")
    with open(rows) as f:
        text = f.read()
    with open(rows, "w") as f:
        f.write(text.replace("full,", "full,9", 1))
    r = run(k, "merge", shards[0], forged, shards[1], shards[2], "--out", os.path.join(w, "merged_conflict"))
    one_error_line(r, ["scenario 0 (", "other results", "shard1_forged"], "merge with a conflicting duplicate")

    # Merging into one of the inputs completes it; shards of another sweep are refused.
    r = run(k, "merge", shards[0], shards[1], shards[2], "--out", shards[0])
    check(r.returncode == 0, "merge into an input folder: %s" % r.stderr)
    same_tables(shards[0], ref, "merge into an input folder")
    other = os.path.join(w, "other_sweep")
    with open(sweep) as f:
        text = f.read().replace("seed = 7", "seed = 8")
    other_ini = os.path.join(w, "other.ini")
    with open(other_ini, "w") as f:
        f.write(text)
    r = run(k, "sweep", other_ini, "--out", other, "--shard", "1/3", "--quiet")
    check(r.returncode == 0, "a shard of another sweep: %s" % r.stderr)
    r = run(k, "merge", shards[1], other, "--out", os.path.join(w, "merged_mixed"))
    one_error_line(r, ["other_sweep", "another sweep"], "merge of two sweeps")


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    check(old in text, "%s holds %r to edit" % (path, old))
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def test_merge_checks(k, w, ref):
    """Issue 17 item 4: merge compares what --out already holds with the inputs, checks every input
    rows.csv before writing anything, and reads every shard's sweep.ini."""
    merged = os.path.join(w, "merged")
    first = finished_scenarios(ref)[0]

    # (a) --out holds an earlier merge whose rows.csv was changed since: refused, naming it.
    stale = os.path.join(w, "merged_stale")
    shutil.copytree(merged, stale)
    edit(os.path.join(stale, "scenarios", first, "rows.csv"), "full,", "full,9")
    r = run(k, "merge", *[os.path.join(w, "shard%d" % i) for i in (1, 2, 3)], "--out", stale)
    one_error_line(r, ["merged_stale", "scenario 0 (", "other results"], "merge into a folder with a changed copy")
    check(same_file(os.path.join(stale, "results.csv"), os.path.join(ref, "results.csv")),
          "the refused merge leaves --out's results.csv as it was")

    # (b) a malformed input rows.csv is refused before anything is written.
    bad = os.path.join(w, "shard2_bad")
    shutil.copytree(os.path.join(w, "shard2"), bad)
    bad_folder = finished_scenarios(bad)[0]
    rows = os.path.join(bad, "scenarios", bad_folder, "rows.csv")
    with open(rows) as f:
        lines = f.read().splitlines()
    cells = lines[2].split(",")
    cells[-1] = "x" + cells[-1]  # the last column is a number in every row
    lines[2] = ",".join(cells)
    with open(rows, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = os.path.join(w, "merged_bad")
    r = run(k, "merge", bad, merged, "--out", out)
    one_error_line(r, ["shard2_bad", "rows.csv", "line 3"], "merge of a malformed rows.csv")
    check(not os.path.exists(out), "a merge refused for a malformed input writes nothing")

    # (c) every shard's sweep.ini is read, not only the first's.
    edited = os.path.join(w, "shard3_edited")
    shutil.copytree(os.path.join(w, "shard3"), edited)
    edit(os.path.join(edited, "sweep.ini"), "seed = 7", "seed = 9")
    out = os.path.join(w, "merged_edited")
    r = run(k, "merge", merged, edited, "--out", out)
    one_error_line(r, ["shard3_edited", "sweep.ini", "does not expand"], "merge with an edited sweep.ini in shard 2")
    check(not os.path.exists(out), "a merge refused for an edited sweep.ini writes nothing")


def test_list_speed(k, w):
    """Issue 17 item 9: --list of 50 000 scenarios took 16 s (0.3 ms each, mostly parsing every
    scenario); now the expansion alone, ~0.2 s. 4 s leaves room for a loaded machine."""
    big = os.path.join(w, "big.ini")
    with open(big, "w") as f:
        f.write("[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 1000..100000 +1000\n"
                "generated_tokens = 1..100\nchunk_tokens = 128, 256, 512, 1024, 2048\ntrace = synthetic\n"
                "[policy]\nspec = snapkv(budget={0.1,0.2}, prefill={post_fill,chunk})\n"
                "[hardware]\npreset = h100-sxm\n[sweep]\nseed = 7\n")
    start = time.monotonic()
    r = run(k, "sweep", big, "--list")
    seconds = time.monotonic() - start
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and len(lines) == 50001, "--list of 50 000 scenarios: %s" % r.stderr[-300:])
    check(seconds < 4, "--list of 50 000 scenarios in %.1f s (< 4 s)" % seconds)
    check(lines[-1].startswith("049999-") and "workload.prompt_tokens=100000" in lines[-1], "last line: %r" % lines[-1:])


def test_changed_sweep(k, sweep, w, ref):
    with open(sweep) as f:
        text = f.read()
    before = open(os.path.join(ref, "results.csv"), "rb").read()
    changed = os.path.join(w, "changed.ini")
    with open(changed, "w") as f:
        f.write(text.replace("chunk_tokens = 128, 256", "chunk_tokens = 128, 512"))
    r = run(k, "sweep", changed, "--out", ref, "--quiet")
    one_error_line(r, [ref, "another sweep", "changed.ini"], "a changed sweep into the same folder")
    check(open(os.path.join(ref, "results.csv"), "rb").read() == before, "the refused run leaves results.csv alone")
    commented = os.path.join(w, "commented.ini")
    with open(commented, "w") as f:
        f.write("# only a comment added\n" + text)
    r = run(k, "sweep", commented, "--out", ref, "--quiet")
    check(r.returncode == 0 and "(0 scenarios run now" in r.stdout, "a comment-only change is the same sweep: %s" % r.stderr)
    not_sweep = os.path.join(w, "not_a_sweep_folder")
    os.makedirs(not_sweep, exist_ok=True)
    with open(os.path.join(not_sweep, "notes.txt"), "w") as f:
        f.write("mine\n")
    r = run(k, "sweep", sweep, "--out", not_sweep, "--quiet")
    one_error_line(r, ["not a kvsim sweep folder"], "--out a folder with other files")


def test_tables(ref, total):
    import h5py
    import numpy as np
    with open(os.path.join(ref, "results.csv"), newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], table[1:]
    check(header[:5] == ["scenario", "workload.prompt_tokens", "workload.chunk_tokens", "workload.seed", "policy"],
          "leading columns: %s" % header[:5])
    for metric in ("footprint_normalized", "peak_normalized", "peak_bytes", "attention_recall_mean",
                   "attention_recall_p5", "output_error_mean", "output_error_p95", "needle_retention", "ttft_s_p50",
                   "tpot_s_p99", "bytes_read_hbm", "byte_seconds_hbm"):
        check(metric in header, "results.csv has %s" % metric)
    check(len(rows) == total * 6, "one row per scenario and policy (%d)" % len(rows))
    check([int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows), "rows in expansion order")

    with h5py.File(os.path.join(ref, "results.h5"), "r") as h5:
        columns = [c.decode() if isinstance(c, bytes) else c for c in h5.attrs["columns"]]
        check(columns == header, "results.h5 columns attribute == results.csv header")
        check(h5.attrs["format"] in ("kvsim-sweep-results", b"kvsim-sweep-results"), "format attribute")
        for c, name in enumerate(header):
            data = h5[name][()]
            check(len(data) == len(rows), "%s: %d values" % (name, len(data)))
            cells = [r[c] for r in rows]
            if data.dtype.kind == "O":
                values = [v.decode() if isinstance(v, bytes) else v for v in data]
                check(values == cells, "%s: strings equal" % name)
            elif data.dtype.kind == "i":
                check(data.dtype == np.int64, "%s: int64" % name)
                check(all(cell != "" and int(cell) == v for cell, v in zip(cells, data)), "%s: integers equal" % name)
            else:
                check(data.dtype == np.float64, "%s: float64" % name)
                check(all((cell == "" and math.isnan(v)) or (cell != "" and float(cell) == v)
                          for cell, v in zip(cells, data)), "%s: floats equal, absent = NaN" % name)

    # summary.json and results.csv come from one flattening: same metrics, same values.
    for folder in finished_scenarios(ref):
        index = int(folder.split("-")[0])
        policies = json.load(open(os.path.join(ref, "scenarios", folder, "summary.json")))["policies"]
        mine = [r for r in rows if int(r[0]) == index]
        check(len(mine) == len(policies), "scenario %d: one row per policy" % index)
        for row, policy in zip(mine, policies):
            flat = {}
            flatten([], policy, flat)
            check(row[4] == flat.pop("spec"), "scenario %d: policy column is the spec" % index)
            cells = {name: row[c] for c, name in enumerate(header) if c > 4}
            check(set(flat) == {n for n, v in cells.items() if v != ""},
                  "scenario %d: summary.json keys == non-empty metric cells: %s" %
                  (index, set(flat) ^ {n for n, v in cells.items() if v != ""}))
            for name, value in flat.items():
                cell = cells.get(name, "")
                if isinstance(value, bool):
                    check(cell == str(int(value)), "%s: %s vs %s" % (name, cell, value))
                else:
                    check(cell != "" and float(cell) == value, "%s: %s vs %s" % (name, cell, value))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--sweep", required=True, help="configs/sweeps/smoke.ini")
    args = ap.parse_args()
    k, w, sweep = os.path.abspath(args.kvsim), os.path.abspath(args.workdir), os.path.abspath(args.sweep)
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)

    r = run(k, "sweep", sweep, "--list")
    check(r.returncode == 0, "--list: %s" % r.stderr)
    total = int(r.stdout.split()[0]) if r.returncode == 0 else 0
    check(total == 6, "smoke.ini expands to 6 scenarios (%d)" % total)

    ref = os.path.join(w, "ref")
    r = run(k, "sweep", sweep, "--out", ref, "--jobs", "1")
    check(r.returncode == 0, "uninterrupted sweep: %s" % r.stderr)
    check(len(finished_scenarios(ref)) == total, "every scenario has its folder")
    progress = [l for l in r.stderr.splitlines() if "done in" in l]
    check(len(progress) == total and "ETA" in progress[-1] and "100%" in progress[-1],
          "a progress line per scenario when stderr is not a terminal: %r" % r.stderr[-300:])

    time.sleep(1.1)  # anything recording a time with one-second resolution would show up as a difference
    r = run(k, "sweep", sweep, "--out", os.path.join(w, "jobs2"), "--jobs", "2", "--quiet")
    check(r.returncode == 0, "--jobs 2: %s" % r.stderr)
    same_tables(os.path.join(w, "jobs2"), ref, "--jobs 2 vs --jobs 1")
    for folder in finished_scenarios(ref):
        check(same_file(os.path.join(ref, "scenarios", folder, "summary.json"),
                        os.path.join(w, "jobs2", "scenarios", folder, "summary.json")),
              "%s/summary.json identical at --jobs 1 and 2" % folder)

    test_kill_and_resume(k, sweep, w, ref, total)
    test_shards(k, sweep, w, ref, total)
    test_merge_checks(k, w, ref)
    test_list_speed(k, w)
    test_changed_sweep(k, sweep, w, ref)
    test_tables(ref, total)

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
