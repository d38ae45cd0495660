#!/usr/bin/env python3
"""The retention profile cache (issue 21 §2) end to end, on a small serving scenario:

  (a) a run that reads every profile from the cache writes byte-identical summary.json,
      requests.csv and timeline.csv to one that measured them, and to one with --no-cache;
      kvsim plan reads the profiles kvsim run cached;
  (b) changing a key component (seed, a policy spec, the model's RoPE base, the chunk size, the
      content of a policy's mask file) misses the cache: new files, results from a fresh measurement;
  (c) a truncated or altered cache file is ignored with one warning line, measured again, rewritten,
      and the results are still identical;
  (d) --no-cache and cache_dir = none write nothing;
  (e) two processes filling one empty cache at once both succeed and leave only whole files.
Every cache lives under --workdir (never the real ~/.cache).
"""
import argparse
import filecmp
import os
import random
import shutil
import subprocess
import sys

import checks
from checks import check


SCENARIO = """[model]
preset = llama-3.1-8b
{model_extra}
[workload]
arrivals = gamma(rate=8, cv=1.5, requests=40, prompt_mean=1200, prompt_cv=0.8, prompt_max=4000, output_mean=60, output_cv=1, output_max=200)
chunk_tokens = {chunk}
seed = {seed}
[policy]
spec = {snapkv}
spec = streaming(sinks=4, window=256)
{policy_extra}
[hardware]
preset = h100-sxm
[serving]
profile_decode_tokens = 32
profile_buckets_per_octave = 2
[sim]
threads = 2
cache_dir = {cache}
"""
OUTPUTS = ("summary.json", "requests.csv", "timeline.csv")


def scenario(workdir, name, cache, seed=3, chunk=512, snapkv="snapkv(budget=0.2, prefill=chunk)", model_extra="",
             policy_extra=""):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(SCENARIO.format(cache=cache, seed=seed, chunk=chunk, snapkv=snapkv, model_extra=model_extra,
                                policy_extra=policy_extra))
    return path


def kvsim_run(kvsim, ini, out, *extra, env=None):
    r = subprocess.run([kvsim, "run", ini, "--out", out, *extra], capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(ini), env=env)
    check(r.returncode == 0, f"kvsim run {os.path.basename(ini)} {' '.join(extra)} exit {r.returncode}: {r.stderr.strip()}")
    return r


def profile_files(cache):
    folder = os.path.join(cache, "retention-profiles")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def all_files(folder):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs) if os.path.isdir(folder) else []


def same_outputs(a, b):
    return all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in OUTPUTS)


def from_cache_line(stderr):
    lines = [l for l in stderr.splitlines() if "from the cache" in l]
    return lines[0] if lines else ""


def test_hit_identical(kvsim, workdir):
    cache = os.path.join(workdir, "cache")
    ini = scenario(workdir, "base.ini", cache)
    cold = kvsim_run(kvsim, ini, os.path.join(workdir, "cold"))
    files = profile_files(cache)
    check(len(files) > 0 and len(files) % 3 == 0, f"cold run cached a profile per bucket and policy, got {len(files)}")
    check(f" 0 of {len(files)} from the cache" in from_cache_line(cold.stderr), f"cold run: {from_cache_line(cold.stderr)}")
    warm = kvsim_run(kvsim, ini, os.path.join(workdir, "warm"))
    check(f"{len(files)} of {len(files)} from the cache" in from_cache_line(warm.stderr), f"warm run: {from_cache_line(warm.stderr)}")
    check(profile_files(cache) == files, "warm run wrote no new profile")
    check(same_outputs(os.path.join(workdir, "cold"), os.path.join(workdir, "warm")), "cache hit gives identical outputs")
    kvsim_run(kvsim, ini, os.path.join(workdir, "nocache"), "--no-cache")
    check(same_outputs(os.path.join(workdir, "cold"), os.path.join(workdir, "nocache")), "--no-cache gives identical outputs")

    r = subprocess.run([kvsim, "plan", ini, "--slo", "ttft_p99=2s,tpot_p99=100ms"], capture_output=True, text=True,
                       timeout=600)
    check(r.returncode == 0, f"plan exit {r.returncode}: {r.stderr.strip()}")
    check(f"{len(files)} of {len(files)} from the cache" in from_cache_line(r.stderr),
          f"plan reads the profiles run cached: {from_cache_line(r.stderr)}")
    return cache, files


def test_key_components(kvsim, workdir, cache, base_files):
    # A mask file read by a policy: one line per layer, a gate value per KV head (llama-3.1-8b: 32 x 8).
    rng = random.Random(7)
    mask = os.path.join(workdir, "mask.tsv")
    with open(mask, "w") as f:
        for _ in range(32):
            f.write("\t".join(f"{rng.random():.4f}" for _ in range(8)) + "\n")
    variants = {
        "seed": dict(seed=4),
        "policy_spec": dict(snapkv="snapkv(budget=0.3, prefill=chunk)"),
        "model_rope_theta": dict(model_extra="rope_theta = 600000"),
        "chunk": dict(chunk=256),
        "mask_file": dict(policy_extra="spec = duoattention(sparsity=0.5, mask=mask.tsv)"),
    }
    before = set(profile_files(cache))
    for name, changes in variants.items():
        ini = scenario(workdir, f"key_{name}.ini", cache, **changes)
        fresh = kvsim_run(kvsim, ini, os.path.join(workdir, f"key_{name}_fresh"), "--no-cache")
        r = kvsim_run(kvsim, ini, os.path.join(workdir, f"key_{name}"))
        after = set(profile_files(cache))
        check(len(after - before) > 0, f"{name}: a changed key writes new profiles")
        check(fresh.returncode == 0 and same_outputs(os.path.join(workdir, f"key_{name}_fresh"), os.path.join(workdir, f"key_{name}")),
              f"{name}: results equal a measurement without cache")
        before = after
    # The mask file's content, not only its name, is part of the key.
    with open(mask) as f:
        lines = f.readlines()
    lines[0] = "\t".join(["0.9999"] * 8) + "\n"
    with open(mask, "w") as f:
        f.writelines(lines)
    ini = os.path.join(workdir, "key_mask_file.ini")
    r = kvsim_run(kvsim, ini, os.path.join(workdir, "key_mask_changed"))
    after = set(profile_files(cache))
    check(len(after - before) > 0, f"changed mask file content misses the cache: {from_cache_line(r.stderr)}")


