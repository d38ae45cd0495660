#!/usr/bin/python3
"""rkv (R-KV; Zefan-Cai/R-KV rkv/compression/r1_kv.py R1KV, rkv/utils.py compute_attention_scores and
cal_similarity): kvsim's kept masks against a float64 numpy reference on synthetic MHA and GQA
traces, post-fill, per chunk, every K decode steps and R-KV's own step_length rule (decode=length:K:
compress in the decode step whose token lands at a multiple of K; rkv/modeling.py).

Reference (written from the R-KV sources, with its full L x L similarity matrix, not kvsim's
rank-one shortcut): the last `window` resident entries are kept; their queries' logits q.k/sqrt(d)
over the other entries are pooled over the GQA group (max or mean), softmaxed over those entries,
averaged over the window and max-pooled (kernel); C = cosine similarities of all resident keys
(k / (||k|| + 1e-8)), diagonal 0, in every row the last column with C > threshold (else column 0) set
to 0; redundancy = softmax(column means of C); final = lambda * attention - (1 - lambda) * redundancy;
the top of the non-window entries fill the capacity (DESIGN.md §4, the window as protected count)."""
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
        assert name == "rkv", spec
        self.window = int(args.pop("window", 8))
        self.kernel = int(args.pop("kernel", 7))
        self.lam = float(args.pop("mix_lambda", 0.07))
        self.thr = float(args.pop("threshold", 0.5))
        self.pool = args.pop("group_pooling", "max")
        args.setdefault("decode", "length:128")   # run_math.py: divide_method=step_length, divide_length=128
        self.budget = Spec(args, self.window)
        assert not args, args


def redundancy(K, thr):
    kn = K / (np.linalg.norm(K, axis=1, keepdims=True) + 1e-8)
    C = kn @ kn.T
    L = len(K)
    np.fill_diagonal(C, 0.0)
    idx = np.where(C > thr, np.arange(L)[None, :], 0)
    C[np.arange(L), idx.max(axis=1)] = 0.0
    col = C.mean(axis=0)
    e = np.exp(col - col.max())
    return e / e.sum()


def head_scores(pr, layer, h, resident, G):
    d = layer["keys"].shape[2]
    w = pr.window
    K = layer["keys"][h][resident]
    nonwin = len(resident) - w
    logits = []
    for g in range(h * G, (h + 1) * G):
        Q = layer["queries"][g][[layer["qpos"][int(t)] for t in resident[nonwin:]]]
        logits.append(Q @ K[:nonwin].T / math.sqrt(d))
    x = np.max(logits, axis=0) if pr.pool == "max" else np.mean(logits, axis=0)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    att = kvref.pool1d(p.mean(axis=0), pr.kernel, "max")
    return pr.lam * att - (1 - pr.lam) * redundancy(K, pr.thr)[:nonwin]


def make_policy(spec, G):
    pr = Params(spec)

    def scorer(layer, evicting, cap):
        return {h: head_scores(pr, layer, h, r, G) for h, r in evicting.items()}

    return pr, scorer


def kept(spec):
    k = np.array([[1, 0], [1, .1], [0, 1], [-1, .2], [.1, 1]], float)
    q = np.zeros((5, 2))
    q[4] = [0, 3]
    layer = dict(keys=k[None], values=k[None], queries=q[None], qpos={t: t for t in range(5)})
    pr, scorer = make_policy(spec, 1)
    masks, problems, _ = replay(pr.budget, 0, pr.window, scorer, layer, 5, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # The hand cases of tests/policies/rkv_test.cpp.
    ck.eq(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=1)"), [2, 3, 4], "hand: importance only")
    ck.eq(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=0)"), [1, 3, 4], "hand: redundancy only")
    ck.eq(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=0, threshold=1)"), [0, 3, 4], "hand: no duplicates")
    # Column means against a loop over the matrix entries.
    rng = np.random.default_rng(5)
    K = rng.normal(size=(9, 3))
    K[5] = K[2] * 2 + 0.01
    kn = [k / (np.linalg.norm(k) + 1e-8) for k in K]
    C = [[0.0 if i == j else float(kn[i] @ kn[j]) for j in range(9)] for i in range(9)]
    for i in range(9):
        hits = [j for j in range(9) if C[i][j] > 0.5]
        C[i][max(hits) if hits else 0] = 0.0
    col = [sum(C[i][j] for i in range(9)) / 9 for j in range(9)]
    want = np.exp(col) / np.exp(col).sum()
    ck.check(np.allclose(redundancy(K, 0.5), want, rtol=1e-12), "redundancy == loop")


MODELS = [("mha", 2, 2, 16, 51), ("gqa4", 8, 2, 16, 52)]
N, M = 320, 24
SCENARIOS = [
    ("unchunked", None, ["rkv(budget=0.2, decode=none)", "rkv(budget=0.3, mix_lambda=0.5, kernel=3, decode=every:8)",
                         "rkv(budget=80, group_pooling=mean, threshold=0.2, decode=every:5)",
                         "rkv(budget=0.2, decode=length:7)", "rkv(budget=0.25, decode=length:8)"]),
    ("chunk96", 96, ["rkv(budget=0.25, prefill=chunk, decode=none)",
                     "rkv(budget=0.2, window=4, prefill=chunk, decode=step)", "rkv(budget=0.3, decode=every:12)",
                     "rkv(budget=0.25, prefill=chunk, decode=length:16)"]),
]


def reference_policy(spec, model, chunk):
    pr, scorer = make_policy(spec, model.group)
    return pr.budget, 0, pr.window, scorer, 1e-4


def run(ck, args):
    run_reference_test(ck, args, "rkv", MODELS, SCENARIOS, reference_policy, N, M, synth_args=["--query-window", 16, "--chunk-tokens", 96, "--window", 8],
                       with_model=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
