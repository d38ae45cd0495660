"""Reference for adakv: a step-by-step numpy transliteration of the authors' code.

alloc=original (kvsim's default) follows
  repository FFY0/AdaKV, commit efe4e2eea0099bf497f0c175ac5440a915d89f83,
  file adaptive_snapkv/monkeypatch/snapkv_utils.py, class AdaptiveSnapKVCluster:
  __init__ (base_capacity -= window_size; floor_capacity = int(base_capacity * floor_alpha)),
  calcul_attn_sore and update_kv_gqa (its gqa_support=True path with gqa_func="mean",
  experiments/LongBench/pred.py's default gqa_func: one kept set per KV head, as kvsim's ledger
  counts entries; for an MHA model it is the same as update_kv_wo_gqa). kvsim's gqa=max is
  gqa_func="max"; gqa=expand is gqa_support=False (pred.py's default: repeat_kv first, then
  update_kv_wo_gqa over the query heads), replayed here on kvref.expanded_layer, where each cache
  head has one query head and the group reduction is the identity.
  Defaults: adaptive_snapkv/monkeypatch/monkeypatch.py config_compress (window_size 32,
  kernel_size 7, pooling "maxpool", skip 0, normalize None, pyram_mode False) with
  experiments/LongBench/pred.py's --floor_alpha default 0.2 (config_compress's own default, and the
  README's example, is 0.5).

Each transliterated line carries the original's statement it stands for. Where this file departs
from the original, on purpose:
  - per KV head instead of one batched tensor: the original's operations are independent per head
    except the layer-wide topk, which is done on the concatenation of the heads' sorted scores
    (its reshape). This lets heads hold different numbers of entries (prefill=chunk, decode),
    which the original never meets (it compresses once, after the prompt);
  - float64 attention (the original: model dtype logits, softmax in float32 cast back); the cap
    formula is float32, as torch computes it (int64 tensor * python float -> float32);
  - ties: torch.sort/torch.topk leave their order unspecified; here the lower head, then the lower
    position, goes first (kvsim's rule);
  - "no compression" (original: base_capacity > attn_score.size(-1)) is tested as
    sum over heads of scored entries < H * B, the same test for equal heads.

alloc=kvpress is NVIDIA/kvpress kvpress/presses/adakv_press.py as described in policy-notes.md
"AdaKV": n_safe = int(n_kept * alpha) with n_kept the window-inclusive budget; each head keeps its
window and its top n_safe - window entries, then the layer's best remaining entries until it holds
H * n_kept.
"""
import math

import numpy as np

import kvref
import ref_pyramidkv as rp


# ---------------------------------------------------------------------------------------------
# FFY0/AdaKV AdaptiveSnapKVCluster, transliterated
# ---------------------------------------------------------------------------------------------

def init_capacities(max_capacity, window_size, floor_alpha):
    """__init__: base_capacity (the scored budget B) and floor_capacity."""
    base_capacity = max_capacity - window_size                       # self.base_capacity = base_capacity - window_size
    floor_capacity = int(base_capacity * floor_alpha)                # self.floor_capacity = int(self.base_capacity * self.floor_ratio)
    return base_capacity, floor_capacity


def pool1d(x, kernel_size, pooling):
    """F.avg_pool1d / F.max_pool1d(x, kernel_size, padding=kernel_size // 2, stride=1)."""
    if pooling == "maxpool":
        return kvref.pool1d(x, kernel_size, "max")                   # pads with -inf
    if pooling == "avgpool":
        return kvref.pool1d(x, kernel_size, "avg")                   # count_include_pad: zeros, / kernel
    raise ValueError("Pooling method not supported")


