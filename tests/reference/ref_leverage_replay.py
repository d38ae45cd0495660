"""Shared numpy machinery for the l2norm, compactor and curdkv reference tests.

Written from shared/DESIGN.md §4 (eviction points, capacity rule) and shared/reference/
policy-notes.md, never from kvsim's C++ sources. A policy here is (protected ends, a layer scorer):
at every eviction point each KV head keeps its first `sinks` and last `recent` resident entries plus
the top (capacity - sinks - recent) of the rest by the scorer's float64 scores (ties: lower position).

The comparison with kvsim's final kept mask follows kvsim's trajectory: at each eviction point the
entries kvsim still holds at the end must be kept; the rest of the selection is the reference's
order. Where that selection differs from the pure reference one, the difference must be a near-tie
(largest dropped minus smallest kept reference score < rel_tol * the largest |score|), as
test_snapkv_reference.py allows for float32 vs float64; the final mask must then match exactly.
"""
import re

import numpy as np

import kvref

try:
    import h5py
except ImportError:  # reported by kvref.common_args
    h5py = None


class Spec(kvref.EvictionBudget):
    """Budget and eviction points of a spec (DESIGN.md §4), with the protected count w; decode=none by default."""

    def __init__(self, args, protected):
        super().__init__(args, protected, decode="none")


def read_layers(path, request="0"):
    """-> (meta, {layer: dict(index (the layer's number), keys [Hkv,T,d], values, queries [Hq,Tq,d], qpos {pos: row})})."""
    out = {}
    with h5py.File(path, "r") as f:
        meta = {k: f.attrs[k] for k in f.attrs}
        req = f["requests"][request]
        meta["prompt_tokens"] = int(req.attrs["prompt_tokens"])
        meta["generated_tokens"] = int(req.attrs["generated_tokens"])
        for name in req:
            mm = re.fullmatch(r"layer_(\d+)", name)
            if mm:
                g = req[name]
                qpos = g["query_positions"][...]
                out[int(mm.group(1))] = dict(index=int(mm.group(1)), keys=g["keys"][...].astype(np.float64),
                                             values=g["values"][...].astype(np.float64),
                                             queries=g["queries"][...].astype(np.float64),
                                             qpos={int(p): i for i, p in enumerate(qpos)})
    return meta, out


class ReferenceModel:
    """What a reference policy may need of the model: its GQA group size and the trace's root attributes."""

    def __init__(self, group, meta):
        self.group, self.meta = group, meta


def ends_of(size, sinks, recent):
    s = min(sinks, size)
    return s, min(recent, size - s)


def select(resident, scores, sinks, recent, cap):
    """Reference selection on one head: protected ends + top of the middle (ties: lower position)."""
    s, r = ends_of(len(resident), sinks, recent)
    middle = resident[s:len(resident) - r]
    order = np.lexsort((middle, -np.asarray(scores)))
    top = middle[order[: cap - s - r]]
    return np.sort(np.concatenate([resident[:s], top, resident[len(resident) - r:]])).astype(np.int64)


