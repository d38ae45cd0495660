#!/usr/bin/env python3
"""compactor (Chari & Van Durme 2025, arXiv 2507.08143): kvsim's kept masks against a step-by-step
transliteration of the original code, on synthetic MHA and GQA traces (head_dim 16 and 64),
post-fill, per chunk and per decode step.

Original: NVIDIA/kvpress, commit 8bb29b9c3078452a86d692f29123fa6c793e2b05
  kvpress/presses/compactor_press.py             CompactorPress.score
  kvpress/presses/leverage_press.py              LeverageScorePress.chol_with_jitter,
                                                 LeverageScorePress.compute_leverage_scores,
                                                 LeverageScorePress.score
  kvpress/presses/non_causal_attention_press.py  NonCausalAttnPress.non_causal_chunked_attn,
                                                 NonCausalAttnPress.score
The functions below keep the original's names, order of operations and torch calls. Departures,
each forced by replaying kvsim instead of a model:
  - Phi: the original draws torch.randn(B, H, d, k) * (1 / sqrt(k)) at every call. Here it is the
    matrix kvsim draws (policies/leverage.h gaussian_sketch), regenerated bit for bit by
    gaussian_sketch() below: entry (i, j) is the (i k + j)-th normal of KeyedRng(key) (util/rng.h:
    splitmix64 stream, Box-Muller with the second value dropped) times 1/sqrt(k), key =
    hash_key(seed, layer, kv_head, pass_end, fnv1a64(request_id)).
  - dtype: float64 throughout (the original: the model's dtype, the Gram matrix and softmax in float32).
  - keys and queries come from the trace: post-RoPE keys un-rotated for the leverage (the original
    recomputes pre-RoPE keys from the hidden states: the same vectors), post-RoPE queries for the
    attention (the original rotates its pre-RoPE queries: the same).
  - when and what: kvsim calls the scorer at each of its eviction points on each KV head's resident
    entries (the original: once, on the whole prompt). CompactorPress.score's slicing of the first
    sink_size_start and last sink_size_end entries is ref_leverage_replay's protected ends; the
    selection that follows is kvsim's capacity rule (ref_leverage_replay.select), not
    ScorerPress's int(S (1 - compression_ratio)).
  - blending=auto is compression_ratio, here the fraction evicted at this eviction point.
  - kvsim-only options: leverage=exact (exact_leverage below, the hat-matrix diagonal from an SVD),
    attention=off (leverage only), pad=none (a short last chunk stays short), keys=post_rope.
RoPE is the Hugging Face rotate_half layout with the model's rope_theta (DESIGN.md §3)."""
import math
import os
import sys

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, replay, run_reference_test  # noqa: E402

ROPE_THETA = 10000.0  # kvref.write_model_ini's default, used by the synthesised traces
REQUEST_ID = "0"      # the request the synthesised traces hold (ref_leverage_replay.read_layers)
M64 = (1 << 64) - 1


# --- kvsim's Gaussian matrix (util/rng.h, policies/leverage.cpp), reproduced -----------------------

def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def hash_key(seed, a, b=0, c=0, d=0):
    h = splitmix64(seed)
    h = splitmix64(h ^ a)
    h = splitmix64(h ^ ((b + 0x632BE59BD9B4E019) & M64))
    h = splitmix64(h ^ ((c + 0x85157AF5) & M64))
    return splitmix64(h ^ ((d + 0x3C6EF372FE94F82A) & M64))


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def sketch_key(seed, request_id, layer, kv_head, pass_end):
    return hash_key(seed, layer, kv_head, pass_end, fnv1a64(request_id))


def gaussian_sketch(key, d, k):
    """KeyedRng(key).normal() d*k times, row-major, times 1/sqrt(k): a [d, k] float64 array."""
    state, out = key, []
    scale = 1.0 / math.sqrt(k)
    for _ in range(d * k):
        u = []
        for _ in range(2):  # next_u64 is splitmix64 of the state before the increment
            z = splitmix64(state)
            state = (state + 0x9E3779B97F4A7C15) & M64
            u.append(((z >> 11) + 0.5) * 2.0 ** -53)
        out.append(math.sqrt(-2.0 * math.log(u[0])) * math.cos(2.0 * math.pi * u[1]) * scale)
    return np.array(out).reshape(d, k)


