"""KV-Compress's post-fill compression as its authors' code does it, step by step, in numpy float64.

Transliterated from IsaacRe/vllm-kvcompress @5e2a639447aeda377ddfaefdb300fa011bf1cad3 (never from
kvsim's C++):
  1. vllm/attention/backends/flash_attn.py  _naive_kvc_attention / _naive_kvc_masked_attention
     (the prefill path the engine runs: vllm/config.py KVCompressConfig sets enable_flash_kvc = False):
     per query head (K repeated per query head, repeat_kv), the last n_observed prompt queries,
     causal softmax, squared (use_l2), masked by tril(ones, q_offset - kv_metric_buffer_len) with
     the run scripts' --metric-collection-buffer-size 0, summed over the queries, then
     F.max_pool1d(kernel_size=7, padding=3, stride=1) along all prompt keys (use_maxpool);
  2. vllm/kvcompress/metrics.py  CompressionMetrics.aggregate_prefill: .view(seq_len,
     num_kv_heads, -1).sum(dim=-1), i.e. summed over the KV head's consecutive query heads;
  3. vllm/kvcompress/scheduler.py  CompressionScheduler._schedule_seq_evictions (max_cache_tokens
     mode, which experiments/run_longbench.py uses): max_cache_tokens rounded up to a block multiple,
     evict_block_count = sequence block count - ceil(max_cache_tokens * L * H / block_size);
     _schedule_compression: last_token_positions = seq_len - 1 with seq_len counting the token just
     sampled, whose KV is not yet cached (vllm/core/scheduler.py schedule_kvcompress runs before the
     step that caches it);
  4. vllm/kvcompress/metrics.py  CompressionMetrics.schedule_evictions: metrics of slots that are
     unused, past last_token_position - num_protected or below num_sinks set to inf; sorted per
     (seq, layer, head); block metric = sorted[hanging_token_count - 1] of each block_size chunk;
     blocks sorted across the sequence (all layers and heads), the first evict_block_count taken
     less those that are inf;
  5. csrc/kvcompress_eviction_kernels.cu  count_block_evictions_kernel: per head the leading
     evicted chunks counted, evicted KVs = (blocks - 1) * block_size + hanging_token_count
     (metrics.py evicted_kv_count), the lowest that many of the head's sorted metrics.

kvsim's rank=layer variant is the same schedule applied to one layer at a time (its own blocks and
budget). Ties: torch.sort is not stable; here ties go to the older entry within a head and to the
lower (layer, head, block) across heads, the order kvsim documents.
"""
import math

import numpy as np

import kvref


def params(spec):
    """kvsim spec -> (budget, block_tokens, window, kernel, rank, prefill)."""
    name, args = kvref.parse_spec(spec)
    assert name == "kvcompress", spec
    budget = args.pop("budget", "0.2")
    bs = int(args.pop("block_tokens", 16))
    window = int(args.pop("window", 32))
    kernel = int(args.pop("kernel", 7))
    rank = args.pop("rank", "sequence")
    prefill = args.pop("prefill", "post_fill")
    decode = args.pop("decode", "none")
    assert prefill == "post_fill" and decode == "none", "the reference models compress_once after prefill: " + spec
    assert not args, args
    return budget, bs, window, kernel, rank, prefill


def max_cache_tokens(budget, window, n):
    """kvsim's budget -> the capacity of DESIGN.md §4 that kvsim passes as max_cache_tokens."""
    b = float(budget)
    if b < 1:
        return min(kvref.round_half_even(b * n) + window, n)
    return min(int(b), n)


def max_pool1d(x, kernel):
    """F.max_pool1d(kernel_size=kernel, padding=kernel // 2, stride=1) along the last axis (padding
    never wins: torch pads max pooling with -inf)."""
    if kernel == 1:
        return x
    pad = kernel // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], constant_values=-np.inf)
    return np.max(np.stack([padded[..., i:i + x.shape[-1]] for i in range(kernel)]), axis=0)


def naive_kvc_masked_attention(query, key, scale, buffer_len, kernel, q_offset):
    """_naive_kvc_masked_attention: query [n_observed, heads, d], key [seq, heads, d] (repeated per
    query head) -> kv_metrics [heads, seq]."""
    n_observed = query.shape[0]
    seq_len = key.shape[0]
    ones = np.ones((n_observed, seq_len))
    attn_mask = np.triu(ones, k=q_offset + 1)                       # torch.triu(ones, diagonal=q_offset + 1)
    attn_weights = scale * np.einsum("qhd,khd->hqk", query, key)
    attn_weights = np.where(attn_mask[None] > 0, -np.inf, attn_weights)
    attn_weights = np.exp(attn_weights - attn_weights.max(axis=-1, keepdims=True))
    attn_weights /= attn_weights.sum(axis=-1, keepdims=True)       # torch.softmax(dim=-1)
    attn_weights = attn_weights ** 2                                # use_l2
    kv_metric_mask = np.tril(ones, k=q_offset - buffer_len)        # torch.tril(ones, diagonal=q_offset - buffer)
    kv_metrics = (attn_weights * kv_metric_mask).sum(axis=-2)      # [heads, seq]
    return max_pool1d(kv_metrics, kernel)                           # use_maxpool (kernel 7; 1: --no-maxpool)


