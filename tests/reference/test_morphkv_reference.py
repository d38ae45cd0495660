#!/usr/bin/python3
"""morphkv (MorphKV; ghadiaravi13/MorphKV morphkv/models/patch_llama.py, morphkv_mask): kvsim's kept
masks against a float64 numpy reference on synthetic MHA and GQA traces, post-fill, per chunk and
at every decode step.

Reference (from morphkv_mask): the last window + 1 resident entries (the window and the current
token) are kept; the queries of the window (the last window + 1 positions but the current one)
score the others: logits q.k/sqrt(d), for GQA summed over the group's query heads BEFORE the
softmax, softmax over the scored entries, then max (or sum) over the window queries; the top
entries fill the capacity (DESIGN.md §4, window + 1 as the protected count)."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, replay, run_reference_test  # noqa: E402


class Params:
    def __init__(self, spec):
        name, args = kvref.parse_spec(spec)
        assert name == "morphkv", spec
        self.window = int(args.pop("window", 32))
        self.agg = args.pop("aggregate", "max")
        args.setdefault("decode", "step")
        self.budget = Spec(args, self.window + 1)
        assert not args, args


def head_scores(pr, layer, h, resident, G):
    d = layer["keys"].shape[2]
    p = len(resident) - (pr.window + 1)
    K = layer["keys"][h][resident[:p]]
    rows = [layer["qpos"][int(t)] for t in resident[p:-1]]
    logits = sum(layer["queries"][g][rows] @ K.T for g in range(h * G, (h + 1) * G)) / math.sqrt(d)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e.max(axis=0) if pr.agg == "max" else e.sum(axis=0)


def make_policy(spec, G):
    pr = Params(spec)
    return pr, lambda layer, evicting, cap: {h: head_scores(pr, layer, h, r, G) for h, r in evicting.items()}


def kept(spec):
    k = np.array([[2.3, 2.3], [3, -3], [-3, 2.8], [0, 0], [0, 0], [0, 0], [0, 0]])
    q = np.zeros((7, 2))
    q[4], q[5], q[6] = [1, 0], [0, 1], [5, 5]
    layer = dict(keys=k[None], values=k[None], queries=q[None], qpos={t: t for t in range(7)})
    pr, scorer = make_policy(spec, 1)
    masks, problems, _ = replay(pr.budget, 0, pr.window + 1, scorer, layer, 7, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # The hand cases of tests/policies/morphkv_test.cpp.
    for spec, want in [("morphkv(budget=4, window=2)", [1, 4, 5, 6]),
                       ("morphkv(budget=4, window=2, aggregate=sum)", [0, 4, 5, 6]),
                       ("morphkv(budget=5, window=2)", [1, 2, 4, 5, 6]),
                       ("morphkv(budget=5, window=2, aggregate=sum)", [0, 1, 4, 5, 6]),
                       ("morphkv(budget=3, window=1)", [2, 5, 6])]:
        ck.eq(kept(spec), want, "hand: " + spec)
    # GQA: the group's logits are summed before the softmax (not the probabilities averaged).
    K = np.array([[1.0, 0], [0, 1.0], [0, 0], [0, 0]])
    Q = np.zeros((2, 4, 2))
    Q[0, 2], Q[1, 2] = [4, 0], [0, 3]
    layer = dict(keys=K[None], queries=Q, qpos={t: t for t in range(4)})
    s = head_scores(Params("morphkv(window=1)"), layer, 0, np.arange(4), 2)
    z = np.array([4, 3]) / math.sqrt(2)
    ck.check(np.allclose(s, np.exp(z) / np.exp(z).sum()), "GQA logits summed before softmax", s.tolist())


MODELS = [("mha", 2, 2, 16, 61), ("gqa4", 8, 2, 16, 62)]
N, M = 320, 12
SCENARIOS = [
    ("unchunked", None, ["morphkv(budget=0.2, window=8)", "morphkv(budget=0.3, window=4, aggregate=sum, decode=every:3)",
                         "morphkv(budget=60, window=6, decode=none)"]),
    ("chunk96", 96, ["morphkv(budget=0.25, window=8, prefill=chunk, decode=none)",
                     "morphkv(budget=0.2, window=3, prefill=chunk)", "morphkv(budget=0.3, window=8, aggregate=sum)"]),
]


def reference_policy(spec, model, chunk):
    pr, scorer = make_policy(spec, model.group)
    return pr.budget, 0, pr.window + 1, scorer, 1e-4


def run(ck, args):
    run_reference_test(ck, args, "morphkv", MODELS, SCENARIOS, reference_policy, N, M, synth_args=["--query-window", 16, "--chunk-tokens", 96, "--window", 9],
                       with_model=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