# --- leverage_press.py: LeverageScorePress --------------------------------------------------------

def chol_with_jitter(G, jitter=0.0, max_tries=5):
    """cholesky factorization with adaptive jitter."""
    identity = torch.eye(G.shape[-1], device=G.device, dtype=G.dtype)
    cur = float(jitter)
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(G + cur * identity, upper=False)
        if bool((info == 0).all()):
            return L
        cur = max(1e-8, (1e-2 if cur == 0.0 else 10.0 * cur))
    raise RuntimeError(f"Cholesky failed after {max_tries} tries.")


def compute_leverage_scores(key_states, sketch_dimension, Phi):
    """key_states (B,H,S,d); Phi (B,H,d,k) already scaled by 1/sqrt(k) (the original's randn draw)."""
    d, k = key_states.shape[-1], sketch_dimension
    assert Phi.shape[-2:] == (d, k)
    # sequence-centering then sketch.
    X = key_states - key_states.mean(dim=-2, keepdim=True)
    X = torch.matmul(X, Phi)  # (B,H,S,k)
    XT = X.transpose(-2, -1)  # (B,H,k,S)
    G = XT @ X  # (X^T X) / (B,H,k,k)
    L = chol_with_jitter(0.5 * (G + G.transpose(-2, -1)), jitter=1e-2, max_tries=5)  # (B,H,k,k)
    inv_Xt = torch.cholesky_solve(XT, L, upper=False)  # (X^TX)^{-1} X^T / (B,H,k,S)
    scores = (X * inv_Xt.transpose(-2, -1)).sum(dim=-1).clamp_min(0)  # (B,H,S)
    return scores


def leverage_score(pre_rope_keys, sketch_dimension, Phi):
    """LeverageScorePress.score after get_prerope_key_states."""
    scores = compute_leverage_scores(pre_rope_keys, sketch_dimension, Phi)  # (B,H_kv,S)
    z_scores = (scores - scores.mean()) / scores.std().clamp_min(1e-6)
    return z_scores


# --- non_causal_attention_press.py: NonCausalAttnPress --------------------------------------------

