#!/usr/bin/env python3
"""Recorded vs synthetic: runs the same policies on a recorded trace and on a synthetic trace of
the same shape, and prints the ranking table and the attention statistics of both.

    /usr/bin/python3 tools/record/compare_synthetic.py --kvsim build/tools/kvsim/kvsim \
        [--trace tests/data/recorded_tiny.h5] [--budgets 0.1,0.2,0.5] [--workdir /tmp/kvsim-compare] \
        [--json OUT.json]

The synthetic trace comes from `kvsim synth` with a model .ini of the recorded model's shape
(layers, query/KV heads, head_dim, rope_theta), the same prompt/generated lengths, traced layers,
stored query window and (if the recording has them) as many recon_queries; everything else is the
synthesiser's defaults (seed 1, 2 needles of 16 tokens). Policies at each budget b, matched in
kept entries: snapkv(budget=b, window=32), kvzip(budget=b) (when registered and the recording has
recon_queries), and streaming(sinks=4, window=round(b*n)+28), i.e. the same count as SnapKV's
round(b*n) + 32. Statistics: tools/record/trace_stats.py on the decode queries.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import trace_stats  # noqa: E402

import h5py  # noqa: E402


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("compare_synthetic.py: %s failed (status %d): %s" % (" ".join(map(str, cmd)), p.returncode,
                                                                       (p.stderr or p.stdout).strip()[-500:]))
    return p.stdout


def shape_of(path):
    with h5py.File(path, "r") as f:
        a = f.attrs
        req = f["requests"][next(iter(f["requests"]))]
        layers = [int(x) for x in a["traced_layers"]]
        g = req["layer_%d" % layers[0]]
        pos = g["query_positions"][...]
        n = int(req.attrs["prompt_tokens"])
        return {"num_layers": int(a["num_layers"]), "num_q_heads": int(a["num_q_heads"]),
                "num_kv_heads": int(a["num_kv_heads"]), "head_dim": int(a["head_dim"]),
                "rope_theta": float(a["rope_theta"]), "n": n, "m": int(req.attrs["generated_tokens"]),
                "layers": layers, "window": int((pos < n).sum()),
                "recon": int(g["recon_queries"].shape[1]) if "recon_queries" in g else 0,
                "recon_passes": "recon_passes" in g,
                "model": trace_stats.text(a["model"])}


def write_scenario(path, trace, specs):
    with open(path, "w") as f:
        f.write("[workload]\ntrace = %s\n[policy]\n" % os.path.abspath(trace))
        for s in specs:
            f.write("spec = %s\n" % s)
        f.write("[sim]\nthreads = 0\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--trace", default=os.path.join(ROOT, "tests", "data", "recorded_tiny.h5"))
    ap.add_argument("--budgets", default="0.1,0.2,0.5")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/kvsim-compare")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    s = shape_of(args.trace)
    model_ini = os.path.join(args.workdir, "model.ini")
    with open(model_ini, "w") as f:
        f.write("[model]\nname = %s-shape\nnum_layers = %d\nnum_q_heads = %d\nnum_kv_heads = %d\nhead_dim = %d\n"
                "kv_bits = 16\nrope_theta = %g\n" % (s["model"], s["num_layers"], s["num_q_heads"], s["num_kv_heads"],
                                                     s["head_dim"], s["rope_theta"]))
    synth = os.path.join(args.workdir, "synthetic.h5")
    cmd = [args.kvsim, "synth", "--model", model_ini, "--prompt-tokens", s["n"], "--generated-tokens", s["m"],
           "--layers", ",".join(map(str, s["layers"])), "--query-window", s["window"], "--seed", args.seed,
           "--out", synth]
    if s["recon"]:
        cmd += ["--recon-queries", s["recon"]]
    run(cmd)
    have_kvzip = "kvzip:" in run([args.kvsim, "policies"]) and s["recon"] > 0
    w = min(32, s["window"])  # SnapKV's observation window must be stored
    specs = []
    for b in [float(x) for x in args.budgets.split(",")]:
        specs.append("snapkv(budget=%g, window=%d)" % (b, w))
        if have_kvzip:
            # Matched kept count (alloc=layer keeps kvsim's capacity); a format 1.0 recording has no
            # recon passes, so both traces score with the whole-prompt reading.
            specs.append("kvzip(budget=%g, alloc=layer%s)" % (b, "" if s["recon_passes"] else ", scoring=whole"))
        specs.append("streaming(sinks=4, window=%d)" % (int(round(b * s["n"])) + w - 4))
    results = {}
    for tag, trace in (("recorded", args.trace), ("synthetic", synth)):
        ini = os.path.join(args.workdir, tag + ".ini")
        write_scenario(ini, trace, specs)
        out = os.path.join(args.workdir, tag)
        run([args.kvsim, "run", ini, "--out", out])
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        stats = trace_stats.trace_stats(trace)
        results[tag] = {"policies": [{"spec": p["spec"], "footprint": p["footprint_normalized"],
                                      "recall": p["attention_recall"]["mean"], "recall_p5": p["attention_recall"]["p5"],
                                      "output_error": p["output_error"]["mean"], "output_error_p95": p["output_error"]["p95"]}
                                     for p in summary["policies"]],
                        "stats": stats["summary"], "heads": stats["heads"]}

    print("shape: %s, %d layers (%s traced), %d q / %d kv heads, head_dim %d, prompt %d + generated %d"
          % (s["model"], s["num_layers"], ",".join(map(str, s["layers"])), s["num_q_heads"], s["num_kv_heads"],
             s["head_dim"], s["n"], s["m"]))
    for tag in ("recorded", "synthetic"):
        print("\n%s trace" % tag)
        print("| policy | footprint | recall | recall p5 | output error | out err p95 |")
        print("|---|---|---|---|---|---|")
        for p in results[tag]["policies"]:
            print("| %s | %.3f | %.3f | %.3f | %.3f | %.3f |" % (p["spec"], p["footprint"], p["recall"], p["recall_p5"],
                                                               p["output_error"], p["output_error_p95"]))
    print("\nranking by recall (best first) at each budget")
    print("| budget | recorded | synthetic |")
    print("|---|---|---|")
    for b in [float(x) for x in args.budgets.split(",")]:
        row = []
        for tag in ("recorded", "synthetic"):
            pols = [p for p in results[tag]["policies"] if p["spec"] != "full" and
                    (("budget=%g," % b) in p["spec"] or ("window=%d," % (int(round(b * s["n"])) + w - 4)) in p["spec"])]
            pols.sort(key=lambda p: -p["recall"])
            row.append(" > ".join("%s %.2f" % (p["spec"].split("(")[0], p["recall"]) for p in pols))
        print("| %g | %s | %s |" % (b, row[0], row[1]))
    print("\nattention statistics over heads (decode queries; mean [min, max])")
    print("| statistic | recorded | synthetic |")
    print("|---|---|---|")
    for st in trace_stats.STATS:
        cells = ["%.3f [%.3f, %.3f]" % (results[t]["stats"][st]["mean"], results[t]["stats"][st]["min"],
                                        results[t]["stats"][st]["max"]) for t in ("recorded", "synthetic")]
        print("| %s | %s | %s |" % (st, cells[0], cells[1]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": s, "results": results}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