def replay(spec, sinks, recent, scorer, layer, n, m, chunk, hkv, observed=None, rel_tol=1e-5):
    """Replays one layer. scorer(layer, {h: resident}, capacity) -> {h: float64 scores of the middle entries}.
    Returns (final masks [hkv, n+m] bool, problems, near_ties)."""
    chunks = kvref.prefill_chunks(n, chunk)
    res = {h: np.zeros(0, dtype=np.int64) for h in range(hkv)}
    problems, ties = [], []
    for j, (a, b, is_prefill) in enumerate(kvref.passes(n, m, chunk)):
        for h in res:
            res[h] = np.concatenate([res[h], np.arange(a, b, dtype=np.int64)])
        cap = spec.capacity_after(n, chunks, j, a, is_prefill)
        if cap is None:
            continue
        evicting = {h: r for h, r in res.items() if len(r) > cap}
        if not evicting:
            continue
        scores = scorer(layer, evicting, cap)
        for h, r in evicting.items():
            ref_sel = select(r, scores[h], sinks, recent, cap)
            if observed is None:
                res[h] = ref_sel
                continue
            s, rr = ends_of(len(r), sinks, recent)
            middle = r[s:len(r) - rr]
            sc = dict(zip(middle.tolist(), np.asarray(scores[h]).tolist()))
            forced = [p for p in middle.tolist() if observed[h][p]]
            k = cap - s - rr
            if len(forced) > k:
                problems.append("head %d pass [%d,%d): kvsim's final mask holds %d of the %d middle entries, "
                                "more than the %d it may keep" % (h, a, b, len(forced), len(middle), k))
                res[h] = ref_sel
                continue
            rest = [p for p in middle[np.lexsort((middle, -np.asarray(scores[h])))].tolist() if p not in set(forced)]
            sel = set(forced) | set(rest[: k - len(forced)])
            ref_mid = set(ref_sel.tolist()) & set(middle.tolist())
            if sel != ref_mid:
                gap = max(sc[p] for p in middle.tolist() if p not in sel) - min(sc[p] for p in sel)
                scale = max(abs(v) for v in sc.values())
                desc = ("head %d pass [%d,%d): kvsim keeps %s, reference %s; largest dropped minus smallest kept "
                        "= %.3g (scale %.3g)" % (h, a, b, sorted(sel - ref_mid)[:6], sorted(ref_mid - sel)[:6], gap, scale))
                (ties if gap < rel_tol * scale else problems).append(desc)
            res[h] = np.sort(np.concatenate([r[:s], np.array(sorted(sel), dtype=np.int64), r[len(r) - rr:]]))
    masks = np.zeros((hkv, n + m), dtype=bool)
    for h, r in res.items():
        masks[h, r] = True
    if observed is not None:
        for h in range(hkv):
            diff = np.nonzero(masks[h] != observed[h])[0]
            if len(diff):
                problems.append("head %d: final mask differs at %d positions, first %s" % (h, len(diff), diff[:8].tolist()))
    return masks, problems, ties


def run_reference_test(ck, args, name, models, scenarios, make_policy, n, m, query_window=None, synth_args=(),
                       with_model=False):
    """For each model (tag, hq, hkv, d, seed[, extra [model] keys]): synthesise a trace (--query-window query_window if given,
    plus synth_args), run every scenario (tag, chunk or None, [specs]) through `kvsim run --save-kept`
    and compare every head's final mask with the reference.
    make_policy(spec) -> (Spec, sinks, recent, scorer, rel_tol); with with_model=True it is called as
    make_policy(spec, model, chunk), model = ReferenceModel(group size, trace root attributes)."""
    extra = (["--query-window", query_window] if query_window else []) + list(synth_args)
    for tag, hq, hkv, d, seed, *model_keys in models:
        def compare(kept_file, specs, loaded, chunk, where, hkv=hkv, group=hq // hkv):
            meta, layers = loaded
            kept = kvref.read_kept(kept_file)
            for idx, spec in enumerate(specs, start=1):   # after `full`, which kvsim always runs first
                kspec, klayers = kept[idx]
                ck.check(kspec is not None and kspec.startswith(name + "("), "%s %s: spec attribute" % (where, spec), kspec)
                made = make_policy(spec, ReferenceModel(group, meta), chunk) if with_model else make_policy(spec)
                pol, sinks, recent, scorer, rel_tol = made
                for L, lay in sorted(layers.items()):
                    obs = klayers[L].astype(bool)
                    _, problems, ties = replay(pol, sinks, recent, scorer, lay, n, m, chunk, hkv, obs, rel_tol)
                    what = "%s %s layer %d" % (where, spec, L)
                    ck.check(not problems, what + ": kept masks == reference", "\n".join(problems[:5]))
                    ck.near_ties(what, ties)

        kvref.run_kept_model(ck, args, tag, hq, hkv, d, n, m, seed, scenarios, compare, synth_args=extra,
                             load=read_layers, model_keys=model_keys[0] if model_keys else ())
