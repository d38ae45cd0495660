#!/usr/bin/env python3
"""Crash consistency of kvsim's result folders (issue 17 item 3 and its acceptance test).

kill -9 at random moments (seeded, so a failure reproduces) of
  (a) `kvsim run --out DIR`, alternating two scenarios A and B into the same DIR: after every kill
      DIR is absent or holds exactly A's or B's result set, byte for byte as an uninterrupted run
      writes it, never a mixture and never a stray file;
  (b) `kvsim sweep --out DIR` (restarted from scratch now and then, so kills land in every stage:
      creating DIR, running scenarios, writing results.csv/.h5): every scenario folder present is
      complete and equal to an uninterrupted sweep's, and results.csv/.h5, when present, too;
then a rerun of each completes, equals the uninterrupted run, and no temporary is left (the dead
writers' DIR.tmp.<pid>@<host>, .tmp-<scenario>~<host>~<pid> and <file>.tmp.<pid>@<host> removed).
Also (c) two runs writing different scenarios into one DIR at once, many times: DIR always holds
one whole set. Each kvsim call takes well under a second (a 3-layer model, 256-token prompt).
"""
import argparse
import filecmp
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from tiny_model import TINY_MODEL

import checks
from checks import check

SEED = 20250117
RUN_KILLS = 30
SWEEP_KILLS = 30
RUN_FILES = ("summary.json", "timeline.csv", "requests.csv")
SCENARIO_FILES = ("scenario.ini", "summary.json", "timeline.csv", "requests.csv", "rows.csv")

SCENARIO = """[model]
preset = tiny-model.ini
[workload]
prompt_tokens = 256
generated_tokens = 8
chunk_tokens = 128
trace = synthetic
seed = %d
traced_layers = 0,2
[policy]
spec = snapkv(budget=0.25, window=16, prefill=chunk)
spec = streaming(sinks=4, window=32)
[hardware]
preset = h100-sxm
[sim]
threads = 1
"""

SWEEP = (SCENARIO % 1).replace("seed = 1\n", "").replace("prompt_tokens = 256", "prompt_tokens = 128, 256") \
    .replace("chunk_tokens = 128", "chunk_tokens = 64, 128") + "[sweep]\nseed = 3\n"


def kvsim(k, w, *argv):
    return subprocess.run([k, *argv], cwd=w, capture_output=True, text=True, timeout=120)


def same(a, b):
    return os.path.isfile(a) and os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)


def same_set(folder, ref, names):
    return sorted(os.listdir(folder)) == sorted(names) and all(same(os.path.join(folder, n), os.path.join(ref, n))
                                                               for n in names)


