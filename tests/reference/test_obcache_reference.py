#!/usr/bin/python3
"""obcache (OBCache saliency; formulas from MalachiAjayi/kv-cache-pruner kv_cache_pruner/cache_utils.py,
KVScoreTracker.v_update / k_update with p = 2): kvsim's kept masks against a float64 numpy reference
on synthetic MHA and GQA traces, post-fill, per chunk and per decode step.

Reference (from the derivative's tensor formulas, not kvsim's C++): the window queries (the last
`window` resident positions) attend causally with A = softmax(qK) over the resident entries, qK =
q.k/sqrt(d), O = A V; S_v = sum_i A^2 * ||v||^2 (vnorm; else A^2); S_key = sum_i (A qK)^2 *
(||v||^2 + ||o||^2 - 2 o.v); S_cross = sum_i 2 A^2 qK (||v||^2 - o.v); value = S_v, key = S_key,
both = S_v + S_key + S_cross; mean over the GQA group; sinks and window kept, the top of the rest
fill the capacity (DESIGN.md §4, window + sinks as the protected count)."""
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
        assert name == "obcache", spec
        self.window = int(args.pop("window", 32))
        self.sinks = int(args.pop("sinks", 0))
        self.sal = args.pop("saliency", "both")
        self.vnorm = args.pop("vnorm", "yes") == "yes"
        self.budget = Spec(args, self.window + self.sinks)
        assert not args, args


def head_scores(pr, layer, h, resident, G):
    d = layer["keys"].shape[2]
    w = pr.window
    K = layer["keys"][h][resident]
    V = layer["values"][h][resident]
    L = len(resident)
    p = L - w
    causal = np.arange(L)[None, :] > (p + np.arange(w))[:, None]     # window query i sees entries <= p + i
    total = np.zeros(p)
    for g in range(h * G, (h + 1) * G):
        Q = layer["queries"][g][[layer["qpos"][int(t)] for t in resident[p:]]]
        qK = Q @ K.T / math.sqrt(d)
        x = np.where(causal, -np.inf, qK)
        A = np.exp(x - x.max(axis=1, keepdims=True))
        A /= A.sum(axis=1, keepdims=True)
        O = A @ V                                                    # [w, d]
        Vn = (V ** 2).sum(axis=1)[None, :]
        VO = O @ V.T                                                 # [w, L]
        S_v = (A ** 2 * (Vn if pr.vnorm else 1.0)).sum(axis=0)
        S_key = ((A * qK) ** 2 * (Vn + (O ** 2).sum(axis=1)[:, None] - 2 * VO)).sum(axis=0)
        S_cross = (2 * A ** 2 * qK * (Vn - VO)).sum(axis=0)
        s = {"value": S_v, "key": S_key, "both": S_v + S_key + S_cross}[pr.sal]
        total += s[:p]
    return (total / G)[pr.sinks if pr.sinks < p else p:]


def make_policy(spec, G):
    pr = Params(spec)
    return pr, lambda layer, evicting, cap: {h: head_scores(pr, layer, h, r, G) for h, r in evicting.items()}


def kept(spec):
    k = np.log(np.array([[1.0], [2], [4], [1]]))
    layer = dict(keys=k[None], values=np.array([[[3.0], [2], [.5], [1]]]), queries=np.ones((1, 4, 1)),
                 qpos={t: t for t in range(4)})
    pr, scorer = make_policy(spec, 1)
    masks, problems, _ = replay(pr.budget, pr.sinks, pr.window, scorer, layer, 4, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # The hand cases of tests/policies/obcache_test.cpp.
    for spec, want in [("obcache(budget=2, window=1, saliency=value)", [1, 3]),
                       ("obcache(budget=2, window=1, saliency=value, vnorm=no)", [2, 3]),
                       ("obcache(budget=2, window=1, saliency=key)", [2, 3]),
                       ("obcache(budget=3, window=1, saliency=key)", [1, 2, 3]),
                       ("obcache(budget=2, window=1)", [1, 3]),
                       ("obcache(budget=3, window=1)", [0, 1, 3]),
                       ("obcache(budget=3, window=1, sinks=1, saliency=key)", [0, 2, 3])]:
        ck.eq(kept(spec), want, "hand: " + spec)
    # The expanded ||v - o||^2 of S_key against the direct norm.
    rng = np.random.default_rng(7)
    V = rng.normal(size=(5, 3))
    o = rng.normal(size=3)
    direct = ((V - o) ** 2).sum(axis=1)
    ck.check(np.allclose(direct, (V ** 2).sum(axis=1) + (o ** 2).sum() - 2 * V @ o), "||v - o||^2 expansion")


MODELS = [("mha", 2, 2, 16, 71), ("gqa4", 8, 2, 16, 72)]
N, M = 320, 8
SCENARIOS = [
    ("unchunked", None, ["obcache(budget=0.2, window=8)", "obcache(budget=0.3, window=8, saliency=key, decode=every:3)",
                         "obcache(budget=60, window=6, sinks=2, saliency=value, vnorm=no, decode=step)"]),
    ("chunk96", 96, ["obcache(budget=0.25, window=8, prefill=chunk)",
                     "obcache(budget=0.2, window=4, sinks=1, saliency=value, prefill=chunk, decode=step)",
                     "obcache(budget=0.3, window=8, saliency=key)"]),
]


def reference_policy(spec, model, chunk):
    pr, scorer = make_policy(spec, model.group)
    return pr.budget, pr.sinks, pr.window, scorer, 1e-4


def run(ck, args):
    run_reference_test(ck, args, "obcache", MODELS, SCENARIOS, reference_policy, N, M, synth_args=["--query-window", 16, "--chunk-tokens", 96, "--window", 8],
                       with_model=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
