#!/usr/bin/env python3
"""compactor (Chari & Van Durme 2025, arXiv 2507.08143; NVIDIA/kvpress compactor_press.py,
leverage_press.py, non_causal_attention_press.py): kvsim's kept masks against a float64 numpy
reference on synthetic MHA and GQA traces, post-fill, per chunk and per decode step.

Per layer, over the resident entries of each evicting KV head minus the first sink_start and the
last sink_end (policy-notes.md "Compactor"):
  lev   = exact leverage of the centred pre-RoPE keys: squared row norms of U[:, :rank] from the
          SVD of X (singular values above 1e-5 of the largest), the hat-matrix diagonal that the
          reference's random sketch approximates;
  attn  = chunks of `chunk` entries; every query attends non-causally to the chunk's keys with
          unscaled logits q.k; column sums, averaged over the GQA group; times ||v||; avg-pooled
          over 3 (zero padding, divided by 3);
  score = blending * z(lev) + z(attn), z over all evicting heads of the layer (unbiased std,
          clamped at 1e-6); blending = auto -> fraction evicted (size - capacity) / size.
RoPE is the Hugging Face rotate_half layout with the model's rope_theta (DESIGN.md §3)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, ends_of, replay, run_reference_test  # noqa: E402

ROPE_THETA = 10000.0  # kvref.write_model_ini's default, used by the synthesised traces


def unrope(keys, positions, theta):
    """Rotate post-RoPE rows back to position 0: x = x' cos(-a) + rotate_half(x') sin(-a)."""
    d = keys.shape[1]
    inv_freq = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))
    rot = np.concatenate([-keys[:, d // 2:], keys[:, : d // 2]], 1)
    return keys * cos - rot * sin


def leverage(x):
    x = x - x.mean(axis=0)
    if len(x) == 0:
        return np.zeros(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    if s.max() <= 0:
        return np.zeros(len(x))
    r = int((s > 1e-5 * s.max()).sum())
    return (u[:, :r] ** 2).sum(axis=1)


def chunk_attention(q_group, k, chunk):
    """q_group [G, S, d], k [S, d] -> [S] column sums of within-chunk softmax, mean over G."""
    S = len(k)
    out = np.zeros(S)
    for q in q_group:
        for a in range(0, S, chunk):
            b = min(a + chunk, S)
            logits = q[a:b] @ k[a:b].T
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[a:b] += (p / p.sum(axis=1, keepdims=True)).sum(axis=0)
    return out / len(q_group)


def z(parts):
    allv = np.concatenate(parts)
    sd = max(allv.std(ddof=1), 1e-6) if len(allv) > 1 else 1e-6
    return [(p - allv.mean()) / sd for p in parts]


def make_policy(spec, theta=ROPE_THETA):
    name, args = kvref.parse_spec(spec)
    assert name == "compactor"
    s0, s1 = int(args.pop("sink_start", 8)), int(args.pop("sink_end", 4))
    chunk = int(args.pop("chunk", 256))
    blending = args.pop("blending", "auto")
    attention = args.pop("attention", "on") == "on"
    pre_rope = args.pop("keys", "pre_rope") == "pre_rope"
    pol = Spec(args, s0 + s1)
    assert not args, args

    def scorer(layer, evicting, cap):
        heads = sorted(evicting)
        levs, attns = [], []
        hq, hkv = layer["queries"].shape[0], layer["keys"].shape[0]
        G = hq // hkv
        for h in heads:
            r = evicting[h]
            s, rr = ends_of(len(r), s0, s1)
            mid = r[s:len(r) - rr]
            k = layer["keys"][h][mid]
            levs.append(leverage(unrope(k, mid, theta) if pre_rope else k))
            if attention:
                rows = [layer["qpos"][int(p)] for p in mid]
                qg = layer["queries"][h * G:(h + 1) * G][:, rows, :]
                a = chunk_attention(qg, k, chunk) * np.linalg.norm(layer["values"][h][mid], axis=1)
                attns.append(kvref.pool1d(a, 3, "avg"))
        zl = z(levs)
        out = {}
        za = z(attns) if attention else None
        for i, h in enumerate(heads):
            size = len(evicting[h])
            bl = float(blending) if blending != "auto" else (size - cap) / size
            out[h] = bl * zl[i] + za[i] if attention else zl[i]
        return out

    return pol, s0, s1, scorer, 1e-4


def kept(spec, layer, n, theta=ROPE_THETA):
    pol, s0, s1, scorer, _ = make_policy(spec, theta)
    masks, problems, _ = replay(pol, s0, s1, scorer, layer, n, 0, None, layer["keys"].shape[0])
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def hand_layer(k, v, q):
    return dict(keys=np.array([k], float), values=np.array([v], float), queries=np.array([q], float),
                qpos={t: t for t in range(len(k))})


def self_tests(ck):
    # Hand cases of tests/policies/compactor_test.cpp.
    P = [[3, 0], [-2, 0], [-1, 0], [0, 1], [0, 3], [0, -4]]
    ck.check(np.allclose(leverage(np.array(P, float)), [9 / 14, 4 / 14, 1 / 14, 1 / 26, 9 / 26, 16 / 26]),
             "hand: leverage of axis points")
    ck.check(abs(leverage(np.array([[1, 2, 1], [0, 1, 0], [3, 3, 3], [2, 0, 2.]])).sum() - 2) < 1e-12,
             "hand: duplicate channel -> sum = rank 2")
    lay = hand_layer(P, P, P)
    base = "compactor(sink_start=0, sink_end=0, attention=off, keys=post_rope, budget="
    ck.eq(kept(base + "3)", lay, 6), [0, 4, 5], "hand: leverage only B=3")
    ck.eq(kept(base + "4)", lay, 6), [0, 1, 4, 5], "hand: leverage only B=4")
    ends = "compactor(sink_start=1, sink_end=1, attention=off, keys=post_rope, budget="
    ck.eq(kept(ends + "3)", lay, 6), [0, 4, 5], "hand: protected ends, middle re-centred")
    ck.eq(kept(ends + "4)", lay, 6), [0, 1, 4, 5], "hand: protected ends B=4")
    # pre_rope: keys stored rotated to their positions (d=2: angle = t radians) give the same set.
    ang = np.arange(6.0)
    Pa = np.array(P, float)
    rot = np.stack([Pa[:, 0] * np.cos(ang) - Pa[:, 1] * np.sin(ang), Pa[:, 1] * np.cos(ang) + Pa[:, 0] * np.sin(ang)], 1)
    ck.check(np.allclose(unrope(rot, np.arange(6), 10000.0), Pa), "hand: unrope inverts the rotation")
    ck.eq(kept("compactor(sink_start=0, sink_end=0, attention=off, budget=3)", hand_layer(rot, rot, rot), 6), [0, 4, 5],
          "hand: pre_rope recovers the ranking")
    e, v, y = [1, 1, 3, 5, 1, 4], [3, 3, 3, 1, 2, 3], [1, -2, 0, 2, 0, -1]
    lay = hand_layer([[np.log(a), b] for a, b in zip(e, y)], [[0, b] for b in v], [[1, 0]] * 6)
    base = "compactor(sink_start=0, sink_end=0, keys=post_rope, "
    for tail, want in [("chunk=3, blending=0, budget=3)", [1, 2, 3]), ("chunk=6, blending=0, budget=3)", [2, 3, 4]),
                       ("chunk=3, blending=2, budget=3)", [1, 3, 5]), ("chunk=3, budget=2)", [1, 3]),
                       ("chunk=3, blending=0, budget=2)", [1, 2])]:
        ck.eq(kept(base + tail, lay, 6), want, "hand: attention/blend " + tail)
    ck.check(np.allclose(chunk_attention(np.array([[[1, 0]] * 6], float), np.array(lay["keys"][0]), 3),
                         [.6, .6, 1.8, 1.5, .3, 1.2]), "hand: non-causal chunk attention column sums")


MODELS = [("mha", 2, 2, 16, 41), ("gqa4", 8, 2, 16, 42)]
N, M = 400, 6
SCENARIOS = [
    ("unchunked", None, ["compactor(budget=0.2)", "compactor(budget=0.3, chunk=64, blending=0.35)",
                         "compactor(budget=100, attention=off)", "compactor(budget=0.25, keys=post_rope, chunk=50)",
                         "compactor(budget=0.2, chunk=32, decode=step)"]),
    ("chunk96", 96, ["compactor(budget=0.25, prefill=chunk, chunk=40)",
                     "compactor(budget=0.2, sink_start=2, sink_end=8, blending=1, prefill=chunk)",
                     "compactor(budget=150, prefill=chunk, decode=every:2, attention=off)", "compactor(budget=0.3)"]),
]


def run(ck, args):
    run_reference_test(ck, args, "compactor", MODELS, SCENARIOS, make_policy, N, M, query_window=N)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
