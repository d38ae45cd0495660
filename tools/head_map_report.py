#!/usr/bin/python3
"""Per-layer retrieval-head share of synthetic traces against a measured head map (docs/head-maps.md).

For each layer: the mean DuoAttention gate value of the map, the share of its KV heads that
DuoAttention's own rule keeps full (sparsify_attention_heads at --sparsity with seed 42, the
verbatim copy in tests/reference/ref_duo_sparsify.py), and the share of `retrieval` heads in each
given trace (the per-layer `head_archetypes` attribute that kvsim synth writes).

usage: /usr/bin/python3 tools/head_map_report.py --map configs/head_maps/llama-3.1-8b.tsv \\
           --trace map=synth-map.h5 --trace depth-mix=synth-depth.h5
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from ref_duo_sparsify import duo_full_heads, load_gates  # noqa: E402


def retrieval_share(path):
    """{layer: share of retrieval heads} from a synthetic trace's head_archetypes."""
    out = {}
    with h5py.File(path, "r") as f:
        req = f["requests"]["0"]
        for name in req:
            if name.startswith("layer_"):
                names = [a.decode() if isinstance(a, bytes) else str(a) for a in req[name].attrs["head_archetypes"]]
                out[int(name[6:])] = sum(a == "retrieval" for a in names) / len(names)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", required=True)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--trace", action="append", default=[], help="LABEL=FILE.h5 (repeatable)")
    args = p.parse_args()
    gates = load_gates(args.map)
    full = duo_full_heads(gates, args.sparsity)
    traces = [(t.split("=", 1)[0], retrieval_share(t.split("=", 1)[1])) for t in args.trace]
    print("| layer | mean gate | full at s=%g | %s |" % (args.sparsity, " | ".join("retrieval, %s" % l for l, _ in traces)))
    print("|---:|---:|---:|" + "---:|" * len(traces))
    for layer in range(gates.shape[0]):
        cells = ["%.2f" % shares[layer] if layer in shares else "" for _, shares in traces]
        print("| %d | %.2f | %.2f | %s |" % (layer, gates[layer].mean(), full[layer].mean(), " | ".join(cells)))
    cells = ["%.3f" % np.mean(list(shares.values())) for _, shares in traces]
    print("| all | %.2f | %.3f | %s |" % (gates.mean(), full.mean(), " | ".join(cells)))


if __name__ == "__main__":
    main()