def leftovers(folder):
    """Temporaries of any kvsim writer in `folder` (not recursive)."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if ".tmp." in n or ".old." in n or n.startswith(".tmp-"))


def kill_at(k, w, argv, delay_s):
    proc = subprocess.Popen([k, *argv], cwd=w, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL  # False: it finished before the kill


def timed(k, w, *argv):
    start = time.monotonic()
    r = kvsim(k, w, *argv)
    return r, time.monotonic() - start


def test_run_kills(k, w, rng):
    refs = {}
    duration = 0.0
    for name in ("a", "b"):
        r, seconds = timed(k, w, "run", name + ".ini", "--out", "ref_" + name, "--quiet")
        check(r.returncode == 0, "reference run %s: %s" % (name, r.stderr))
        refs[name] = os.path.join(w, "ref_" + name)
        duration = max(duration, seconds)
    check(not same(os.path.join(refs["a"], "summary.json"), os.path.join(refs["b"], "summary.json")),
          "scenarios A and B give different summaries (else a mixture could not be seen)")
    out = os.path.join(w, "run_out")
    killed = i = 0
    while killed < RUN_KILLS and i < 3 * RUN_KILLS:  # a run that finishes before its kill does not count
        i += 1
        name = "ab"[i % 2]
        # Half the kills aim at the last fifth of the run, where its files are written.
        delay = rng.uniform(0, duration) if i % 2 else rng.uniform(0.8 * duration, 1.1 * duration)
        killed += kill_at(k, w, ["run", name + ".ini", "--out", "run_out", "--quiet"], delay)
        if os.path.exists(out):
            whole = any(same_set(out, ref, RUN_FILES) for ref in refs.values())
            check(whole, "run kill %d: run_out holds one whole result set (%s)" % (i, sorted(os.listdir(out))))
        stray = [n for n in os.listdir(w) if n.startswith("run_out") and n != "run_out" and ".tmp." not in n
                 and ".old." not in n]
        check(not stray, "run kill %d: nothing beside run_out but temporaries: %s" % (i, stray))
    check(killed == RUN_KILLS, "%d runs killed before they finished, in %d tries" % (killed, i))
    r = kvsim(k, w, "run", "b.ini", "--out", "run_out", "--quiet")
    check(r.returncode == 0, "the run after the kills: %s" % r.stderr)
    check(same_set(out, refs["b"], RUN_FILES), "the rerun's folder equals an uninterrupted run's")
    check(leftovers(w) == [], "the rerun removed the dead runs' temporaries: %s" % leftovers(w))
    return killed, refs


def check_sweep_folder(out, ref, what):
    scenarios = os.path.join(out, "scenarios")
    if not os.path.isdir(scenarios):
        return
    for n in os.listdir(scenarios):
        if n.startswith(".tmp-"):
            continue
        check(same_set(os.path.join(scenarios, n), os.path.join(ref, "scenarios", n), SCENARIO_FILES),
              "%s: scenario folder %s complete and equal to the uninterrupted sweep's" % (what, n))
    for n in ("results.csv", "results.h5"):
        if os.path.exists(os.path.join(out, n)):
            check(same(os.path.join(out, n), os.path.join(ref, n)), "%s: %s equals the uninterrupted sweep's" % (what, n))


def test_sweep_kills(k, w, rng):
    r, duration = timed(k, w, "sweep", "sweep.ini", "--out", "sweep_ref", "--jobs", "1", "--quiet")
    check(r.returncode == 0, "reference sweep: %s" % r.stderr)
    ref = os.path.join(w, "sweep_ref")
    out = os.path.join(w, "sweep_out")
    killed = i = 0
    while killed < SWEEP_KILLS and i < 3 * SWEEP_KILLS:
        i += 1
        if i % 6 == 1:
            shutil.rmtree(out, ignore_errors=True)  # start over: kills land while DIR is created, too
        killed += kill_at(k, w, ["sweep", "sweep.ini", "--out", "sweep_out", "--jobs", "1", "--quiet"],
                          rng.uniform(0, duration * 1.2))
        check_sweep_folder(out, ref, "sweep kill %d" % i)
    check(killed == SWEEP_KILLS, "%d sweeps killed before they finished, in %d tries" % (killed, i))
    r = kvsim(k, w, "sweep", "sweep.ini", "--out", "sweep_out", "--jobs", "1", "--quiet")
    check(r.returncode == 0, "the sweep after the kills: %s" % r.stderr)
    check_sweep_folder(out, ref, "resumed sweep")
    check(sorted(os.listdir(os.path.join(out, "scenarios"))) == sorted(os.listdir(os.path.join(ref, "scenarios"))),
          "the resumed sweep holds every scenario and nothing else")
    for n in ("results.csv", "results.h5"):
        check(same(os.path.join(out, n), os.path.join(ref, n)), "resumed sweep: %s equals the uninterrupted one" % n)
    check(leftovers(out) == [] and leftovers(os.path.join(out, "scenarios")) == [],
          "the resumed sweep removed the dead writers' temporaries: %s %s"
          % (leftovers(out), leftovers(os.path.join(out, "scenarios"))))
    return killed


def test_concurrent_runs(k, w, refs):
    out = os.path.join(w, "shared_out")
    for i in range(8):
        procs = [subprocess.Popen([k, "run", n + ".ini", "--out", "shared_out", "--quiet"], cwd=w,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in ("a", "b")]
        errors = [p.communicate()[1].decode() for p in procs]
        check(all(p.returncode == 0 for p in procs), "concurrent runs %d both succeed: %s" % (i, errors))
        check(any(same_set(out, ref, RUN_FILES) for ref in refs.values()),
              "concurrent runs %d: shared_out holds one whole set (%s)" % (i, sorted(os.listdir(out))))
    check(leftovers(w) == [], "concurrent runs leave no temporaries: %s" % leftovers(w))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    k, w = os.path.abspath(args.kvsim), os.path.abspath(args.workdir)
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    with open(os.path.join(w, "tiny-model.ini"), "w") as f:
        f.write(TINY_MODEL)
    for name, seed in (("a", 1), ("b", 2)):
        with open(os.path.join(w, name + ".ini"), "w") as f:
            f.write(SCENARIO % seed)
    with open(os.path.join(w, "sweep.ini"), "w") as f:
        f.write(SWEEP)

    start = time.monotonic()
    rng = random.Random(SEED)
    run_killed, refs = test_run_kills(k, w, rng)
    sweep_killed = test_sweep_kills(k, w, rng)
    check(run_killed + sweep_killed >= 50, "at least 50 kills in all (%d)" % (run_killed + sweep_killed))
    test_concurrent_runs(k, w, refs)
    print("%d kills (%d run, %d sweep) in %.1f s" % (run_killed + sweep_killed, run_killed, sweep_killed,
                                                    time.monotonic() - start))
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
