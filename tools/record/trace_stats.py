#!/usr/bin/env python3
"""Attention statistics of kvsim traces (HDF5 format v1), per head: how a recorded trace differs
from a synthetic one.

    /usr/bin/python3 tools/record/trace_stats.py TRACE.h5 [MORE.h5 ...] [--queries decode|window|all]
                     [--sinks 4] [--local 64] [--top 0.1] [--per-head] [--json OUT.json]

For every traced layer, query head and selected stored query at position t, with p the full causal
attention softmax(q k^T / sqrt(d)) over keys 0..t (GQA: query head h reads KV head h // group):
  entropy      -sum p log p (nats), and normalised by log(t+1) (1 = uniform, 0 = one key);
  sink mass    sum of p over the first --sinks positions;
  local mass   sum of p over the last --local positions (t-local, t];
  far mass     1 - sink - local: attention that neither StreamingLLM's sinks nor its window keep;
  top-k mass   sum of the largest ceil(--top * (t+1)) probabilities: the recall an oracle policy
               keeping that fraction would get;
  max prob     the largest single probability.
Each statistic is averaged over the selected queries of a head; the summary then gives the mean,
min and max over heads. --queries picks decode positions (>= n, default; what kvsim's fidelity
uses), the stored prompt window (< n), or all stored queries.
Only numpy and h5py (run with /usr/bin/python3).
"""
import argparse
import json
import math
import sys

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover
    sys.exit("trace_stats.py: h5py is not importable (install python3-h5py; use /usr/bin/python3)")

STATS = ("entropy", "norm_entropy", "sink_mass", "local_mass", "far_mass", "top_mass", "max_prob")


def text(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        return text(v[()])
    return str(v)


def head_stats(q, keys, positions, sinks, local, top):
    """q [Tq, d], keys [T, d] of one (query head, KV head); returns {stat: mean over queries}."""
    d = q.shape[-1]
    logits = (q.astype(np.float64) @ keys.astype(np.float64).T) / math.sqrt(d)
    T = keys.shape[0]
    out = {s: [] for s in STATS}
    for row, t in enumerate(positions):
        lg = logits[row, :t + 1]
        p = np.exp(lg - lg.max())
        p /= p.sum()
        nz = p[p > 0]
        h = float(-(nz * np.log(nz)).sum())
        out["entropy"].append(h)
        out["norm_entropy"].append(h / math.log(t + 1) if t > 0 else 0.0)
        sink = float(p[:min(sinks, t + 1)].sum())
        loc_begin = max(min(sinks, t + 1), t + 1 - local)
        loc = float(p[loc_begin:].sum())
        out["sink_mass"].append(sink)
        out["local_mass"].append(loc)
        out["far_mass"].append(max(0.0, 1.0 - sink - loc))
        k = max(1, math.ceil(top * (t + 1)))
        out["top_mass"].append(float(np.sort(p)[-k:].sum()))
        out["max_prob"].append(float(p.max()))
    return {s: float(np.mean(v)) if v else float("nan") for s, v in out.items()}


def trace_stats(path, request=None, queries="decode", sinks=4, local=64, top=0.1, layers=None):
    with h5py.File(path, "r") as f:
        a = f.attrs
        hq, hkv = int(a["num_q_heads"]), int(a["num_kv_heads"])
        group = hq // hkv
        req_id = request or next(iter(f["requests"]))
        req = f["requests"][req_id]
        n = int(req.attrs["prompt_tokens"])
        m = int(req.attrs["generated_tokens"])
        traced = [int(x) for x in a["traced_layers"]]
        result = {"file": path, "model": text(a["model"]), "source": text(a["source"]), "request": req_id,
                  "prompt_tokens": n, "generated_tokens": m, "num_q_heads": hq, "num_kv_heads": hkv,
                  "head_dim": int(a["head_dim"]), "queries": queries, "sinks": sinks, "local": local, "top": top,
                  "heads": []}
        for L in traced:
            if layers and L not in layers:
                continue
            g = req["layer_%d" % L]
            keys = g["keys"][...]
            qs = g["queries"][...]
            pos = g["query_positions"][...]
            sel = {"decode": pos >= n, "window": pos < n, "all": np.ones(len(pos), bool)}[queries]
            archetypes = [text(x) for x in g.attrs["head_archetypes"]] if "head_archetypes" in g.attrs else None
            for h in range(hq):
                kv = h // group
                st = head_stats(qs[h][sel], keys[kv], pos[sel], sinks, local, top)
                st.update(layer=L, q_head=h, kv_head=kv)
                if archetypes:
                    st["archetype"] = archetypes[kv]
                result["heads"].append(st)
    summary = {}
    for s in STATS:
        v = np.array([h[s] for h in result["heads"]])
        summary[s] = {"mean": float(np.nanmean(v)), "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
    result["summary"] = summary
    return result


def print_result(r, per_head):
    print("%s: %s, %s, prompt %d + generated %d, %d q / %d kv heads, queries=%s (sinks %d, local %d, top %.0f%%)"
          % (r["file"], r["model"], r["source"], r["prompt_tokens"], r["generated_tokens"], r["num_q_heads"],
             r["num_kv_heads"], r["queries"], r["sinks"], r["local"], 100 * r["top"]))
    if per_head:
        print("  layer head kv  entropy  norm_H  sink   local  far    top%   maxp  archetype")
        for h in r["heads"]:
            print("  %5d %4d %2d  %7.3f  %6.3f  %5.3f  %5.3f  %5.3f  %5.3f  %5.3f  %s"
                  % (h["layer"], h["q_head"], h["kv_head"], h["entropy"], h["norm_entropy"], h["sink_mass"],
                     h["local_mass"], h["far_mass"], h["top_mass"], h["max_prob"], h.get("archetype", "")))
    print("  %-13s %8s %8s %8s" % ("over heads", "mean", "min", "max"))
    for s in STATS:
        v = r["summary"][s]
        print("  %-13s %8.3f %8.3f %8.3f" % (s, v["mean"], v["min"], v["max"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--request", help="request id (default: the first)")
    ap.add_argument("--queries", choices=("decode", "window", "all"), default="decode")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--local", type=int, default=64)
    ap.add_argument("--top", type=float, default=0.1)
    ap.add_argument("--layers", help="comma-separated subset of the traced layers")
    ap.add_argument("--per-head", action="store_true")
    ap.add_argument("--json", help="write all results to this JSON file")
    args = ap.parse_args(argv)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    results = []
    for path in args.traces:
        try:
            r = trace_stats(path, args.request, args.queries, args.sinks, args.local, args.top, layers)
        except (OSError, KeyError) as e:
            print("trace_stats.py: %s: %s" % (path, e), file=sys.stderr)
            return 2
        print_result(r, args.per_head)
        results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