def prefill_metrics(lay, n, n_observed, kernel):
    """_naive_kvc_attention for one prompt of one layer, then aggregate_prefill -> [num_kv_heads, n]."""
    key = np.repeat(lay.keys[:, :n, :], lay.G, axis=0).transpose(1, 0, 2)      # repeat_kv: [n, hq, d]
    rows = [lay.qpos_index[int(p)] for p in range(n - min(n, n_observed), n)]
    query = lay.queries[:, rows, :].transpose(1, 0, 2)                         # [n_obs, hq, d]
    start_trunc = n - min(n, n_observed)
    kv_metrics = naive_kvc_masked_attention(query, key, 1.0 / math.sqrt(lay.d), 0, kernel, start_trunc)
    # kv_metric_output [seq, heads] -> .view(seq_len, num_kv_heads, -1).sum(dim=-1)
    return kv_metrics.T.reshape(n, lay.hkv, lay.G).sum(axis=-1).T


def schedule(metrics_by_head, n, bs, num_protected, max_cache, budget_heads):
    """One compression of a sequence whose heads (the keys of metrics_by_head, any (layer, head)
    labels in ranking order) each cache the n prompt entries. budget_heads: the heads the budget is
    counted over. -> {head: evicted positions}."""
    # _schedule_seq_evictions (max_cache_tokens mode).
    max_cache = (max_cache + bs - 1) // bs * bs
    blocks_per_head = (n + bs - 1) // bs
    max_cache_blocks = (max_cache * budget_heads + bs - 1) // bs
    evict_block_count = max(0, blocks_per_head * len(metrics_by_head) - max_cache_blocks)
    # schedule_evictions: last_token_position = seq_len - 1 = n (the sampled token counts).
    max_in_range = n - num_protected
    hanging = n - (blocks_per_head - 1) * bs
    sorted_positions, block_metrics = {}, []
    for label, metric in metrics_by_head.items():
        slots = np.full(blocks_per_head * bs, np.inf)               # unused slots of the last block: inf
        positions = np.arange(n)
        slots[:n] = np.where(positions <= max_in_range, metric, np.inf)   # num_sinks = 0
        order = np.argsort(slots, kind="stable")                    # ties: older first
        sorted_positions[label] = order
        sm = slots[order].reshape(-1, bs)
        for c, v in enumerate(sm[:, hanging - 1]):                  # gather(hanging_tokens - 1)
            block_metrics.append((v, len(block_metrics), label, c))
    block_metrics.sort(key=lambda t: (t[0], t[1]))                  # by metric; ties: (layer, head, block)
    chosen = block_metrics[:evict_block_count]
    chosen = [t for t in chosen if t[0] != np.inf]                  # unevicted_offset -= num_evicted_infs
    count = {label: 0 for label in metrics_by_head}
    taken = {(t[2], t[3]) for t in chosen}
    for label in metrics_by_head:                                   # count_block_evictions: leading blocks
        while (label, count[label]) in taken:
            count[label] += 1
    out = {}
    for label, k in count.items():
        evicted_kv = (k - 1) * bs + hanging if k > 0 else 0         # metrics.py evicted_kv_count
        out[label] = np.sort(sorted_positions[label][:evicted_kv])
    return out


def kept_masks(spec, layers):
    """kvsim spec and {layer: LayerData} (every layer of the model traced) -> {layer: kept mask
    [H, n + m]} after the post-fill compression (generated tokens all kept)."""
    budget, bs, window, kernel, rank, _ = params(spec)
    any_lay = next(iter(layers.values()))
    n, m, H = any_lay.n, any_lay.m, any_lay.hkv
    max_cache = max_cache_tokens(budget, window, n)
    metrics = {(L, h): row for L, lay in sorted(layers.items())
               for h, row in enumerate(prefill_metrics(lay, n, window, kernel))}
    if rank == "sequence":
        evicted = schedule(metrics, n, bs, window, max_cache, H * len(layers))
    else:
        evicted = {}
        for L in sorted(layers):
            evicted.update(schedule({k: v for k, v in metrics.items() if k[0] == L}, n, bs, window, max_cache, H))
    out = {}
    for L, lay in layers.items():
        mask = np.ones((H, n + m), dtype=bool)
        for h in range(H):
            mask[h, evicted[(L, h)]] = False
        out[L] = mask
    return out