def test_corrupt_files(kvsim, workdir):
    cache = os.path.join(workdir, "cache_corrupt")
    ini = scenario(workdir, "corrupt.ini", cache)
    kvsim_run(kvsim, ini, os.path.join(workdir, "corrupt_cold"))
    files = [os.path.join(cache, "retention-profiles", f) for f in profile_files(cache)]
    originals = {}
    for f in files:
        with open(f, "rb") as h:
            originals[f] = h.read()
    # Truncated; a number altered (the file still parses, the checksum does not match); garbage;
    # empty. Pick files with knots so the alteration hits a number.
    with_knots = [f for f in files if b"\nknots 0\n" not in originals[f]]
    check(len(with_knots) >= 4, "enough profiles with knots to damage")
    damaged = with_knots[:4]
    with open(damaged[0], "wb") as h:
        h.write(originals[damaged[0]][: len(originals[damaged[0]]) // 2])
    text = originals[damaged[1]].decode()
    lines = text.split("\n")
    knot = next(i for i, l in enumerate(lines) if l.startswith("knots ")) + 1
    position, after = lines[knot].split(" ")
    lines[knot] = f"{position} {'1p+0' if after != '1p+0' else '1p+1'}"
    with open(damaged[1], "w") as h:
        h.write("\n".join(lines))
    with open(damaged[2], "wb") as h:
        h.write(b"\x00\xff garbage\n")
    open(damaged[3], "wb").close()
    r = kvsim_run(kvsim, ini, os.path.join(workdir, "corrupt_warm"), "--quiet")
    warnings = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    check(len(warnings) == 4, f"one warning line per damaged file, also under --quiet: {warnings}")
    check(same_outputs(os.path.join(workdir, "corrupt_cold"), os.path.join(workdir, "corrupt_warm")),
          "damaged cache files: outputs identical")
    for f in damaged:
        with open(f, "rb") as h:
            check(h.read() == originals[f], f"{os.path.basename(f)} measured again and rewritten whole")
    r = kvsim_run(kvsim, ini, os.path.join(workdir, "corrupt_again"))
    check("warning" not in r.stderr and f"{len(files)} of {len(files)} from the cache" in from_cache_line(r.stderr),
          "rewritten files are read back")


def test_nothing_written(kvsim, workdir):
    cache = os.path.join(workdir, "cache_off")
    ini = scenario(workdir, "off.ini", cache)
    kvsim_run(kvsim, ini, os.path.join(workdir, "off_flag"), "--no-cache")
    check(all_files(cache) == [], "--no-cache writes nothing")
    # cache_dir = none, and the default location (XDG_CACHE_HOME) untouched too.
    xdg = os.path.join(workdir, "xdg")
    os.makedirs(xdg)
    env = dict(os.environ, XDG_CACHE_HOME=xdg)
    ini = scenario(workdir, "none.ini", "none")
    kvsim_run(kvsim, ini, os.path.join(workdir, "off_none"), env=env)
    check(all_files(xdg) == [] and not os.path.exists(os.path.join(workdir, "none")), "cache_dir = none writes nothing")
    # Without cache_dir, the default is $XDG_CACHE_HOME/kvsim.
    with open(ini) as f:
        text = f.read().replace("cache_dir = none\n", "")
    with open(ini, "w") as f:
        f.write(text)
    kvsim_run(kvsim, ini, os.path.join(workdir, "default_dir"), env=env)
    check(len(profile_files(os.path.join(xdg, "kvsim"))) > 0, "default cache folder is $XDG_CACHE_HOME/kvsim")


def test_concurrent_writers(kvsim, workdir):
    cache = os.path.join(workdir, "cache_shared")
    ini = scenario(workdir, "shared.ini", cache)
    procs = [subprocess.Popen([kvsim, "run", ini, "--out", os.path.join(workdir, f"shared_{i}"), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for i, p in enumerate(procs):
        _, err = p.communicate(timeout=600)
        check(p.returncode == 0 and "warning" not in err, f"concurrent writer {i}: exit {p.returncode} {err.strip()}")
    check(same_outputs(os.path.join(workdir, "shared_0"), os.path.join(workdir, "shared_1")), "concurrent writers agree")
    check(all(".tmp." not in f for f in all_files(cache)), "no temporaries left")
    r = kvsim_run(kvsim, ini, os.path.join(workdir, "shared_after"))
    n = len(profile_files(cache))
    check("warning" not in r.stderr and f"{n} of {n} from the cache" in from_cache_line(r.stderr), "their files read back whole")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kvsim", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    kvsim = os.path.abspath(args.kvsim)
    workdir = os.path.abspath(args.workdir)
    cache, files = test_hit_identical(kvsim, workdir)
    test_key_components(kvsim, workdir, cache, files)
    test_corrupt_files(kvsim, workdir)
    test_nothing_written(kvsim, workdir)
    test_concurrent_writers(kvsim, workdir)
    return checks.summary("%d checks passed, %d failed")


if __name__ == "__main__":
    sys.exit(main())