def calcul_attn_sore(keys, window_queries, kernel_size, pooling, gqa_func="mean"):
    """calcul_attn_sore for one KV head, gqa_support=True, gqa_func "mean" or "max".

    keys [L, d]: the head's cached keys (key_states = repeat_kv(...) gives every query head of the
    group these keys); window_queries [G, w, d]: query_states[..., -window_size:, :] of the group.
    Returns attn_weights_mean_pooling [L - w]."""
    G, window_size, head_dim = window_queries.shape
    # attn_weights = torch.matmul(query_states[..., -self.window_size:, :], key_states.transpose(2, 3)) / math.sqrt(head_dim)
    attn_weights = np.einsum("gid,jd->gij", window_queries, keys) / math.sqrt(head_dim)
    # mask = torch.full((self.window_size, self.window_size), torch.finfo(attn_weights.dtype).min)
    mask = np.full((window_size, window_size), np.finfo(attn_weights.dtype).min)
    # mask_cond = torch.arange(mask.size(-1))
    mask_cond = np.arange(mask.shape[-1])
    # mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
    mask[mask_cond[None, :] < (mask_cond + 1).reshape(mask.shape[-1], 1)] = 0
    # attn_weights[:, :, -self.window_size:, -self.window_size:] += attention_mask
    attn_weights[:, :, -window_size:] += mask[None, :, :]
    # attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
    attn_weights = np.exp(attn_weights - attn_weights.max(axis=-1, keepdims=True))
    attn_weights /= attn_weights.sum(axis=-1, keepdims=True)
    # attn_weights_mean = attn_weights[:, :, -self.window_size:, : -self.window_size].mean(dim=-2)
    attn_weights_mean = attn_weights[:, -window_size:, :-window_size].mean(axis=-2)
    # attn_weights_mean = attn_weights_mean.view(bsz, num_heads // groups, groups, -1)
    if gqa_func == "max":
        # attn_weights_mean = attn_weights_mean.max(dim=-2).values
        attn_weights_mean = attn_weights_mean.max(axis=0)
    elif gqa_func == "mean":
        # attn_weights_mean = attn_weights_mean.mean(dim=-2)
        attn_weights_mean = attn_weights_mean.mean(axis=0)
    else:
        raise ValueError("gqa_func not supported")
    # attn_weights_mean_pooling = F.max_pool1d(attn_weights_mean, kernel_size, padding=kernel_size // 2, stride=1)
    return pool1d(attn_weights_mean, kernel_size, pooling)


def stable_descending(scores):
    """attn_score.sort(dim=-1, descending=True) for one head; ties: lower position first."""
    sorted_attn_score_indices = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    return np.asarray(scores)[sorted_attn_score_indices], sorted_attn_score_indices


def head_adaptive_capacity(attn_scores, base_capacity, floor_ratio, floor_capacity):
    """update_kv_gqa's budget allocation (skip 0, normalize None): attn_scores[h] are head h's
    pooled scores. Returns (head_adaptive_capacity [H] ints, sorted_attn_score_indices per head)."""
    num_kv_heads = len(attn_scores)
    # sorted_attn_score, sorted_attn_score_indices = attn_score.sort(dim=-1, descending=True)
    sorted_pairs = [stable_descending(s) for s in attn_scores]
    sorted_attn_score = [s for s, _ in sorted_pairs]
    sorted_attn_score_indices = [i for _, i in sorted_pairs]
    # adaptive_attn_score = adaptive_attn_score.reshape(bsz, length * num_heads // self.num_key_value_groups)
    adaptive_attn_score = np.concatenate(sorted_attn_score)
    head_of = np.concatenate([np.full(len(s), h) for h, s in enumerate(sorted_attn_score)])
    # sorted_indices = torch.topk(adaptive_attn_score, k=num_heads*self.base_capacity//self.num_key_value_groups).indices
    k = num_kv_heads * base_capacity
    order = np.lexsort((np.arange(len(adaptive_attn_score)), -adaptive_attn_score))
    # sorted_indices = sorted_indices // length
    sorted_indices = head_of[order[:k]]
    # head_adaptive_capacity.scatter_add_(-1, sorted_indices, torch.ones_like(sorted_indices))
    counts = np.bincount(sorted_indices, minlength=num_kv_heads).astype(np.int64)
    # assert head_adaptive_capacity.sum().item() == num_heads*self.base_capacity//self.num_key_value_groups
    assert counts.sum() == k
    return head_caps(counts, floor_ratio, floor_capacity), sorted_attn_score_indices


