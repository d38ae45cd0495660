"""Float64 numpy reference for kvsim's h2o policy (Heavy-Hitter Oracle, arXiv 2306.14048).

Written from the published rule (FMInference/H2O h2o_hf/utils_real_drop/modify_llama.py,
H2OKVCache_LayerWise) and DESIGN.md §4, not from kvsim's C++:
  - every pass appends its tokens; each accumulated query t (all prompt queries, or the last N of
    each prefill chunk with prompt_queries=N, and every decode query) attends with a causal
    softmax(q.k/sqrt(d)) over what it sees (the entries kept before its pass plus its pass's
    positions <= t); the probability is added to the entry's score, averaged over the GQA group;
  - at an eviction point with a cache above the capacity, the `recent` newest entries stay and the
    heavy hitters (highest score, or score / number of accumulated queries that saw the entry with
    normalize=count, as kvpress ObservedAttention; ties to the lower position) fill the rest;
  - capacity: DESIGN.md §4 (fraction of the prompt per chunk / post-fill, plus `recent` when it is a
    token count; an integer budget includes it), fixed in decode; recent as a share r < 1 of the
    capacity gives round_half_even(r * capacity) recent entries.
GQA (issue 19; FMInference/H2O's cache is MHA-only): gqa=mean averages the group's attention
(kvpress ObservedAttentionPress); gqa=max keeps one accumulator per query head and ranks by their
maximum (KVCache-Factory pyramidkv_utils.py _reduce_group_scores 'max'); gqa=expand (KVCache-Factory's
default layout, repeat_kv before the cache) is this replay on kvref.expanded_layer, one per query head.
"""
import math

import numpy as np

from kvref import EvictionBudget, parse_spec, passes, prefill_chunks, round_half_even


class H2OSpec(EvictionBudget):
    """Budget and eviction points (capacity, evicts_after) with `recent` tokens protected."""

    def __init__(self, spec):
        name, args = parse_spec(spec)
        assert name == "h2o", spec
        r = float(args.pop("recent", "0.5"))
        self.recent_tokens = int(r) if r >= 1 else 0
        self.recent_share = r if r < 1 else None
        super().__init__(args, protected=self.recent_tokens, decode="step")
        q = args.pop("prompt_queries", "all")
        self.prompt_queries = None if q == "all" else int(q)
        self.normalize = args.pop("normalize", "none") == "count"
        self.gqa = args.pop("gqa", "mean")
        assert self.gqa in ("mean", "max", "expand")
        assert not args, "reference does not model h2o args %r" % args

    def recent_count(self, cap):
        if self.recent_share is not None:
            return round_half_even(self.recent_share * cap)
        return min(self.recent_tokens, cap)

    def query_positions(self, a, b, is_prefill):
        if is_prefill and self.prompt_queries is not None:
            return list(range(max(a, b - self.prompt_queries), b))
        return list(range(a, b))


def pass_attention(layer, h, visible, qpos, per_head=False):
    """[len(visible)] summed causal attention from the queries at qpos, group-averaged (float64), or
    with per_head [G, len(visible)], one row per query head of the group."""
    if not qpos:
        return np.zeros((layer.G, len(visible)) if per_head else len(visible)), np.zeros(len(visible))
    G = layer.G
    K = layer.keys[h][visible]                                          # [V, d]
    rows = [layer.qpos_index[t] for t in qpos]
    Q = layer.queries[h * G:(h + 1) * G][:, rows, :]                    # [G, Tq, d]
    logits = np.einsum("gtd,vd->gtv", Q, K) / math.sqrt(layer.d)
    mask = visible[None, :] > np.asarray(qpos)[:, None]                 # [Tq, V]
    logits = np.where(mask[None], -np.inf, logits)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    sums = p.sum(axis=1)                                                # [G, V]
    return (sums if per_head else sums.mean(axis=0)), (~mask).sum(axis=0).astype(np.float64)


