#!/usr/bin/env python3
"""curdkv (CurDKV, arXiv 2509.15038; NVIDIA/kvpress cur_press.py CURPress): kvsim's kept masks
against a float64 numpy reference on synthetic MHA and GQA traces, post-fill, per chunk and per
decode step. Score (policy-notes.md "CurDKV"): k2 = ||k_t||^2, v2 = ||v_t||^2 over the resident
entries; with local_window w > 0 each is divided by its sum within consecutive blocks of w entries
(the last block zero-padded); kv_product s = k2 * v2 (key: k2, value: v2, kv_avg: (k2+v2)/2);
s /= sum(s); the first num_sinks entries are kept (score 1.0 in the reference)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, replay, run_reference_test  # noqa: E402


def local_norm(x, w):
    if w <= 0:
        return x
    n = len(x)
    padded = np.concatenate([x, np.zeros((-n) % w)]).reshape(-1, w)
    sums = padded.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(sums > 0, padded / np.where(sums > 0, sums, 1), 0.0)
    return out.reshape(-1)[:n]


def cur_scores(keys, values, lev_type, w):
    k2 = local_norm((keys ** 2).sum(axis=1), w)
    v2 = local_norm((values ** 2).sum(axis=1), w)
    s = {"key": k2, "value": v2, "kv_avg": (k2 + v2) / 2, "kv_product": k2 * v2}[lev_type]
    return s / s.sum() if s.sum() > 0 else s


def make_policy(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "curdkv"
    sinks = int(args.pop("sinks", 4))
    lev_type = args.pop("leverage", "kv_product")
    w = int(args.pop("local_window", 16))
    pol = Spec(args, sinks)
    assert not args, args

    def scorer(layer, evicting, cap):
        out = {}
        for h, r in evicting.items():
            s = cur_scores(layer["keys"][h][r], layer["values"][h][r], lev_type, w)
            out[h] = s[min(sinks, len(r)):]
        return out

    return pol, sinks, 0, scorer, 1e-5


def kept(spec, keys, values, n, m=0, chunk=None):
    layer = dict(keys=np.array([keys], float), values=np.array([values], float))
    pol, sinks, recent, scorer, _ = make_policy(spec)
    masks, problems, _ = replay(pol, sinks, recent, scorer, layer, n, m, chunk, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # Same hand case as tests/policies/curdkv_test.cpp: k2 = [9,1,4,2,5,1], v2 = [1,4,.25,8,1,2].
    K = [[3, 0], [1, 0], [2, 0], [1, 1], [2, 1], [0, 1]]
    V = [[1, 0], [2, 0], [0.5, 0], [2, 2], [1, 0], [1, 1]]
    cases = [("curdkv(budget=4, sinks=1, local_window=0)", [0, 1, 3, 4]),
             ("curdkv(budget=3, sinks=1, local_window=0, leverage=key)", [0, 2, 4]),
             ("curdkv(budget=3, sinks=1, local_window=0, leverage=value)", [0, 1, 3]),
             ("curdkv(budget=3, sinks=1, local_window=0, leverage=kv_avg)", [0, 3, 4]),
             ("curdkv(budget=4, sinks=1)", [0, 1, 3, 4]),
             ("curdkv(budget=4, sinks=1, local_window=2)", [0, 3, 4, 5]),
             ("curdkv(budget=3, sinks=1, local_window=4)", [0, 4, 5]),
             ("curdkv(budget=5)", [0, 1, 2, 3, 4]),
             ("curdkv(budget=0.2)", [0, 1, 2, 3, 4])]
    for spec, want in cases:
        ck.eq(kept(spec, K, V, 6), want, "hand: " + spec)
    # policy-notes.md example: one 16-block with k2 = v2 = 1 -> every score 1/16 after normalisation.
    s = cur_scores(np.ones((16, 2)) / np.sqrt(2), np.ones((16, 2)) / np.sqrt(2), "kv_product", 16)
    ck.check(np.allclose(s, 1 / 16), "hand: notes example, uniform block -> 1/16", s)
    # Zero padding of the last block leaves its sum: 5 tokens, w=4 -> blocks [4] + [1] (alone: 1.0).
    ck.check(np.allclose(local_norm(np.array([1.0, 1, 2, 4, 3]), 4), [.125, .125, .25, .5, 1.0]), "hand: padded block")


MODELS = [("mha", 2, 2, 16, 31), ("gqa4", 8, 2, 16, 32)]
N, M = 400, 6
SCENARIOS = [
    ("unchunked", None, ["curdkv(budget=0.2)", "curdkv(budget=0.3, leverage=key, local_window=0)",
                         "curdkv(budget=100, leverage=kv_avg, local_window=8)", "curdkv(budget=0.25, decode=step)",
                         "curdkv(budget=0.1, leverage=value, decode=every:3)"]),
    ("chunk96", 96, ["curdkv(budget=0.25, prefill=chunk)", "curdkv(budget=0.2, sinks=2, local_window=5, prefill=chunk)",
                     "curdkv(budget=120, prefill=chunk, decode=step)", "curdkv(budget=0.3)"]),
]


def run(ck, args):
    run_reference_test(ck, args, "curdkv", MODELS, SCENARIOS, make_policy, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
