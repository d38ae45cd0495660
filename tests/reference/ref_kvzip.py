"""Float64 numpy reference for kvsim's kvzip policy (KVzip, arXiv 2505.23416).

Written from snu-mllab/KVzip (attention/score.py KVScore._get_score, attention/kvcache.py
prune / _threshold_uniform), NVIDIA/kvpress kvzip_press.py, policy-notes.md "KVzip" and DESIGN.md
§3/§4, not from kvsim's C++:
  - pair score S[h, j] (prompt position j): the maximum over the reconstruction queries of the
    query heads of KV head h's GQA group of softmax_j(q.k_j / sqrt(d)), the softmax over every
    prompt key (kvsim's reading: the trace has no repeat-prompt keys; see policies/kvzip_scores.h);
  - level=token: at an eviction point each KV head keeps its protected window (the last `window`
    positions processed, in chunk mode the chunk's own last min(window, chunk) positions) and, by
    score, the rest of the capacity (DESIGN.md §4, window included); positions < sinks and
    generated positions rank above every prompt entry (ties: lower head, then lower position);
    alloc=head gives every head its own capacity (KVzip's pair-uniform), alloc=layer pools the
    layer's heads: heads x capacity entries (kvpress layerwise=True);
  - level=head: head score = max of S[h, j] over j in [sinks, n - window); floor(budget x L x H)
    heads of the model, spread evenly over the layers (floor((l+1)F/L) - floor(lF/L)), the best of
    each layer, keep everything, the others keep positions < sinks and their `window` most recent
    entries at every eviction point.
"""
import math

import numpy as np

from kvref import EvictionBudget, parse_spec, passes, prefill_chunks


class KvzipSpec(EvictionBudget):
    def __init__(self, spec):
        name, args = parse_spec(spec)
        assert name == "kvzip", spec
        self.level = args.pop("level", "token")
        self.alloc = args.pop("alloc", "layer")
        self.sinks = int(args.pop("sinks", "4"))
        self.window = int(args.pop("window", "32"))
        args.setdefault("budget", "0.6" if self.level == "head" else "0.3")
        super().__init__(args, protected=self.window, decode="none")
        assert not args, "reference does not model kvzip args %r" % args

    def full_heads(self, H, num_layers, layer):
        """floor(budget x L x H) full heads over the model, spread evenly over the layers."""
        total = int(math.floor(self.budget_frac * num_layers * H))
        return (layer + 1) * total // num_layers - layer * total // num_layers


def kvzip_scores(lay, recon):
    """[H, n] float64 pair scores; recon: [num_q_heads, T_r, d] reconstruction queries."""
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


def kvzip_replay(spec, lay, recon, chunk, observed=None, rel_tol=1e-5, layer=0, num_layers=1):
    """Replays one layer (all KV heads). observed: kvsim's final mask [H, n+m] (guided comparison)."""
    p = spec if isinstance(spec, KvzipSpec) else KvzipSpec(spec)
    n, m, H = lay.n, lay.m, lay.hkv
    S = kvzip_scores(lay, recon)
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
