"""Numpy reference for kvsim's kvzip policy: KVzip (Kim et al. 2025, arXiv 2505.23416) transliterated
step by step from the original, snu-mllab/KVzip @ 5d8472975d286e3da6b52178af39d18904330c0d, not from
kvsim's C++:
  1. model/wrapper.py ModelKVzip.prefill: the cache holds [system prompt | context]; evict_range =
     (len(system prompt), len(prefill)); kvcache.py EvictCache.__init__: sink = start_idx.
     kvsim's mapping: the system prompt is the first `sinks` positions, the context [sinks, n - window)
     (the last `window` prompt positions stand for the question, which KVzip appends after pruning).
  2. model/wrapper.py ModelKVzip.self_task / scoring: the context is cut into chunks (chunk_fn,
     chunk_size=2000); chunk i is re-read by feeding [repeat prompt | postfix | chunk] on the prompt's
     cache (update_cache=False, so passes do not see each other), start_idx..end_idx = the chunk.
     Here the trace supplies them: layer_<L>/recon_passes (context span, rows of its own tokens in
     recon_keys), recon_queries (the stored queries of those tokens) and recon_query_rows.
  3. attention/score.py KVScore._get_score, per layer and pass: key_states = cat(cache[:, :, :sink],
     cache[:, :, start:end], key_states[:, :, -q_len:]) (the pass's own keys); attn =
     q k^T / sqrt(d); _mask_causal adds the q_len x q_len causal mask (finfo.min above the diagonal)
     to the last q_len columns; softmax over the last axis; attn[..., sink:sink + ctx_len]; amax over
     (group, q): GQA takes the max over the KV head's query heads. Scores concatenate over chunks.
     A trace stores a subset of the pass's queries: the mask rows taken are theirs (recon_query_rows).
  4. attention/kvcache.py EvictCache.prune(level="pair") -> score.py KVScore._threshold:
     score = stack over layers; sort descending; n = max(int(len * ratio) - 1, 0); thres =
     sorted[n]; valid = score > thres (strict). level="pair-uniform" -> _threshold_uniform: per
     layer and head topk(int(ctx_len * ratio)).
  5. kvcache.py _get_valid: valid_pad (system prompt) and everything after the context stay.
Where kvsim generalises (named in docs/policy-sources.md "kvzip"): sink keys are [0, min(sinks,
chunk start)) (the original's chunks start exactly at sink); context positions no pass re-reads
score 0; the softmax runs in float64 here, float32 in kvsim, the model dtype (bf16) in the original
(bf16() below emulates it for the measured effect).

kvsim's own allocations (DESIGN.md §4 budget; not in the original) keep the earlier replay:
  - alloc=layer|head: at an eviction point each KV head keeps its protected window (the last
    `window` positions processed, in chunk mode the chunk's own last min(window, chunk)) and, by
    score, the rest of the capacity (window included); positions < sinks and generated positions
    rank above every prompt entry (ties: lower head, then lower position); alloc=head gives every
    head its own capacity, alloc=layer pools heads x capacity over the layer's heads;
  - level=head: head score = max of S[h, j] over j in [sinks, n - window); floor(budget x L x H)
    heads of the model, spread evenly over the layers, the best of each layer, keep everything, the
    others keep positions < sinks and their `window` most recent entries at every eviction point;
  - scoring=whole: S[h, j] = max over every reconstruction query of the group of softmax over all
    prompt keys (no repeat keys, no chunks).
"""
import math

import numpy as np

from kvref import EvictionBudget, parse_spec, passes, prefill_chunks


class KvzipSpec(EvictionBudget):
    def __init__(self, spec):
        name, args = parse_spec(spec)
        assert name == "kvzip", spec
        self.level = args.pop("level", "token")
        self.scoring = args.pop("scoring", "chunk")
        prefill = args.get("prefill", "post_fill")
        self.alloc = args.pop("alloc", "global" if prefill == "post_fill" else "layer")
        self.sinks = int(args.pop("sinks", "4"))
        self.window = int(args.pop("window", "32"))
        args.setdefault("budget", "0.6" if self.level == "head" else "0.3")
        super().__init__(args, protected=self.window, decode="none")
        assert not args, "reference does not model kvzip args %r" % args

    def full_heads(self, H, num_layers, layer):
        """floor(budget x L x H) full heads over the model, spread evenly over the layers."""
        total = int(math.floor(self.budget_frac * num_layers * H))
        return (layer + 1) * total // num_layers - layer * total // num_layers


