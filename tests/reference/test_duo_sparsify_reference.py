#!/usr/bin/python3
"""duoattention without a mask file on presets with a published DuoAttention pattern (issue 19)
against the original's sparsify rule (ref_duo_sparsify.py: duo_attn/utils.py sparsify_attention_heads,
mit-han-lab/duo-attention commit fe93c314ae87306ef6629dc16713250b4718ffe7, seed 42 as in
eval/LongBench/pred.py).

Self-tests: numpy's legacy MT19937 stream after seed(42) (the tie-breaking noise kvsim reproduces),
the count N - ceil((N - 1) s) of the quantile rule, and that the bundled maps hold exact ties that
straddle the threshold at some tested sparsity (so the tie-breaking is exercised, not bypassed).

Then, for llama-3.1-8b, mistral-7b-v0.3 and a model .ini named after the Llama-3-8B-Gradient map
(all 32 layers traced, n=520, m=2, unchunked): `kvsim run --save-kept` with duoattention at several
sparsities; a head is full when it kept every position; the full heads must equal the reference's.

usage: /usr/bin/python3 tests/reference/test_duo_sparsify_reference.py --kvsim BIN --workdir DIR
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_duo_sparsify import duo_full_heads, load_gates  # noqa: E402

CONFIGS = os.environ.get("KVSIM_CONFIG_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
MAPS = {"llama-3.1-8b": "llama-3.1-8b", "mistral-7b-v0.3": "mistral-7b-v0.3",
        "llama-3-8b-instruct-gradient-1048k": None}  # None: no preset, a model .ini of that name
SPARSITIES = [0.5, 0.25, 0.75, 0.9, 0.3]
N, M, SINKS, WINDOW = 520, 2, 4, 16


def map_path(name):
    return os.path.join(CONFIGS, "head_maps", name + ".tsv")


def self_tests(ck):
    np.random.seed(42)
    ck.eq(np.random.random_sample(), 0.3745401188473625, "numpy legacy MT19937 seed 42: first sample")
    for name in MAPS:
        gates = load_gates(map_path(name))
        ck.eq(gates.shape, (32, 8), name + ": 32 layers x 8 KV heads")
        straddled = 0
        for s in SPARSITIES:
            full = duo_full_heads(gates, s)
            ck.eq(int(full.sum()), 256 - math.ceil(255 * s), "%s s=%g: N - ceil((N-1)s) full heads" % (name, s))
            boundary = np.sort(gates.ravel())[::-1][255 - math.ceil(255 * s)]
            tied = gates == boundary
            straddled += bool((full & tied).any() and (~full & tied).any())
        ck.check(straddled > 0, name + ": a tie straddles the threshold at some sparsity (tie-breaking exercised)")


def run(ck, args):
    wd = args.workdir
    for name, preset in MAPS.items():
        tag = name.replace(".", "_")
        model = preset
        if preset is None:
            model = kvref.write_model_ini(os.path.join(wd, name + "-model.ini"), name, 32, 32, 8, 128, rope_theta=500000)
        specs = ["duoattention(sparsity=%g, sinks=%d, window=%d)" % (s, SINKS, WINDOW) for s in SPARSITIES]
        scen = kvref.write_ini(os.path.join(wd, tag + ".ini"),
                               [("model", [("preset", model)]),
                                ("workload", [("prompt_tokens", N), ("generated_tokens", M), ("trace", "synthetic"),
                                              ("seed", 1), ("traced_layers", "all")]),
                                ("policy", [("spec", s) for s in specs]), ("sim", [("threads", 2)])])
        out, kept = os.path.join(wd, "out_" + tag), os.path.join(wd, tag + "_kept.h5")
        kvref.fresh(out, kept)
        ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", out, "--save-kept", kept, "--quiet"], timeout=300)
        if not ck.check(ok, name + ": kvsim run", msg):
            continue
        gates = load_gates(map_path(name))
        by_spec = {spec: layers for spec, layers in kvref.read_kept(kept).values()}
        for s, spec in zip(SPARSITIES, specs):
            layers = next((v for k, v in by_spec.items() if k and k.startswith(spec[:-1])), None)
            if not ck.check(layers is not None, "%s %s: in the kept file" % (name, spec), sorted(by_spec)):
                continue
            got = np.array([layers[layer].all(axis=1) for layer in range(32)])
            want = duo_full_heads(gates, s)
            ck.check(np.array_equal(got, want), "%s %s: full heads == sparsify_attention_heads" % (name, spec),
                     "differ at (layer, head) %s" % np.argwhere(got != want).tolist())
        print("%s: kvsim %s" % (name, msg), flush=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
