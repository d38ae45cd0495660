#!/usr/bin/python3
"""expected_attention (NVIDIA/kvpress kvpress/presses/expected_attention_press.py, ExpectedAttentionPress;
policy-notes.md "ExpectedAttention"): kvsim's kept masks against a float64 numpy reference on
synthetic MHA and GQA traces, post-fill, per chunk and per decode step.

The reference follows kvpress's matrix formulation (not kvsim's): pre-RoPE queries (the trace's
post-RoPE queries rotated back by their position, rotate_half layout) of the passes since the last
eviction point, positions >= sinks, the last stats_queries of them; mu and the biased covariance per
query head; R_p = cos_p * I + sin_p * P over the future positions p in [T, T + future) (T = the pass
end), Rbar = mean R_p, mu' = Rbar mu, Sigma' = Rbar Sigma Rbar^T; for the resident keys after the first
`sinks`: z = mu'.k / sqrt(d) + k^T Sigma' k / (2 d), softmax, mean over the group, (s + eps) * ||v||.
The first `sinks` entries are kept; the top of the rest fill the capacity (DESIGN.md §4, the sinks
being the protected count)."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, replay, run_reference_test  # noqa: E402


def inv_freq(d, theta):
    """theta: the RoPE base (plain frequencies theta^(-2i/d)) or already the [d/2] frequencies."""
    if isinstance(theta, np.ndarray):
        return theta
    return theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)


def model_inv_freq(meta, d):
    """The trace's own RoPE frequencies: rope_theta, and rope_scaling_* when the root attributes have
    them (type llama3: transliterated from transformers' modeling_rope_utils.py, _compute_llama3_parameters)."""
    theta = float(meta.get("rope_theta", 10000.0))
    kind = kvref.attr_str(meta["rope_scaling_type"]) if "rope_scaling_type" in meta else "none"
    inv = inv_freq(d, theta)
    if kind == "none":
        return inv
    assert kind == "llama3", kind
    factor, low, high = (float(meta["rope_scaling_" + k]) for k in ("factor", "low_freq_factor", "high_freq_factor"))
    old = float(meta["rope_scaling_original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    llama = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    medium = ~(wavelen < old / high) * ~(wavelen > old / low)
    return np.where(medium, (1 - smooth) * llama / factor + smooth * llama, llama)


def rope(x, pos, theta):
    """rotate_half RoPE of rows x [N, d] to positions pos [N] (negative: rotate back); theta as inv_freq's."""
    d = x.shape[1]
    inv = inv_freq(d, theta)
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[:, : d // 2], x[:, d // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=1)


def mean_rotation(d, first, future, theta):
    inv = inv_freq(d, theta)
    p = np.arange(first, first + future, dtype=np.float64)
    cos = np.cos(np.concatenate([p[:, None] * inv, p[:, None] * inv], axis=1))   # [F, d]
    sin = np.sin(np.concatenate([p[:, None] * inv, p[:, None] * inv], axis=1))
    I = np.eye(d)
    P = np.zeros((d, d))
    P[d // 2:, : d // 2] = np.eye(d // 2)
    P[: d // 2, d // 2:] = -np.eye(d // 2)
    R = cos[:, :, None] * I[None] + sin[:, :, None] * P[None]
    return R.mean(axis=0)


class Params:
    def __init__(self, spec):
        name, args = kvref.parse_spec(spec)
        assert name == "expected_attention", spec
        self.sinks = int(args.pop("sinks", 4))
        self.future = int(args.pop("future", 512))
        self.cov = args.pop("covariance", "yes") == "yes"
        self.vnorm = args.pop("vnorm", "yes") == "yes"
        self.eps = float(args.pop("epsilon", 0))
        sq = args.pop("stats_queries", "all")
        self.stats = None if sq == "all" else int(sq)
        self.budget = Spec(args, self.sinks)
        assert not args, args


def head_scores(pr, layer, h, resident, a, b, theta, G):
    """Middle scores (resident[sinks:]) of KV head h with statistics of query positions [a, b)."""
    d = layer["keys"].shape[2]
    T = int(resident[-1]) + 1
    R = mean_rotation(d, T, pr.future, theta)
    K = layer["keys"][h][resident[pr.sinks:]]
    V = layer["values"][h][resident[pr.sinks:]]
    pos = np.arange(a, b)
    total = np.zeros(len(K))
    for g in range(h * G, (h + 1) * G):
        if len(pos):
            Q = rope(layer["queries"][g][[layer["qpos"][int(t)] for t in pos]], -pos, theta)
            mu = Q.mean(axis=0)
            cov = (Q - mu).T @ (Q - mu) / len(Q)
        else:
            mu, cov = np.zeros(d), np.zeros((d, d))
        mu2 = R @ mu
        z = K @ mu2 / math.sqrt(d)
        if pr.cov:
            z = z + np.einsum("ni,ij,nj->n", K, R @ cov @ R.T, K) / d / 2
        e = np.exp(z - z.max())
        total += e / e.sum()
    s = total / G
    if pr.vnorm:
        s = (s + pr.eps) * np.linalg.norm(V, axis=1)
    return s


def make_policy(spec, n, chunk, theta, G):
    pr = Params(spec)
    chunks = kvref.prefill_chunks(n, chunk)

    def stats_range(resident):
        b = int(resident[-1]) + 1
        if b > n:                                   # decode step: the last decode_every steps
            a = max(n, b - pr.budget.decode_every)
        elif pr.budget.prefill == "chunk":
            a = [aa for aa, bb in chunks if bb == b][0]
        else:
            a = 0
        a = max(a, pr.sinks)
        if pr.stats is not None:
            a = max(a, b - pr.stats)
        return min(a, b), b

    def scorer(layer, evicting, cap):
        return {h: head_scores(pr, layer, h, r, *stats_range(r), theta, G) for h, r in evicting.items()}

    return pr, scorer


def hand_layer(v1=1.0, v4=1.0):
    """tests/policies/expected_attention_test.cpp's layer: d=2, keys R_5 w_t, queries R_t q_t."""
    w = np.array([[7, 7], [1, 0], [0, 2], [-1, 0], [.5, 0]], float)
    q = np.array([[100, 0], [1, 1], [1, -1], [3, 1], [3, -1]], float)
    keys = rope(w, [5] * 5, 10000.0)
    queries = rope(q, np.arange(5), 10000.0)
    values = np.zeros((5, 2))
    values[:, 0] = [1, v1, 1, 1, v4]
    return dict(keys=keys[None], values=values[None], queries=queries[None], qpos={t: t for t in range(5)})


def kept(spec, layer, n=5):
    pr, scorer = make_policy(spec, n, None, 10000.0, 1)
    masks, problems, _ = replay(pr.budget, pr.sinks, 0, scorer, layer, n, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    lay = hand_layer()
    pr = Params("expected_attention(sinks=1, future=1, vnorm=no)")
    s = head_scores(pr, lay, 0, np.arange(5), 1, 5, 10000.0, 1)
    z = np.array([math.sqrt(2) + .25, 1.0, -math.sqrt(2) + .25, math.sqrt(2) / 2 + .0625])
    ck.check(np.allclose(s, np.exp(z) / np.exp(z).sum(), rtol=1e-12), "hand: z = mu.w/sqrt2 + |w|^2/4", s.tolist())
    cases = [("expected_attention(budget=3, sinks=1, future=1, vnorm=no)", lay, [0, 1, 2]),
             ("expected_attention(budget=3, sinks=1, future=1, vnorm=no, covariance=no)", lay, [0, 1, 4]),
             ("expected_attention(budget=3, sinks=1, future=1, vnorm=no, stats_queries=2)", lay, [0, 1, 4]),
             ("expected_attention(budget=3, sinks=1, future=1)", hand_layer(.25, 2.0), [0, 2, 4]),
             ("expected_attention(budget=3, sinks=1, future=1, vnorm=no)", hand_layer(.25, 2.0), [0, 1, 2])]
    for spec, layer, want in cases:
        ck.eq(kept(spec, layer), want, "hand: " + spec)
    # Rbar over one position is that position's rotation; over a full period of the pair it vanishes.
    x = np.array([[0.3, -1.2, 0.7, 2.0]])
    ck.check(np.allclose(mean_rotation(4, 9, 1, 100.0) @ x[0], rope(x, [9], 100.0)[0]), "R_p == rope rotation")
    # llama3 scaling at Llama 3.1's shape: pair 0 unchanged, pair 63 divided by 8, pair 32 blended by hand
    # (smooth = (8192 / (2 pi sqrt(500000)) - 1) / 3 = 0.281283; inv * (0.718717 / 8 + 0.281283)).
    meta = {"rope_theta": 500000.0, "rope_scaling_type": "llama3", "rope_scaling_factor": 8.0,
            "rope_scaling_low_freq_factor": 1.0, "rope_scaling_high_freq_factor": 4.0,
            "rope_scaling_original_max_position_embeddings": 8192}
    f, plain = model_inv_freq(meta, 128), inv_freq(128, 500000.0)
    ck.check(f[0] == 1.0 and np.isclose(f[63], plain[63] / 8, rtol=1e-14) and
             np.isclose(f[32], plain[32] * (0.718717 / 8 + 0.281283), rtol=1e-5) and
             int((~np.isclose(f, plain, rtol=1e-14)).sum()) == 35, "llama3 frequencies: hand values, 35 of 64 scaled")


# gqa4-llama3: the model's RoPE has llama3 scaling (head_dim 16, theta 10000, original context 64):
# pair 0 keeps its frequency, 1-2 are blended and 3-7 divided by 8, so queries un-rotated or
# averaged with plain frequencies would give other statistics (issue 20).
LLAMA3 = [("rope_scaling_type", "llama3"), ("rope_scaling_factor", 8), ("rope_scaling_low_freq_factor", 1),
          ("rope_scaling_high_freq_factor", 4), ("rope_scaling_original_max_position_embeddings", 64)]
MODELS = [("mha", 2, 2, 16, 41), ("gqa4", 8, 2, 16, 42), ("gqa4-llama3", 8, 2, 16, 43, LLAMA3)]
N, M = 320, 6
SCENARIOS = [
    ("unchunked", None, ["expected_attention(budget=0.2)", "expected_attention(budget=0.3, covariance=no, future=64)",
                         "expected_attention(budget=80, vnorm=no, stats_queries=100)",
                         "expected_attention(budget=0.25, sinks=2, decode=every:3, epsilon=0.001)"]),
    ("chunk96", 96, ["expected_attention(budget=0.25, prefill=chunk)",
                     "expected_attention(budget=0.2, sinks=1, future=32, prefill=chunk, decode=step)",
                     "expected_attention(budget=0.3)"]),
]


def reference_policy(spec, model, chunk):
    d = int(model.meta["head_dim"])
    pr, scorer = make_policy(spec, N, chunk, model_inv_freq(model.meta, d), model.group)
    return pr.budget, pr.sinks, 0, scorer, 1e-4


def run(ck, args):
    run_reference_test(ck, args, "expected_attention", MODELS, SCENARIOS, reference_policy, N, M, synth_args=["--query-window", N],
                       with_model=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