def whole_scores(lay, recon):
    """scoring=whole: [H, n] float64 pair scores; recon: [num_q_heads, T_r, d] reconstruction queries."""
    n = lay.n
    out = np.zeros((lay.hkv, n))
    for h in range(lay.hkv):
        K = lay.keys[h, :n]
        for g in range(h * lay.G, (h + 1) * lay.G):
            logits = recon[g] @ K.T / math.sqrt(lay.d)               # [T_r, n]
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            out[h] = np.maximum(out[h], p.max(axis=0))
    return out


class Result:
    def __init__(self):
        self.kept = None
        self.problems = []
        self.near_ties = []
        self.evictions = 0


def _choose(items, score, K, forced, rel_tol, where, res):
    """The best K of `items` by (score desc, item asc); with `forced` (items kvsim holds to the end)
    the closest choice containing them, accepted only as a near-tie."""
    ranked = sorted(items, key=lambda it: (-score[it], it))
    ref = ranked[:K]
    if forced is None or set(forced) <= set(ref):
        return set(ref)
    if len(forced) > K:
        res.problems.append("%s: kvsim holds %d entries to the end, more than the %d it may keep"
                            % (where, len(forced), K))
        return None
    fs = set(forced)
    sel = fs | set([it for it in ranked if it not in fs][: K - len(fs)])
    only_k, only_r = sorted(sel - set(ref)), sorted(set(ref) - sel)
    finite = [v for v in score.values() if np.isfinite(v)]
    smax = max(finite) if finite else 0.0
    gap = max(score[i] for i in only_r) - min(score[i] for i in only_k)
    desc = "%s: kvsim keeps %s, reference %s; gap %.3g (max %.3g)" % (where, only_k[:4], only_r[:4], gap, smax)
    if not gap < rel_tol * smax:
        res.problems.append(desc)
        return None
    res.near_ties.append(desc)
    return sel


def kvzip_replay(spec, lay, S, chunk, observed=None, rel_tol=1e-5, layer=0, num_layers=1):
    """kvsim's alloc=layer|head and level=head: replays one layer (all KV heads) with pair scores
    S [H, n]. observed: kvsim's final mask [H, n+m] (guided comparison)."""
    p = spec if isinstance(spec, KvzipSpec) else KvzipSpec(spec)
    n, m, H = lay.n, lay.m, lay.hkv
    chunks = prefill_chunks(n, chunk)
    res = Result()
    resident = [[] for _ in range(H)]
    full = None

    def score(h, t):
        return math.inf if (t < p.sinks or t >= n) else float(S[h, t])

    for j, (a, b, is_prefill) in enumerate(passes(n, m, chunk)):
        resident = [r + list(range(a, b)) for r in resident]
        cap = p.capacity_after(n, chunks, j, a, is_prefill)
        if cap is None:
            continue
        where = "pass %d [%d,%d)" % (j, a, b)
        if p.level == "head":
            if full is None:
                hs = [float(S[h, min(p.sinks, n):max(min(p.sinks, n), n - p.window)].max(initial=0.0)) for h in range(H)]
                full = set(sorted(range(H), key=lambda h: (-hs[h], h))[: p.full_heads(H, num_layers, layer)])
                if observed is not None and n > p.sinks + p.window:
                    seen = set(h for h in range(H) if observed[h, :n].all())
                    if seen != full:
                        desc = "full heads: kvsim %s, reference %s (head scores %s)" % (sorted(seen), sorted(full), hs)
                        tie = (len(seen) == len(full) and
                               max(hs[h] for h in full - seen) - min(hs[h] for h in seen - full) < rel_tol * max(hs))
                        (res.near_ties if tie else res.problems).append(desc)
                        if not tie:
                            return res
                        full = seen
            for h in range(H):
                if h in full:
                    continue
                r = resident[h]
                recent = r[max(0, len(r) - p.window):]
                resident[h] = sorted(set([t for t in r if t < p.sinks]) | set(recent))
            res.evictions += 1
            continue
        wb = b - min(p.window, b - a) if (is_prefill and p.prefill == "chunk") else b - p.window
        windows = [[t for t in r if t >= wb] for r in resident]
        scored = [[t for t in r if t < wb] for r in resident]
        if p.alloc == "layer":
            if sum(len(r) for r in resident) <= H * cap:
                continue
            items = [(h, t) for h in range(H) for t in scored[h]]
            sc = {(h, t): score(h, t) for h, t in items}
            K = max(0, min(len(items), H * cap - sum(len(w) for w in windows)))
            forced = None if observed is None else [it for it in items if observed[it[0], it[1]]]
            sel = _choose(items, sc, K, forced, rel_tol, where, res)
            if sel is None:
                return res
            resident = [sorted([t for hh, t in sel if hh == h] + windows[h]) for h in range(H)]
            res.evictions += 1
        else:
            for h in range(H):
                if len(resident[h]) <= cap:
                    continue
                items = [(h, t) for t in scored[h]]
                sc = {it: score(*it) for it in items}
                K = max(0, cap - len(windows[h]))
                forced = None if observed is None else [it for it in items if observed[h, it[1]]]
                sel = _choose(items, sc, K, forced, rel_tol, "%s head %d" % (where, h), res)
                if sel is None:
                    return res
                resident[h] = sorted([t for _, t in sel] + windows[h])
                res.evictions += 1
    res.kept = np.zeros((H, n + m), dtype=bool)
    for h in range(H):
        res.kept[h, resident[h]] = True
    if observed is not None and not np.array_equal(res.kept, observed):
        diff = np.argwhere(res.kept != observed)
        res.problems.append("final mask differs at %d (head, position) pairs, first %s" % (len(diff), diff[:6].tolist()))
    return res