def head_caps(counts, floor_ratio, floor_capacity):
    """torch.round(head_adaptive_capacity * (1-self.floor_ratio) + self.floor_capacity).int():
    an int64 tensor times a python float is float32; torch.round rounds half to even."""
    capacity = np.asarray(counts, dtype=np.int64).astype(np.float32) * np.float32(1 - floor_ratio)
    capacity = capacity + np.float32(floor_capacity)
    return np.round(capacity).astype(np.int64)


def adakv_original_step(p, lay, chunk):
    """One eviction of alloc=original, for rp.guided_replay: every head keeps its window
    (origin_heads_key_states[head_idx][:, :, -self.window_size:]) and competes for its own
    cache_index = sorted_attn_score_indices[head_idx][..., :head_adaptive_capacity[0][head_idx]]."""
    chunks = kvref.prefill_chunks(lay.n, chunk)

    def step(j, resident):
        cap = rp.uniform_capacity(p, lay.n, chunks, j)
        a, b = chunks[j]
        wp = p.window_positions(a, b)
        base_capacity, floor_capacity = init_capacities(cap, len(wp), p.floor_alpha)
        base_capacity = max(0, base_capacity)
        scored = [cache[: len(cache) - len(wp)] for cache in resident]
        # if self.base_capacity > attn_score.size(-1): not compress
        if sum(len(s) for s in scored) < len(resident) * base_capacity:
            return None
        attn_scores = []
        for h, cache in enumerate(resident):
            qg = lay.queries[h * lay.G:(h + 1) * lay.G][:, [lay.qpos_index[int(t)] for t in wp], :]
            attn_scores.append(calcul_attn_sore(lay.keys[h][cache], qg, p.kernel, p.pooling + "pool",
                                                "max" if p.gqa == "max" else "mean"))
        caps, order = head_adaptive_capacity(attn_scores, base_capacity, p.floor_alpha, floor_capacity)
        always, comps = [], []
        for h, cache in enumerate(resident):
            always += [(h, int(t)) for t in wp]
            raw = {(h, int(t)): float(v) for t, v in zip(scored[h], attn_scores[h])}
            ranking = [(h, int(scored[h][i])) for i in order[h]]
            comps.append(rp.Competition(ranking, raw, min(int(caps[h]), len(ranking)), {it: [it] for it in raw}))
        return always, comps

    return step


# ---------------------------------------------------------------------------------------------
# NVIDIA/kvpress AdaKVPress (alloc=kvpress)
# ---------------------------------------------------------------------------------------------

def adakv_kvpress_step(p, lay, chunk):
    chunks = kvref.prefill_chunks(lay.n, chunk)

    def step(j, resident):
        cap = rp.uniform_capacity(p, lay.n, chunks, j)
        H = len(resident)
        if sum(len(r) for r in resident) <= H * cap:
            return None
        a, b = chunks[j]
        wp = p.window_positions(a, b)
        n_safe = int(math.floor(cap * p.floor_alpha))
        always, raw, safe = [], {}, []
        for h, cache in enumerate(resident):
            nonwin = cache[: len(cache) - len(wp)]
            s = rp.snapkv_head_scores(p, lay, h, cache, wp)
            head_raw = {(h, int(t)): float(v) for t, v in zip(nonwin, s)}
            safe += rp.ranked(head_raw.keys(), head_raw)[: max(0, n_safe - len(wp))]
            raw.update(head_raw)
            always += [(h, int(t)) for t in wp]
        safe_set = set(safe)
        rest = rp.ranked([it for it in raw if it not in safe_set], raw)
        K = H * cap - len(always)
        # One competition: safe entries rank first (they are forced), then the layer-wide order.
        comp = rp.Competition(safe + rest, raw, K, {it: [it] for it in raw})
        return always, [comp]

    return step


def adakv_step(p, lay, chunk):
    return adakv_kvpress_step(p, lay, chunk) if p.alloc == "kvpress" else adakv_original_step(p, lay, chunk)
