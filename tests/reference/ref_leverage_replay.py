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
import os
import re

import numpy as np

import kvref

try:
    import h5py
except ImportError:  # reported by kvref.common_args
    h5py = None


class Spec:
    """Budget and eviction points of a spec (DESIGN.md §4), with the protected count w."""

    def __init__(self, args, protected):
        b = args.pop("budget", "0.2")
        if re.fullmatch(r"\d+", b):
            self.budget_int, self.budget_frac = int(b), None
        else:
            self.budget_int, self.budget_frac = None, float(b)
            assert 0.0 < self.budget_frac < 1.0
        self.prefill = args.pop("prefill", "post_fill")
        decode = args.pop("decode", "none")
        self.decode_every = 0 if decode == "none" else 1 if decode == "step" else int(decode.split(":")[1])
        self.w = protected

    def evicts_after(self, j, a, b, is_prefill, n_chunks, n):
        if is_prefill:
            return self.prefill == "chunk" or (self.prefill == "post_fill" and j == n_chunks - 1)
        return self.decode_every > 0 and (a - n + 1) % self.decode_every == 0

    def capacity(self, chunks, j, is_prefill, n):
        if self.budget_int is not None:
            return self.budget_int
        cap = lambda c: min(kvref.round_half_even(self.budget_frac * c) + self.w, c)
        if self.prefill == "chunk":
            last = j if is_prefill else len(chunks) - 1
            return sum(cap(bb - aa) for aa, bb in chunks[: last + 1])
        return cap(n)


def read_layers(path, request="0"):
    """-> (meta, {layer: dict(keys [Hkv,T,d], values, queries [Hq,Tq,d], qpos {pos: row})})."""
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
                out[int(mm.group(1))] = dict(keys=g["keys"][...].astype(np.float64),
                                             values=g["values"][...].astype(np.float64),
                                             queries=g["queries"][...].astype(np.float64),
                                             qpos={int(p): i for i, p in enumerate(qpos)})
    return meta, out


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
        if not spec.evicts_after(j, a, b, is_prefill, len(chunks), n):
            continue
        cap = spec.capacity(chunks, j, is_prefill, n)
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


def run_reference_test(ck, args, name, models, scenarios, make_policy, n, m, query_window=None):
    """For each model (tag, hq, hkv, d, seed): synthesise a trace, run every scenario
    (tag, chunk or None, [specs]) through `kvsim run --save-kept` and compare every head's final
    mask with the reference. make_policy(spec) -> (Spec, sinks, recent, scorer, rel_tol)."""
    for tag, hq, hkv, d, seed in models:
        wd = os.path.join(args.workdir, tag)
        os.makedirs(wd, exist_ok=True)
        model_ini = kvref.write_model_ini(os.path.join(wd, "model.ini"), "tiny-" + tag, 2, hq, hkv, d)
        trace = os.path.join(wd, "trace.h5")
        kvref.fresh(trace)
        argv = ["synth", "--model", model_ini, "--prompt-tokens", n, "--generated-tokens", m, "--layers", "0,1",
                "--seed", seed, "--out", trace]
        if query_window:
            argv += ["--query-window", query_window]
        ok, msg = kvref.run_kvsim(args.kvsim, argv, timeout=120)
        if not ck.check(ok, "%s: kvsim synth" % tag, msg):
            continue
        meta, layers = read_layers(trace)
        for sc_tag, chunk, specs in scenarios:
            where = "%s/%s" % (tag, sc_tag)
            wl = [("trace", "trace.h5")] + ([("chunk_tokens", chunk)] if chunk else [])
            scen = kvref.write_ini(os.path.join(wd, sc_tag + ".ini"),
                                   [("model", [("preset", model_ini)]), ("workload", wl),
                                    ("policy", [("spec", s) for s in specs]), ("sim", [("threads", 2)])])
            out, kept_file = os.path.join(wd, "out_" + sc_tag), os.path.join(wd, "kept_%s.h5" % sc_tag)
            kvref.fresh(out, kept_file)
            ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", out, "--save-kept", kept_file], timeout=180)
            if not ck.check(ok, "%s: kvsim run --save-kept" % where, msg):
                continue
            kept = kvref.read_kept(kept_file)
            for idx, spec in enumerate(["full"] + specs):
                if idx == 0:
                    continue
                kspec, klayers = kept[idx]
                ck.check(kspec is not None and kspec.startswith(name + "("), "%s %s: spec attribute" % (where, spec), kspec)
                pol, sinks, recent, scorer, rel_tol = make_policy(spec)
                for L, lay in sorted(layers.items()):
                    obs = klayers[L].astype(bool)
                    _, problems, ties = replay(pol, sinks, recent, scorer, lay, n, m, chunk, hkv, obs, rel_tol)
                    ck.check(not problems, "%s %s layer %d: kept masks == reference" % (where, spec, L),
                             "\n".join(problems[:5]))
                    for t in ties:
                        ck.note("%s %s layer %d: accepted near-tie: %s" % (where, spec, L, t))
            print("%s: kvsim %s, masks compared" % (where, msg), flush=True)
