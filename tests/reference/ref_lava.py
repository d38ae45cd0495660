"""Independent numpy reference for lava (LAVa, Shen et al. 2025; MGDDestiny/Lava
adaptive_snapkv/monkeypatch/snapkv_utils.py LavaKVCluster, --gqa_support mode), written from that
code and kvsim's documented adaptations (policies/lava.cpp header, DESIGN.md §4), not from the C++.

Score of KV head h's non-window entry j (calcul_attn_score): for each query head g of the group,
the window queries' mean attention to j (softmax over the cache, causal inside the window), pooled
along positions (kernel, padding kernel//2, stride 1); times the head's value scale
max_j' ||V_j'||_1 over its non-window entries; the maximum over g.

Layer capacity (layer_budget=entropy, post_fill only; adaptive_mistral_hijack_lava.py, the decoder
loop after each layer: `base_capacity = (config.base_capacity - window_size) * num_hidden_layers`,
`density = [(x/sum_density) * base_capacity ...]`, `kv_cluster.base_capacity = int(density[l])`):
s_l = -sum p log(p + 1e-16) / log N over layer l's flattened post-fill score map (all KV heads'
non-window scores, p = score / (sum + 1e-16)); the traced layers T share |T| x (C - w) per head in
proportion to s_l: alloc=original int() of each share as the hijack, alloc=exact by largest
remainder (ties: lower layer; kvsim's variant); layer l keeps C_l = w + its share. Untraced layers
keep the uniform C (kvsim's rule for partial traces). layer_budget=uniform: every layer C.

Selection at an eviction point with per-head capacity C:
  S = H*C - (window entries); count_h = head h's entries among the layer's S best scores
  (ties: lower head, then lower position);
  alloc=original (snapkv_utils.py LavaKVCluster.update_kv_gqa: `head_adaptive_capacity =
  torch.round(head_adaptive_capacity * (1-self.floor_ratio) + self.floor_capacity)`, floor_capacity =
  int(base_capacity * floor_ratio) set in __init__ from the configured budget C, window included, and
  never updated because the hijack writes the misspelt `floor_capactiy`): share_h = min(entries_h,
  round_half_even((1-a) count_h + int(a C))); head h keeps its window and its own top share_h.
  alloc=exact (kvsim's variant): share_h = min(entries_h, floor((1-a) count_h + a S/H)), then the
  S - sum(share) left go to the best remaining scores across heads.
"""
import math

import numpy as np

import kvref
import ref_pyramidkv as rp

# A lava spec parsed with its defaults (budget 0.2, window 32, kernel 7, max pooling, floor_alpha
# 0.2, post_fill): the same parameters as the other SnapKV-scored budgets.
LavaParams = rp.PolicyParams


def head_scores(p, lay, h, cache, wp, dtype):
    """LAVa scores of cache[:len(cache) - len(wp)] for KV head h, computed in `dtype`."""
    nonwin = len(cache) - len(wp)
    if nonwin <= 0:
        return np.zeros(0, dtype)
    scale = np.abs(lay.values[h][cache[:nonwin]].astype(dtype)).sum(axis=1).max()
    best = None
    for g in range(h * lay.G, (h + 1) * lay.G):
        mean = kvref.snapkv_scores(lay.keys[h], lay.queries[g:g + 1], lay.qpos_index, cache, wp, nonwin, lay.d,
                                   dtype) / dtype(len(wp))
        pooled = kvref.pool1d(mean, p.kernel, p.pooling, dtype) * scale
        best = pooled if best is None else np.maximum(best, pooled)
    return best.astype(dtype)


def original_alloc(p):
    return (p.alloc or "original") == "original"