class Result:
    def __init__(self):
        self.kept = None
        self.problems = []
        self.near_ties = []
        self.evictions = 0


def select(key, positions, k, forced, rel_tol, where, res):
    """Heavy-hitter choice among `positions` (scores `key`): the reference's top-k, or, when kvsim
    kept (to the end) entries `forced` that the top-k drops, the closest choice containing them,
    accepted only as a near-tie. Returns the selected positions."""
    order = np.lexsort((positions, -key))
    ref = set(int(positions[i]) for i in order[:k])
    if forced <= ref:
        return ref
    if len(forced) > k:
        res.problems.append("%s: kvsim kept %d entries to the end among candidates with %d heavy slots"
                            % (where, len(forced), k))
        return None
    sel = set(forced)
    for i in order:
        if len(sel) == k:
            break
        sel.add(int(positions[i]))
    score = {int(p): float(v) for p, v in zip(positions, key)}
    gap = max(score[p] for p in ref - sel) - min(score[p] for p in sel - ref)
    smax = float(key.max()) if len(key) else 0.0
    desc = ("%s: kvsim keeps %s, reference keeps %s; score gap %.3g (max %.3g)"
            % (where, sorted(sel - ref)[:6], sorted(ref - sel)[:6], gap, smax))
    if gap < rel_tol * smax:
        res.near_ties.append(desc)
    else:
        res.problems.append(desc)
    return sel


def h2o_replay(spec, layer, h, chunk, observed=None, rel_tol=1e-5):
    """Reference H2O for KV head h. With `observed` (kvsim's final kept mask, bool [n+m]) the replay
    is guided: entries kvsim still holds at the end are kept at every eviction point, and any
    resulting deviation from the float64 choice must be a near-tie (gap < rel_tol * max score)."""
    pol = spec if isinstance(spec, H2OSpec) else H2OSpec(spec)
    assert pol.gqa != "expand" or layer.G == 1, "gqa=expand replays kvref.expanded_layer"
    n, m = layer.n, layer.m
    chunks = prefill_chunks(n, chunk)
    res = Result()
    resident = np.zeros(0, dtype=np.int64)
    per_head = pol.gqa == "max"
    score = np.zeros((layer.G if per_head else 1, 0))   # one accumulator, or one per query head (max)
    seen = np.zeros(0)
    for j, (a, b, is_prefill) in enumerate(passes(n, m, chunk)):
        resident = np.concatenate([resident, np.arange(a, b, dtype=np.int64)])
        score = np.concatenate([score, np.zeros((score.shape[0], b - a))], axis=1)
        seen = np.concatenate([seen, np.zeros(b - a)])
        s, c = pass_attention(layer, h, resident, pol.query_positions(a, b, is_prefill), per_head)
        score += s
        seen += c
        cap = pol.capacity_after(n, chunks, j, a, is_prefill)
        if cap is None or len(resident) <= cap:
            continue
        res.evictions += 1
        recent = pol.recent_count(cap)
        heavy, cand = cap - recent, len(resident) - recent
        total = score[:, :cand].max(axis=0)
        key = total / np.maximum(seen[:cand], 1) if pol.normalize else total
        forced = set() if observed is None else set(int(p) for p in resident[:cand] if observed[p])
        where = "pass [%d,%d)" % (a, b)
        sel = select(key, resident[:cand], heavy, forced, rel_tol, where, res)
        if sel is None:
            return res
        keep = np.array(sorted(i for i, p in enumerate(resident[:cand]) if int(p) in sel) +
                        list(range(cand, len(resident))), dtype=np.int64)
        resident, score, seen = resident[keep], score[:, keep], seen[keep]
    res.kept = np.zeros(n + m, dtype=bool)
    res.kept[resident] = True
    if observed is not None and not np.array_equal(res.kept, observed):
        diff = np.nonzero(res.kept != observed)[0]
        res.problems.append("final mask differs at %d positions, first %s" % (len(diff), diff[:8].tolist()))
    return res