# ---------------------------------------------------------------------------------------------
# The original, step by step (attention/score.py KVScore; attention/kvcache.py EvictCache)
# ---------------------------------------------------------------------------------------------

def bf16(x):
    """Round float64 -> bfloat16 -> float64 (round to nearest even), to emulate the original's dtype."""
    f = np.asarray(x, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


class KVScore:
    """attention/score.py KVScore, numpy: one instance per request, scores per layer [H, ctx_len]."""

    def __init__(self, n_layers, n_heads_kv, sink, dtype=None):
        self.n_layers, self.n_heads_kv = n_layers, n_heads_kv
        self.sink = sink                      # kvcache.py: self.sink = self.start_idx (system prompt)
        self.start_idx, self.end_idx = None, None
        self.round = dtype or (lambda x: x)   # bf16 to emulate the model dtype; identity: float64
        self.causal_mask_score = None
        self.score = None

    def init_score(self):
        self.causal_mask_score = None
        self.score = [np.zeros((self.n_heads_kv, 0)) for _ in range(self.n_layers)]

    def _update_score(self, layer_idx, score):
        self.score[layer_idx] = np.concatenate([self.score[layer_idx], score], axis=-1)

    def _get_score(self, query_states, key_states, layer_idx, q_rows=None):
        """query_states [num_heads, q, d] (the pass's stored queries), key_states [num_kv, cache + q_len, d]
        (the cache, then the pass's own keys); q_rows: each stored query's index among the pass's q_len
        tokens (None: all of them)."""
        num_heads, q, head_dim = query_states.shape
        num_kv = key_states.shape[0]
        q_len = q if q_rows is None else self.q_len
        rows = np.arange(q_len) if q_rows is None else np.asarray(q_rows)
        query_states = query_states.reshape(num_kv, num_heads // num_kv, q, head_dim)
        # kvsim: sink keys [0, min(sink, start_idx)) (identical when the chunk starts at the sink)
        sink = min(self.sink, self.start_idx)
        key_states = np.concatenate([key_states[:, :sink],                          # sink tokens
                                     key_states[:, self.start_idx:self.end_idx],    # KV chunk in the cache
                                     key_states[:, -q_len:]], axis=1)               # KV repeat chunk
        ctx_len = self.end_idx - self.start_idx
        attn_weights = self.round(np.einsum("hgqd,hkd->hgqk", query_states, key_states) / math.sqrt(head_dim))
        attn_weights = self._mask_causal(attn_weights, q_len, rows)
        attn_weights = attn_weights - attn_weights.max(axis=-1, keepdims=True)
        attn_weights = np.exp(attn_weights)
        attn_weights = self.round(attn_weights / attn_weights.sum(axis=-1, keepdims=True))  # softmax, "not fp32"
        attn_weights = attn_weights[..., sink:sink + ctx_len]
        score = attn_weights.max(axis=(1, 2))  # max over group, q
        self._update_score(layer_idx, score)

    def _make_mask(self, window_size):
        mask = np.full((window_size, window_size), np.finfo(np.float64).min)
        mask_cond = np.arange(window_size)
        mask[mask_cond[None, :] < (mask_cond + 1)[:, None]] = 0.0
        self.causal_mask_score = mask

    def _mask_causal(self, attn_weights, window_size, rows):
        if self.causal_mask_score is None or self.causal_mask_score.shape[-1] != window_size:
            self._make_mask(window_size)
        out = attn_weights.copy()
        out[..., -window_size:] += self.causal_mask_score[rows]  # the stored queries' rows of the mask
        return out

    @staticmethod
    def _threshold(score, ratio):
        """level=pair: one threshold over every layer and head; -> (valids, thres)."""
        score = np.stack(score, axis=0)
        if ratio < 1:
            score_sort = np.sort(score.reshape(-1))[::-1]
            n = max(int(len(score_sort) * ratio) - 1, 0)
            thres = score_sort[n]
            valids = score > thres
        else:
            valids = np.ones_like(score, dtype=bool)
            thres = 0.0
        return valids, thres


def original_scores(lays, sinks, window, dtype=None):
    """KVzip's scoring (ModelKVzip.scoring) of every traced layer: {layer: [H, n]} pair scores, the
    context [sinks, n - window) filled pass by pass; positions outside it, or re-read by no pass, 0."""
    any_lay = next(iter(lays.values()))
    n, H = any_lay.n, any_lay.hkv
    begin, end = min(sinks, n), max(min(sinks, n), n - window)
    layers = sorted(lays)
    kv = KVScore(len(layers), H, begin, dtype)
    out = {L: np.zeros((H, n)) for L in layers}
    for i, L in enumerate(layers):
        lay = lays[L]
        kv.init_score()
        for cb, ce, kb, ke in lay.recon_passes:
            sel = (lay.recon_rows >= kb) & (lay.recon_rows < ke)
            kv.start_idx, kv.end_idx = cb, ce  # kv.end_idx = kv.start_idx + prefill_ids_p.shape[1]
            kv.q_len = ke - kb
            cache = np.concatenate([lay.keys[:, :n], lay.recon_keys[:, kb:ke]], axis=1)
            kv.score[0] = np.zeros((H, 0))
            kv._get_score(lay.recon[:, sel], cache, 0, q_rows=lay.recon_rows[sel] - kb)
            out[L][:, cb:ce] = kv.score[0]
        out[L][:, :begin] = 0.0
        out[L][:, end:] = 0.0
    return out


def original_kept(lays, S, sinks, window, ratio):
    """kvcache.py prune(level="pair"): {layer: bool [H, n + m]} — one threshold over the context
    pairs of every traced layer (score.py _threshold), the system prompt (sinks), the question
    (window) and generated tokens always kept (_get_valid)."""
    layers = sorted(lays)
    any_lay = lays[layers[0]]
    n, m = any_lay.n, any_lay.m
    begin, end = min(sinks, n), max(min(sinks, n), n - window)
    valids, thres = KVScore._threshold([S[L][:, begin:end] for L in layers], ratio)
    out = {}
    for i, L in enumerate(layers):
        kept = np.ones((any_lay.hkv, n + m), dtype=bool)
        kept[:, begin:end] = valids[i]
        out[L] = kept
    return out, thres


def jaccard(a, b):
    """Kept-set Jaccard over every (layer, head, position): |a & b| / |a | b|."""
    inter = sum(int((a[L] & b[L]).sum()) for L in a)
    union = sum(int((a[L] | b[L]).sum()) for L in a)
    return inter / union if union else 1.0
