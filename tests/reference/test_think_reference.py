#!/usr/bin/env python3
"""think (ThinK, Xu et al. 2024, arXiv 2407.21018) against its authors' code and the kvpress port.

Original: SalesforceAIResearch/ThinK, commit d200577a7e52adf130772ca682ea958c2b442601 (the stored
snapshot's HEAD): ThinK_flash/src/kv_pruning_utils.py, function key_pruner_query_driven (called by
SnapKVCluster.update_thinkv on a prompt shorter than max_capacity_prompt, i.e. pure channel
pruning), and ThinK_flash/src/llama_model.py, function recover_cache and the decode branch of
llama_flash_attn2_forward_SnapKV_ThinK (keys = cat(recover_cache(pruned), cache of the recent and
decoded keys)). Both are transliterated line by line below in numpy. What they do: the last
recent_size (= 32, scripts/scripts_longBench/eval.sh) prompt keys stay whole; every earlier prompt key
loses the int(head_dim * ratio) channels with the lowest mean(q[-32:]^2) * mean(k^2) (k over ALL prompt
keys, recent ones included), zero-filled when recovered; decode keys are whole. The original scores
the last 32 queries, hard-coded; kvsim's `window` (default 32) stands for that 32 here.

The original runs after repeat_kv, so with GQA each QUERY head prunes its own channels. kvsim, like
NVIDIA/kvpress kvpress/presses/think_press.py ThinKPress.compress (commit
8bb29b9c3078452a86d692f29123fa6c793e2b05, also transliterated below), scores each KV head once with the
mean over its group of the query norms. So:
- MHA trace: kvsim's output error and bytes must equal the original's (same channels, same keys);
- GQA trace: kvsim against ThinKPress.compress's group-mean scoring with the original's recent split;
  the original's per-query-head error is printed beside it (docs/policy-sources.md "think");
- gqa=expand (issue 19: the original's layout, each query head pruning its own copy): kvsim's output
  error must equal the original's (post_fill) and the group-mean reference run on the KV heads
  repeated per query head (chunk), and its bytes count G copies.
recent=0 is ThinKPress exactly (every prompt key pruned). prefill=chunk is kvsim's extension (not
in either): once chunk j = [b_j, e_j) is done, keys [max(0, e_{j-1} - recent), max(0, e_j - recent))
lose the channels scored by that chunk alone (its last `window` queries, its keys).
Checked: output error (mean, p95) of the decode queries, recall 1, and the byte-weighted footprint and
peak_bytes of the rule in policies/policy.h, stored key bytes = e (D - pruned) 2 + (s - e) D 2 with e
the pruned prefix.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from test_kivi_reference import check_compressed_run, eval_positions  # noqa: E402

def topk_smallest_indices(x, k):
    """torch.topk(x, k, dim=-1, largest=False).indices (order within the k irrelevant here; ties to
    the lower index)."""
    order = np.argsort(x, axis=-1, kind="stable")
    return order[..., :k]


def key_pruner_query_driven(kv_states, q_states, recent_size=128, ratio=0.3, window=32):
    """ThinK_flash/src/kv_pruning_utils.py key_pruner_query_driven, in numpy (bsz, heads, seq, dim).
    `window` replaces the hard-coded 32 of q_states[..., -32:, :]."""
    # _, _, seqlen, head_dim = kv_states.shape
    _, _, seqlen, head_dim = kv_states.shape
    # k = int(head_dim * ratio)
    k = int(head_dim * ratio)
    # queries_norm = torch.pow(q_states[..., -32:, :], 2).mean(dim=2)
    queries_norm = np.power(q_states[..., -window:, :], 2).mean(axis=2)
    # keys_norm = torch.pow(kv_states, 2).mean(dim=2)
    keys_norm = np.power(kv_states, 2).mean(axis=2)
    # key = queries_norm * keys_norm
    key = queries_norm * keys_norm
    # _, indices = torch.topk(key, k, dim=-1, largest=False)
    indices = topk_smallest_indices(key, k)
    # keep_idx = indices.sort().values
    keep_idx = np.sort(indices, axis=-1)
    # mask = torch.zeros(key.shape, dtype=torch.bool).to(kv_states.device)
    mask = np.zeros(key.shape, dtype=bool)
    # mask = mask.scatter_(-1, keep_idx, 1)
    np.put_along_axis(mask, keep_idx, True, axis=-1)
    # mask_k = mask.unsqueeze(2).expand(-1, -1, seqlen - recent_size, -1)
    pruned_len = max(0, seqlen - recent_size)  # (torch.expand refuses a negative size; no keys then)
    mask_k = np.broadcast_to(mask[:, :, None, :], mask.shape[:2] + (pruned_len, mask.shape[-1]))
    # return kv_states[:, :, :seqlen - recent_size, :][~mask_k], kv_states[:, :, seqlen - recent_size:, :], ~mask
    return kv_states[:, :, :pruned_len, :][~mask_k], kv_states[:, :, pruned_len:, :], ~mask


def recover_cache(key_states_pruned, mask, layer_idx, ratio=0.4):
    """ThinK_flash/src/llama_model.py recover_cache, in numpy (mask = the kept channels, ~mask above)."""
    # _, heads, head_dim  = mask.shape
    _, heads, head_dim = mask.shape
    # k = head_dim - int(head_dim * ratio)
    k = head_dim - int(head_dim * ratio)
    # sqlen = int(key_states_pruned.shape[-1]/(k*heads))
    sqlen = int(key_states_pruned.shape[-1] / (k * heads))
    # mask = mask.unsqueeze(2).expand(-1, -1, sqlen, -1)
    mask = np.broadcast_to(mask[:, :, None, :], (mask.shape[0], heads, sqlen, head_dim))
    # recovered_key_states = torch.zeros(1, heads, sqlen, head_dim, ...)
    recovered_key_states = np.zeros((1, heads, sqlen, head_dim), dtype=key_states_pruned.dtype)
    # recovered_key_states[mask] = key_states_pruned
    recovered_key_states[mask] = key_states_pruned
    return recovered_key_states


def original_keys(keys, queries, n, ratio, recent, window):
    """The keys each QUERY head attends to in decode, as the original stores them: [Hq, n + m, d].
    keys [Hkv, T, d], queries [Hq, n, d] (every prompt query; only the last `window` are read)."""
    hq, hkv = queries.shape[0], keys.shape[0]
    # key_states = repeat_kv(key_states, self.num_key_value_groups)
    kv_states = np.repeat(keys[None, :, :n, :], hq // hkv, axis=1)
    kv_pruned, kv_recent, mask = key_pruner_query_driven(kv_states, queries[None], recent, ratio, window)
    # decode: key_states = torch.cat([recover_cache(...), cache (recent + decoded keys)], dim=-2)
    decoded = np.repeat(keys[None, :, n:, :], hq // hkv, axis=1)
    return np.concatenate([recover_cache(kv_pruned, mask, 0, ratio), kv_recent, decoded], axis=2)[0]


def think_press_scores(keys, queries_window, num_key_value_groups):
    """kvpress ThinKPress.compress up to key_scores, in numpy: keys (bsz, Hkv, k_len, d), the window
    queries (bsz, Hq, window, d) -> (bsz, Hkv, d)."""
    bsz, num_key_value_heads, k_len, head_dim = keys.shape
    # queries_norm = torch.pow(queries, 2).mean(dim=2)  # (bsz, num_heads, head_dim)
    queries_norm = np.power(queries_window, 2).mean(axis=2)
    # queries_norm = queries_norm.view(bsz, num_key_value_heads, num_key_value_groups, module.head_dim).mean(2)
    queries_norm = queries_norm.reshape(bsz, num_key_value_heads, num_key_value_groups, head_dim).mean(axis=2)
    # keys_norm = torch.pow(keys, 2).mean(dim=2)
    keys_norm = np.power(keys, 2).mean(axis=2)
    # key_scores = queries_norm * keys_norm  # (bsz, num_key_value_heads, head_dim)
    return queries_norm * keys_norm


def kvsim_keys(keys, queries, spans, ratio, recent, window):
    """kvsim's stored keys [Hkv, T, d]: per span, ThinKPress's group-mean scores of the span's keys and
    last `window` queries; `n_pruned = int(head_dim * ratio)` lowest channels zeroed (kvpress
    `keys.scatter_(-1, indices, 0)`) in the span's share of the pruned prefix (the original's split)."""
    hq, hkv, d = queries.shape[0], keys.shape[0], keys.shape[2]
    out = keys.astype(np.float64).copy()
    done = 0
    for b, e in spans:
        end = max(0, e - recent)
        if end <= done:
            continue
        scores = think_press_scores(keys[None, :, b:e, :].astype(np.float64),
                                    queries[None, :, max(b, e - window):e, :].astype(np.float64), hq // hkv)
        # indices = key_scores.topk(n_pruned, dim=-1, largest=False).indices
        indices = topk_smallest_indices(scores, int(d * ratio))[0]
        for h in range(hkv):
            out[h, done:end, indices[h]] = 0.0
        done = end
    return out


def self_tests(ck):
    # The hand head of tests/policies/think_test.cpp: scores [5, 2, 2, 4.5] (window 2).
    k = np.array([[1, 2, 0, 1], [1, 2, 0, 1], [1, 0, 2, 1], [1, 0, 2, 1]], dtype=np.float64)
    q = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [3, 1, 1, 0], [1, 1, 1, 3]], dtype=np.float64)
    want = k.copy()
    want[:, [1, 2]] = 0
    ck.eq(original_keys(k[None], q[None], 4, 0.5, 0, 2)[0].tolist(), want.tolist(), "hand: ratio 0.5 prunes channels 1, 2")
    want = k.copy()
    want[:3, [1, 2]] = 0
    ck.eq(original_keys(k[None], q[None], 4, 0.5, 1, 2)[0].tolist(), want.tolist(), "hand: recent 1 keeps key 3 whole")
    ck.eq(original_keys(k[None], q[None], 4, 0.5, 4, 2)[0].tolist(), k.tolist(), "hand: recent >= prompt, nothing pruned")
    ck.eq(kvsim_keys(k[None], q[None], [(0, 4)], 0.5, 1, 2)[0].tolist(), want.tolist(), "hand: kvsim = original (MHA)")
    # Window 1 (row 3 only): qn = [1, 1, 1, 9] -> scores [1, 2, 2, 9]: channels 0 and 1 go.
    want = k.copy()
    want[:, [0, 1]] = 0
    ck.eq(original_keys(k[None], q[None], 4, 0.5, 0, 1)[0].tolist(), want.tolist(), "hand: window 1")
    # Chunks [0, 2), [2, 4), recent 1: key 0 loses chunk 0's channels 0, 1 (zero queries: ties to the
    # lower index), keys 1, 2 chunk 1's channels 1, 2 (scores [5, 0, 4, 4.5]).
    want = k.copy()
    want[0, [0, 1]] = 0
    want[1:3, [1, 2]] = 0
    ck.eq(kvsim_keys(k[None], q[None], [(0, 2), (2, 4)], 0.5, 1, 2)[0].tolist(), want.tolist(), "hand: chunked")
    # GQA: two query heads on one KV head with opposite window norms. The original prunes per query
    # head; the group mean prunes the same channels for both.
    q2 = np.zeros((2, 4, 4))
    q2[0, 3] = [3, 0, 0, 1]  # qn head 0 = [9, 0, 0, 1]
    q2[1, 3] = [0, 3, 1, 0]  # qn head 1 = [0, 9, 1, 0]
    kk = np.ones((1, 4, 4))
    per_head = original_keys(kk, q2, 4, 0.5, 0, 1)
    ck.eq([np.nonzero(per_head[g, 0] == 0)[0].tolist() for g in range(2)], [[1, 2], [0, 3]], "hand: per query head")
    ck.eq(np.nonzero(kvsim_keys(kk, q2, [(0, 4)], 0.5, 0, 1)[0, 0] == 0)[0].tolist(), [2, 3], "hand: group mean")


def decode_errors(keys, values, queries, qpos, n, m, d, stored_keys_of):
    """Output errors of the decode queries over every head: stored_keys_of(query head) -> [T, d]."""
    index = {int(p): i for i, p in enumerate(qpos)}
    hq, hkv = queries.shape[0], keys.shape[0]
    G = hq // hkv
    errs = []
    for h in range(hkv):
        for t in eval_positions(n, m):
            for g in range(G):
                q = queries[h * G + g][index[t]].astype(np.float64)
                kp = stored_keys_of(h * G + g)

                def attend(kmat):
                    z = kmat[:t + 1] @ q / np.sqrt(d)
                    p = np.exp(z - z.max())
                    return (p / p.sum()) @ values[h][:t + 1].astype(np.float64)
                o = attend(keys[h].astype(np.float64))
                errs.append(np.linalg.norm(attend(kp) - o) / np.linalg.norm(o))
    return errs


MODELS = [("mha", 4, 4, 32, 43), ("gqa", 8, 2, 32, 41)]
N, M, CHUNK = 300, 24, 100
SPECS = ["think(ratio=0.5)", "think(ratio=0.4, window=32, recent=32)", "think(ratio=0.5, recent=0)",
         "think(ratio=0.25, window=16, recent=8)", "think(ratio=0.5, window=32, prefill=chunk)",
         "think(ratio=0.25, window=40, recent=0, prefill=chunk)", "think(ratio=0.5, recent=150, prefill=chunk)",
         "think(ratio=0.5, gqa=expand)", "think(ratio=0.25, window=16, recent=8, gqa=expand)",
         "think(ratio=0.5, window=32, prefill=chunk, gqa=expand)"]


def run(ck, args):
    for tag, hq, hkv, d, seed in MODELS:
        made = kvref.synth_trace(ck, args, tag, hq, hkv, d, N, M, seed, extra=["--chunk-tokens", CHUNK, "--window", 40])
        if made is None:
            continue
        wd, model_ini, trace = made
        layers = kvref.read_layer_arrays(trace)
        got = kvref.run_policies(ck, args.kvsim, wd, model_ini, SPECS, CHUNK, "think")
        if got is None:
            continue
        for spec in SPECS:
            _, a = kvref.parse_spec(spec)
            ratio, window = float(a["ratio"]), int(a.get("window", 32))
            recent, chunked = int(a.get("recent", 32)), a.get("prefill") == "chunk"
            gqa = a.get("gqa", "mean")
            G = hq // hkv if gqa == "expand" else 1   # copies of each KV head
            canonical = "think(ratio=%s, window=%d, recent=%d, gqa=%s, prefill=%s)" % (
                a["ratio"], window, recent, gqa, "chunk" if chunked else "post_fill")
            r = got.get(canonical)
            if not ck.check(r is not None, "%s: %s in summary" % (tag, canonical), sorted(got)):
                continue
            spans = [(b, min(b + CHUNK, N)) for b in range(0, N, CHUNK)] if chunked else [(0, N)]
            errs, original_errs = [], []
            for keys, values, queries, qpos in layers:
                index = {int(p): i for i, p in enumerate(qpos)}
                # The prompt queries the scoring reads (the trace stores the last 40 of each chunk).
                qfull = np.zeros((hq, N, d))
                for t in range(N):
                    if t in index:
                        qfull[:, t] = queries[:, index[t]]
                # expand: the group-mean rule on the KV heads repeated per query head (one query head each).
                stored = kvsim_keys(np.repeat(keys, G, axis=0), qfull, spans, ratio, recent, window)
                errs += decode_errors(keys, values, queries, qpos, N, M, d, lambda qh: stored[qh // (hq // hkv // G)])
                if not chunked:
                    orig = original_keys(keys.astype(np.float64), qfull, N, ratio, recent, window)
                    original_errs += decode_errors(keys, values, queries, qpos, N, M, d, lambda qh: orig[qh])
            errs = np.array(errs)
            what = "%s %s" % (tag, canonical)
            if original_errs:
                original_errs = np.array(original_errs)
                if hq == hkv or G > 1:  # MHA or expand: kvsim's stored keys are the original's
                    ck.close(errs.mean(), original_errs.mean(), what + ": reference == original", rel=1e-12)
                print("%s: output_error mean kvsim %.4g, original (per query head) %.4g, p95 %.4g vs %.4g" % (
                    what, r["output_error"]["mean"], original_errs.mean(), r["output_error"]["p95"],
                    np.percentile(original_errs, 95)))
            pruned = int(d * ratio)

            def stored_bytes(s, spans=spans, recent=recent, pruned=pruned):
                done = max([max(0, e - recent) for _, e in spans if e <= min(s, N)], default=0)
                return done * (2 * d - pruned) * 2 + (s - done) * 2 * d * 2
            check_compressed_run(ck, r, what, stored_bytes, errs, N, M, CHUNK, d, 2 * hkv, G)  # 2 layers, G copies


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