def select(p, caches, scores, wins, cap, configured):
    """Kept positions per head: caches[h] sorted positions, scores[h] its non-window scores,
    wins[h] its window entries (the last ones); configured: the uniform capacity C (window included)."""
    H = len(caches)
    S = max(0, H * cap - sum(wins))
    items = [(float(scores[h][i]), h, int(caches[h][i])) for h in range(H) for i in range(len(scores[h]))]
    order = sorted(items, key=lambda t: (-t[0], t[1], t[2]))
    count = [0] * H
    for _, h, _ in order[:S]:
        count[h] += 1
    keep = [set(int(t) for t in caches[h][len(caches[h]) - wins[h]:]) for h in range(H)]
    taken = 0
    for h in range(H):
        if original_alloc(p):
            floor_capacity = int(math.floor(p.floor_alpha * configured + 1e-9))   # int(base_capacity * floor_ratio)
            share = min(len(scores[h]), kvref.round_half_even((1 - p.floor_alpha) * count[h] + floor_capacity))
        else:
            share = min(len(scores[h]), int(math.floor((1 - p.floor_alpha) * count[h] + p.floor_alpha * S / H + 1e-9)))
        own = sorted(range(len(scores[h])), key=lambda i: (-float(scores[h][i]), i))[:share]
        keep[h].update(int(caches[h][i]) for i in own)
        taken += share
    rest = [t for t in order if t[2] not in keep[t[1]]]
    left = 0 if original_alloc(p) else max(0, S - taken)
    for _, h, pos in rest[:left]:
        keep[h].add(pos)
    return [np.array(sorted(k), dtype=np.int64) for k in keep]


def layer_statistic(p, lay, dtype=np.float64):
    """Normalized entropy of the layer's post-fill score map (the reference's "sparsity")."""
    n = lay.n
    wp = p.window_positions(0, n)
    cache = np.arange(n, dtype=np.int64)
    flat = np.concatenate([head_scores(p, lay, h, cache, wp, dtype) for h in range(lay.hkv)]).astype(np.float64)
    if flat.size < 2:
        return 1.0
    probs = flat / (flat.sum() + 1e-16)
    return float(-np.sum(probs * np.log(probs + 1e-16)) / math.log(flat.size))


def entropy_capacities(p, lays, n, dtype=np.float64):
    """{layer: C_l} for the traced layers `lays` ({layer: LayerData}) under layer_budget=entropy."""
    cap = rp.uniform_capacity(p, n, [(0, n)], 0)
    window = min(p.window, n)
    layers = sorted(lays)
    s = {L: layer_statistic(p, lays[L], dtype) for L in layers}
    pool = len(layers) * max(0, cap - window)
    total = sum(s.values())
    exact = {L: (pool * s[L] / total if total > 0 else pool / len(layers)) for L in layers}
    share = {L: int(math.floor(exact[L])) for L in layers}
    left = 0 if original_alloc(p) else pool - sum(share.values())
    for L in sorted(layers, key=lambda L: (-(exact[L] - math.floor(exact[L])), L))[:left]:
        share[L] += 1
    return {L: window + share[L] for L in layers}


def replay(p, lay, chunk=None, dtype=np.float64, capacity=None):
    """Final kept mask [H, n+m] (decode=none: generated tokens all kept) and the capacity of the
    last eviction point if it evicted (None otherwise: the layer then holds fewer). `capacity`
    replaces the uniform one (entropy_capacities; post_fill)."""
    n, m, H = lay.n, lay.m, lay.hkv
    chunks = kvref.prefill_chunks(n, chunk)
    resident = [np.zeros(0, dtype=np.int64) for _ in range(H)]
    last_cap = None
    for j, (a, b) in enumerate(chunks):
        resident = [np.concatenate([r, np.arange(a, b, dtype=np.int64)]) for r in resident]
        if not p.evicts_after(n, chunks, j):
            continue
        cap = rp.uniform_capacity(p, n, chunks, j) if capacity is None else capacity
        last_cap = None
        if sum(len(r) for r in resident) <= H * cap:
            continue
        wp = p.window_positions(a, b)
        wins = [int(np.sum(r >= wp[0])) for r in resident]
        scores = [head_scores(p, lay, h, resident[h], wp, dtype) for h in range(H)]
        resident = select(p, resident, scores, wins, cap, rp.uniform_capacity(p, n, chunks, j))
        last_cap = cap
    kept = np.zeros((H, n + m), dtype=bool)
    for h in range(H):
        kept[h, resident[h]] = True
        kept[h, n:] = True
    return kept, last_cap
