#!/usr/bin/env python3
"""Outputs on a full disk (issue 17 items 1 and 3): every writer of kvsim, pointed at a small tmpfs,
must fail with exit 2 and one error line naming its output, and leave nothing under the final
name nor a temporary behind (and an existing result folder as it was):
  (a) kvsim synth --out FULL/t.h5                     (HDF5 trace)
  (b) kvsim run --save-kept FULL/k.h5                 (HDF5 kept masks; --out elsewhere stays unwritten)
  (c) kvsim sweep --out DIR whose results.h5 does not fit (results.csv does)
  (d) kvsim run --out FULL/out: first absent, then over an older complete result set
Before the fix: SIGSEGV, 'DataSet::~DataSet - H5Dclose failed' lines, a truncated file under
the final name or a .tmp.PID file left behind.

Needs root to mount a tmpfs (CI runs as root); elsewhere it says so and exits 77 (ctest: skipped).
"""
import argparse
import os
import shutil
import subprocess
import sys

from tiny_model import TINY_MODEL

import checks
from checks import check

SKIP = 77

SCENARIO = """[model]
preset = tiny-model.ini
[workload]
prompt_tokens = 256
generated_tokens = 8
chunk_tokens = 128
trace = synthetic
seed = 1
traced_layers = 0,2
[policy]
spec = snapkv(budget=0.25, window=16, prefill=chunk)
[sim]
threads = 1
"""

SWEEP = SCENARIO.replace("prompt_tokens = 256", "prompt_tokens = 256, 384").replace("seed = 1\n", "")


