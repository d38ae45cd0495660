#!/usr/bin/env python3
"""l2norm (Knorm; Devoto et al. 2024, arXiv 2406.11430; NVIDIA/kvpress knorm_press.py): kvsim's kept
masks against a float64 numpy reference on synthetic MHA and GQA traces, evicting post-fill, per
prefill chunk and per decode step. Score = -||k_t||_2 per KV head (policy-notes.md "Knorm");
optional protected sinks/window (kvsim parameters; kvpress has none)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, replay, run_reference_test  # noqa: E402


def make_policy(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "l2norm"
    sinks, window = int(args.pop("sinks", 0)), int(args.pop("window", 0))
    pol = Spec(args, sinks + window)
    assert not args, args

    def scorer(layer, evicting, cap):
        out = {}
        for h, r in evicting.items():
            s = min(sinks, len(r))
            rr = min(window, len(r) - s)
            out[h] = -np.linalg.norm(layer["keys"][h][r[s:len(r) - rr]], axis=1)
        return out

    return pol, sinks, window, scorer, 1e-5


def hand_layer(rows_per_head):
    keys = np.array(rows_per_head, dtype=np.float64)
    return dict(keys=keys, values=keys, queries=None, qpos={})


def kept(spec, layer, n, m=0, chunk=None):
    pol, sinks, recent, scorer, _ = make_policy(spec)
    masks, problems, _ = replay(pol, sinks, recent, scorer, layer, n, m, chunk, layer["keys"].shape[0])
    assert not problems
    return [np.nonzero(mk)[0].tolist() for mk in masks]


def self_tests(ck):
    # Same hand case as tests/policies/l2norm_test.cpp: norms [5, 1, 2, .5, 3, 1.5]; head 1 reversed.
    k0 = [[3, 4], [1, 0], [0, 2], [0, 0.5], [3, 0], [0, 1.5]]
    lay = hand_layer([k0, k0[::-1]])
    ck.eq(kept("l2norm(budget=3)", lay, 6), [[1, 3, 5], [0, 2, 4]], "hand: lowest three norms per head")
    ck.eq(kept("l2norm(budget=3, sinks=1, window=1)", lay, 6), [[0, 3, 5], [0, 2, 5]], "hand: sinks + window")
    ck.eq(kept("l2norm(budget=0.25, sinks=1, window=1)", lay, 6)[0], [0, 1, 3, 5], "hand: round(1.5)=2 + 2")
    # policy-notes.md example: norms [3,1,2,5], r=0.5 -> keep t1, t2.
    ck.eq(kept("l2norm(budget=0.5)", hand_layer([[[3, 0], [0, 1], [2, 0], [0, 5]]]), 4), [[1, 2]], "hand: notes example")
    # Chunked by hand: chunks [0,3),[3,6), budget 0.34 -> caps 1 then 2; norms [5,1,2 | .5,3,1.5]:
    # chunk 0 keeps t1; chunk 1 keeps 2 of {1, 3, 4, 5}: t3 (.5), t1 (1).
    ck.eq(kept("l2norm(budget=0.34, prefill=chunk)", hand_layer([k0]), 6, chunk=3), [[1, 3]], "hand: chunked")
    # Decode step eviction with a window of 1: n=4 (norms 5,1,2,.5), m=2 (3, 1.5), B=2:
    # post-fill keeps t3 (window) + t1; step 4 keeps t4 (window) + t3; step 5 keeps t5 + t3.
    ck.eq(kept("l2norm(budget=2, window=1, decode=step)", hand_layer([k0]), 4, m=2), [[3, 5]], "hand: decode steps")


MODELS = [("mha", 2, 2, 16, 21), ("gqa4", 8, 2, 16, 22)]
N, M = 400, 6
SCENARIOS = [
    ("unchunked", None, ["l2norm(budget=0.2)", "l2norm(budget=0.3, sinks=4, window=8)", "l2norm(budget=100)",
                         "l2norm(budget=0.25, window=4, decode=step)", "l2norm(budget=0.1, decode=every:3)"]),
    ("chunk96", 96, ["l2norm(budget=0.25, prefill=chunk)", "l2norm(budget=0.2, sinks=2, window=16, prefill=chunk)",
                     "l2norm(budget=120, window=8, prefill=chunk, decode=step)", "l2norm(budget=0.3)"]),
]


def run(ck, args):
    run_reference_test(ck, args, "l2norm", MODELS, SCENARIOS, make_policy, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