def non_causal_chunked_attn(q, k, chunk_size):
    assert chunk_size > 0, "chunk_size must be positive"
    assert q.shape[-2] == k.shape[-2], "only used in prefill"
    B, H, S, d = k.shape
    # pad to a multiple of chunk_size for easy reshaping
    S_pad = math.ceil(S / chunk_size) * chunk_size
    pad_len = S_pad - S

    if pad_len > 0:
        q_padded = torch.cat([q, torch.zeros(B, H, pad_len, d, device=q.device, dtype=q.dtype)], dim=2)
        k_padded = torch.cat([k, torch.zeros(B, H, pad_len, d, device=k.device, dtype=k.dtype)], dim=2)
        last_chunk_start = (S // chunk_size) * chunk_size
        in_valid = torch.arange(last_chunk_start, S_pad, device=q.device) >= S
        query_mask = key_mask = in_valid.view(1, 1, chunk_size).expand(B, H, chunk_size)
    else:
        q_padded, k_padded = q, k
        last_chunk_start = ((S - 1) // chunk_size) * chunk_size
        in_valid = torch.arange(last_chunk_start, S_pad, device=q.device) >= S
        query_mask = key_mask = in_valid.view(1, 1, chunk_size).expand(B, H, chunk_size)

    num_chunks = S_pad // chunk_size
    q_chunks = q_padded.view(B, H, num_chunks, chunk_size, d)
    k_chunks = k_padded.view(B, H, num_chunks, chunk_size, d)

    dots = torch.matmul(q_chunks, k_chunks.transpose(-2, -1))
    dots[:, :, -1].masked_fill_(query_mask.unsqueeze(-1), 0)
    dots[:, :, -1].masked_fill_(key_mask.unsqueeze(-2), -1e-9)
    attn = torch.softmax(dots.to(torch.float64), dim=-1)  # the original: float32
    # sum over query and trim padding
    return attn.sum(dim=-2).view(B, H, S_pad)[..., :S]


def unpadded_chunked_attn(q, k, chunk_size):
    """kvsim's pad=none: the same column sums with a short last chunk left short."""
    S = k.shape[-2]
    out = torch.zeros(k.shape[:-1], dtype=k.dtype)
    for a in range(0, S, chunk_size):
        b = min(a + chunk_size, S)
        attn = torch.softmax(q[..., a:b, :] @ k[..., a:b, :].transpose(-2, -1), dim=-1)
        out[..., a:b] = attn.sum(dim=-2)
    return out


def repeat_kv(hidden_states, n_rep):
    """transformers.models.llama.modeling_llama.repeat_kv."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def non_causal_score(q, keys, values, chunk_size, pad=True):
    """NonCausalAttnPress.score from its post-RoPE queries q (B,H_q,S,d) on."""
    num_kv_groups = q.shape[1] // values.shape[1]
    attn = non_causal_chunked_attn if pad else unpadded_chunked_attn
    A = attn(q, repeat_kv(keys, num_kv_groups), chunk_size)  # (B, H_q, S)
    # average across query-head groups back to H_kv
    A = A.view(A.shape[0], values.shape[1], -1, A.shape[-1]).mean(dim=-2)  # (B, H_kv, S)
    scores = A * values.norm(dim=-1)  # (B, H_kv, S)
    scores = F.avg_pool1d(scores, kernel_size=3, padding=1, stride=1)
    z_scores = (scores - scores.mean()) / scores.std().clamp_min(1e-6)
    return z_scores


# --- kvsim's leverage=exact ----------------------------------------------------------------------

def exact_leverage(x):
    """Hat-matrix diagonal of the centred rows (singular values above 1e-5 of the largest)."""
    x = x - x.mean(axis=0)
    if len(x) == 0:
        return np.zeros(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    if s.max() <= 0:
        return np.zeros(len(x))
    r = int((s > 1e-5 * s.max()).sum())
    return (u[:, :r] ** 2).sum(axis=1)


def unrope(keys, positions, theta):
    """Rotate post-RoPE rows back to position 0: x = x' cos(-a) + rotate_half(x') sin(-a)."""
    d = keys.shape[1]
    inv_freq = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))
    rot = np.concatenate([-keys[:, d // 2:], keys[:, : d // 2]], 1)
    return keys * cos - rot * sin


# --- compactor_press.py: CompactorPress.score, at one kvsim eviction point -------------------------

def make_policy(spec, theta=ROPE_THETA):
    name, args = kvref.parse_spec(spec)
    assert name == "compactor"
    s0, s1 = int(args.pop("sink_start", 8)), int(args.pop("sink_end", 4))
    chunk = int(args.pop("chunk", 256))
    pad = args.pop("pad", "zeros") == "zeros"
    blending = args.pop("blending", "auto")
    attention = args.pop("attention", "on") == "on"
    sketch = args.pop("leverage", "sketch") == "sketch"
    k = int(args.pop("sketch_dimension", 48))
    seed = int(args.pop("seed", 0))
    pre_rope = args.pop("keys", "pre_rope") == "pre_rope"
    pol = Spec(args, s0 + s1)
    assert not args, args

    def leverage_z(layer, heads, mids, pass_end):
        keys = [layer["keys"][h][mid] for h, mid in zip(heads, mids)]
        keys = [unrope(x, mid, theta) if pre_rope else x for x, mid in zip(keys, mids)]
        if not sketch:
            levs = torch.tensor(np.stack([exact_leverage(x) for x in keys]))
            return (levs - levs.mean()) / levs.std().clamp_min(1e-6)
        d = keys[0].shape[1]
        Phi = np.stack([gaussian_sketch(sketch_key(seed, REQUEST_ID, layer["index"], h, pass_end), d, k) for h in heads])
        return leverage_score(torch.tensor(np.stack(keys))[None], k, torch.tensor(Phi)[None])[0]

    def attention_z(layer, heads, mids):
        hq, hkv = layer["queries"].shape[0], layer["keys"].shape[0]
        G = hq // hkv
        q = np.stack([layer["queries"][g][[layer["qpos"][int(p)] for p in mid]]
                      for h, mid in zip(heads, mids) for g in range(h * G, (h + 1) * G)])
        keys = np.stack([layer["keys"][h][mid] for h, mid in zip(heads, mids)])
        values = np.stack([layer["values"][h][mid] for h, mid in zip(heads, mids)])
        return non_causal_score(torch.tensor(q)[None], torch.tensor(keys)[None], torch.tensor(values)[None], chunk, pad)[0]

    def scorer(layer, evicting, cap):
        heads = sorted(evicting)
        mids = []
        for h in heads:  # CompactorPress.score: left_keep, right_keep, the slice between them
            r = evicting[h]
            left_keep = min(s0, len(r))
            right_keep = min(s1, max(0, len(r) - left_keep))
            mids.append(r[left_keep:len(r) - right_keep])
        assert len({len(m) for m in mids}) == 1, "heads evicting together hold equally many entries"
        # The pass that triggered this eviction ends after the newest resident entry.
        pass_end = max(int(r[-1]) for r in evicting.values()) + 1
        l_scores = leverage_z(layer, heads, mids, pass_end).numpy()
        if not attention:
            return {h: l_scores[i] for i, h in enumerate(heads)}
        attn_scores = attention_z(layer, heads, mids).numpy()
        out = {}
        for i, h in enumerate(heads):
            size = len(evicting[h])
            bl = float(blending) if blending != "auto" else (size - cap) / size  # compression_ratio
            out[h] = bl * l_scores[i] + attn_scores[i]
        return out

    return pol, s0, s1, scorer, 1e-4


def kept(spec, layer, n, theta=ROPE_THETA):
    pol, s0, s1, scorer, _ = make_policy(spec, theta)
    masks, problems, _ = replay(pol, s0, s1, scorer, layer, n, 0, None, layer["keys"].shape[0])
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def hand_layer(k, v, q):
    return dict(index=0, keys=np.array([k], float), values=np.array([v], float), queries=np.array([q], float),
                qpos={t: t for t in range(len(k))})


def self_tests(ck):
    # Hand cases of tests/policies/compactor_test.cpp.
    ck.eq([fnv1a64(""), fnv1a64("a")], [0xCBF29CE484222325, 0xAF63DC4C8601EC8C], "hand: FNV-1a 64 test vectors")
    phi = gaussian_sketch(sketch_key(0, "0", 0, 0, 400), 128, 48)
    ck.check(abs(phi.var(ddof=1) * 48 - 1) < 0.1 and abs(phi.mean()) < 4 / math.sqrt(48 * phi.size),
             "hand: sketch entries ~ N(0, 1/k)", (phi.mean(), phi.var(ddof=1) * 48))
    x = torch.tensor([[[[1.0, 0], [-1, 0], [0, 2], [0, -2]]]], dtype=torch.float64)
    eye, axis = torch.eye(2, dtype=torch.float64)[None, None], torch.tensor([[[[1.0], [0]]]], dtype=torch.float64)
    ck.check(np.allclose(compute_leverage_scores(x, 2, eye)[0, 0].numpy(), [1 / 2.01, 1 / 2.01, 4 / 8.01, 4 / 8.01],
                         atol=1e-12), "hand: sketched leverage, phi = I2, ridge 1e-2")
    ck.check(np.allclose(compute_leverage_scores(x, 1, axis)[0, 0].numpy(), [1 / 2.01, 1 / 2.01, 0, 0], atol=1e-12),
             "hand: sketched leverage, phi = first axis")
    P = [[3, 0], [-2, 0], [-1, 0], [0, 1], [0, 3], [0, -4]]
    ck.check(np.allclose(exact_leverage(np.array(P, float)), [9 / 14, 4 / 14, 1 / 14, 1 / 26, 9 / 26, 16 / 26]),
             "hand: leverage of axis points")
    ck.check(abs(exact_leverage(np.array([[1, 2, 1], [0, 1, 0], [3, 3, 3], [2, 0, 2.]])).sum() - 2) < 1e-12,
             "hand: duplicate channel -> sum = rank 2")
    lay = hand_layer(P, P, P)
    base = "compactor(sink_start=0, sink_end=0, attention=off, leverage=exact, keys=post_rope, budget="
    ck.eq(kept(base + "3)", lay, 6), [0, 4, 5], "hand: leverage only B=3")
    ck.eq(kept(base + "4)", lay, 6), [0, 1, 4, 5], "hand: leverage only B=4")
    ends = "compactor(sink_start=1, sink_end=1, attention=off, leverage=exact, keys=post_rope, budget="
    ck.eq(kept(ends + "3)", lay, 6), [0, 4, 5], "hand: protected ends, middle re-centred")
    ck.eq(kept(ends + "4)", lay, 6), [0, 1, 4, 5], "hand: protected ends B=4")
    # pre_rope: keys stored rotated to their positions (d=2: angle = t radians) give the same set.
    ang = np.arange(6.0)
    Pa = np.array(P, float)
    rot = np.stack([Pa[:, 0] * np.cos(ang) - Pa[:, 1] * np.sin(ang), Pa[:, 1] * np.cos(ang) + Pa[:, 0] * np.sin(ang)], 1)
    ck.check(np.allclose(unrope(rot, np.arange(6), 10000.0), Pa), "hand: unrope inverts the rotation")
    ck.eq(kept("compactor(sink_start=0, sink_end=0, attention=off, leverage=exact, budget=3)",
               hand_layer(rot, rot, rot), 6), [0, 4, 5], "hand: pre_rope recovers the ranking")
    e, v, y = [1, 1, 3, 5, 1, 4], [3, 3, 3, 1, 2, 3], [1, -2, 0, 2, 0, -1]
    lay = hand_layer([[np.log(a), b] for a, b in zip(e, y)], [[0, b] for b in v], [[1, 0]] * 6)
    base = "compactor(sink_start=0, sink_end=0, keys=post_rope, leverage=exact, "
    for tail, want in [("chunk=3, blending=0, budget=3)", [1, 2, 3]), ("chunk=6, blending=0, budget=3)", [2, 3, 4]),
                       ("chunk=3, blending=2, budget=3)", [1, 3, 5]), ("chunk=3, budget=2)", [1, 3]),
                       ("chunk=3, blending=0, budget=2)", [1, 2]), ("chunk=4, blending=0, budget=2)", [3, 4]),
                       ("chunk=4, blending=0, budget=2, pad=none)", [2, 4])]:
        ck.eq(kept(base + tail, lay, 6), want, "hand: attention/blend " + tail)
    qs, ks = torch.tensor([[[[1.0, 0]] * 6]], dtype=torch.float64), torch.tensor(lay["keys"])[None]
    ck.check(np.allclose(non_causal_chunked_attn(qs, ks, 3)[0, 0].numpy(), [.6, .6, 1.8, 1.5, .3, 1.2]),
             "hand: non-causal chunk attention column sums")
    ck.check(np.allclose(non_causal_chunked_attn(qs, ks, 4)[0, 0].numpy(), [.4, .4, 1.2, 2, 2 / 7 + .5, 8 / 7 + .5]),
             "hand: zero-padded last chunk: pad keys take mass, pad queries add 1/chunk each")


MODELS = [("mha", 2, 2, 16, 41), ("gqa4", 8, 2, 16, 42), ("wide", 4, 2, 64, 43)]
N, M = 400, 6
SCENARIOS = [
    ("unchunked", None, ["compactor(budget=0.2)", "compactor(budget=0.3, chunk=64, blending=0.35)",
                         "compactor(budget=100, attention=off)", "compactor(budget=0.25, keys=post_rope, chunk=50)",
                         "compactor(budget=0.2, chunk=32, decode=step)", "compactor(budget=0.2, leverage=exact)",
                         "compactor(budget=0.2, pad=none, chunk=96)",
                         "compactor(budget=0.25, sketch_dimension=16, seed=3, attention=off)"]),
    ("chunk96", 96, ["compactor(budget=0.25, prefill=chunk, chunk=40)",
                     "compactor(budget=0.2, sink_start=2, sink_end=8, blending=1, prefill=chunk)",
                     "compactor(budget=150, prefill=chunk, decode=every:2, attention=off)", "compactor(budget=0.3)",
                     "compactor(budget=0.3, leverage=exact, prefill=chunk)"]),
]


def run(ck, args):
    run_reference_test(ck, args, "compactor", MODELS, SCENARIOS, make_policy, N, M, query_window=N)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