def run(kvsim, *argv, cwd=None):
    return subprocess.run([kvsim, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


def umount(path):
    subprocess.run(["umount", path], capture_output=True)


def error_lines(stderr):
    """Lines of stderr that are not progress ("synth: layer 0 (1/2)")."""
    return [l for l in stderr.splitlines() if l.strip() and not l.startswith("synth: layer ")]


def refused(r, name, what):
    lines = error_lines(r.stderr)
    check(r.returncode == 2, "%s: exit %d, expected 2 (a signal is negative): %r" % (what, r.returncode, r.stderr[-500:]))
    check(len(lines) == 1, "%s: one error line, got %r" % (what, lines))
    check(bool(lines) and name in lines[0], "%s: the error names %s: %r" % (what, name, lines))
    check("HDF5-DIAG" not in r.stderr and "close failed" not in r.stderr,
          "%s: no HDF5 diagnostics on stderr: %r" % (what, r.stderr[-500:]))


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def fill(folder, leave_bytes):
    """Fills the tmpfs at `folder` up to `leave_bytes` of free space (rounded down to pages)."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    size = max(0, free - leave_bytes)
    with open(os.path.join(folder, "filler"), "wb") as f:
        f.write(b"\0" * size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    k, w = os.path.abspath(args.kvsim), os.path.abspath(args.workdir)
    for m in ("full", "sweep_full", "run_full"):
        umount(os.path.join(w, m))
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    if os.geteuid() != 0:
        print("SKIP: not root, cannot mount a small tmpfs to fill (CI runs this as root)")
        return SKIP
    probe = os.path.join(w, "full")
    ok, why = mount_tmpfs(probe, "64k")
    if not ok:
        print("SKIP: cannot mount a tmpfs here (%s); the disk-full cases need one" % why)
        return SKIP
    umount(probe)

    with open(os.path.join(w, "tiny-model.ini"), "w") as f:
        f.write(TINY_MODEL)
    with open(os.path.join(w, "s.ini"), "w") as f:
        f.write(SCENARIO)
    with open(os.path.join(w, "sweep.ini"), "w") as f:
        f.write(SWEEP)

    full = os.path.join(w, "full")
    try:
        # (a) synth: a 0.4 MiB trace into 64 KiB.
        mount_tmpfs(full, "64k")
        r = run(k, "synth", "--model", "tiny-model.ini", "--prompt-tokens", "256", "--generated-tokens", "8",
                "--layers", "0,2", "--out", os.path.join(full, "t.h5"), cwd=w)
        refused(r, "t.h5", "synth on a full disk")
        check(listing(full) == [], "synth on a full disk leaves nothing: %s" % listing(full))
        umount(full)

        # (b) --save-kept: 20 KiB of masks into 16 KiB; the --out folder is not written either.
        mount_tmpfs(full, "16k")
        r = run(k, "run", "s.ini", "--out", "out_b", "--save-kept", os.path.join(full, "k.h5"), "--quiet", cwd=w)
        refused(r, "k.h5", "--save-kept on a full disk")
        check(listing(full) == [], "--save-kept on a full disk leaves nothing: %s" % listing(full))
        check(not os.path.exists(os.path.join(w, "out_b")), "the run's --out is not written when --save-kept fails")
        umount(full)

        # (c) sweep: every scenario done, results.csv fits, results.h5 does not.
        ref = os.path.join(w, "sweep_ref")
        r = run(k, "sweep", "sweep.ini", "--out", ref, "--jobs", "1", "--quiet", cwd=w)
        check(r.returncode == 0, "reference sweep: %s" % r.stderr)
        sweep_full = os.path.join(w, "sweep_full")
        mount_tmpfs(sweep_full, "1m")
        out = os.path.join(sweep_full, "out")
        shutil.copytree(ref, out)
        for name in ("results.csv", "results.h5"):
            os.remove(os.path.join(out, name))
        csv_pages = -(-os.path.getsize(os.path.join(ref, "results.csv")) // 4096)
        fill(sweep_full, csv_pages * 4096)
        r = run(k, "sweep", "sweep.ini", "--out", out, "--jobs", "1", "--quiet", cwd=w)
        refused(r, "results.h5", "sweep results.h5 on a full disk")
        left = [n for n in listing(out) if n.startswith("results.h5") or ".tmp." in n]
        check(left == [], "no results.h5 nor temporary left: %s" % left)
        os.remove(os.path.join(sweep_full, "filler"))
        r = run(k, "sweep", "sweep.ini", "--out", out, "--jobs", "1", "--quiet", cwd=w)
        check(r.returncode == 0, "the sweep completes once there is space: %s" % r.stderr)
        for name in ("results.csv", "results.h5"):
            a, b = os.path.join(out, name), os.path.join(ref, name)
            check(os.path.exists(a) and open(a, "rb").read() == open(b, "rb").read(), "%s then equals the reference" % name)
        umount(sweep_full)

        # (d) run --out on a full disk: absent stays absent; an older complete set stays as it was.
        run_full = os.path.join(w, "run_full")
        mount_tmpfs(run_full, "8k")
        r = run(k, "run", "s.ini", "--out", os.path.join(run_full, "out"), "--quiet", cwd=w)
        refused(r, "out", "run --out on a full disk")
        check(listing(run_full) == [], "run --out on a full disk leaves nothing: %s" % listing(run_full))
        umount(run_full)
        mount_tmpfs(run_full, "64k")
        old = os.path.join(run_full, "out")
        os.makedirs(old)
        for name in ("summary.json", "timeline.csv", "requests.csv"):
            with open(os.path.join(old, name), "w") as f:
                f.write("old " + name + "\n")
        fill(run_full, 4096)
        r = run(k, "run", "s.ini", "--out", old, "--quiet", cwd=w)
        refused(r, "out", "run --out over an older set on a full disk")
        check(listing(run_full) == ["filler", "out"], "only the old folder remains: %s" % listing(run_full))
        check(all(open(os.path.join(old, n)).read() == "old %s\n" % n
                  for n in ("summary.json", "timeline.csv", "requests.csv")), "the older set is untouched")
        umount(run_full)
    finally:
        for m in ("full", "sweep_full", "run_full"):
            umount(os.path.join(w, m))

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
