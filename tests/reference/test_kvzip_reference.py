#!/usr/bin/python3
"""kvsim's kvzip kept sets against ref_kvzip.py, a numpy transliteration of snu-mllab/KVzip
@5d84729 (attention/score.py KVScore._get_score and _threshold, attention/kvcache.py prune and
_get_valid, model/wrapper.py ModelKVzip.scoring/self_task), with kvsim's own allocations beside it.

Self-tests (always run; alone with --self-test): the hand examples of tests/policies/kvzip_test.cpp
(d=1 keys ln x, so a query q = 1 gives attention x / sum x): chunked scoring over [sink | chunk |
the pass's own keys, causal], the original's strict global threshold, and the whole-prompt
scoring (max over queries, pooled and per-head allocation, head level, decode steps, chunked
prefill); the vectorised whole scores against a plain loop; the bf16 rounding.

Then for MHA and GQA tiny models: `kvsim synth --recon-queries R` (a 2600-token prompt: two
reconstruction passes of KVzip's 2000-token chunks; every copy's query, and strided), `kvsim run
--save-kept` with kvzip's defaults (scoring=chunk, alloc=global: the original's rule over both
traced layers) at several ratios and sinks, and kvsim's alternatives (alloc=layer|head, level=head,
scoring=whole; post-fill, chunked and decode-step eviction, integer budgets). Every final kept mask
must equal the reference up to float32-vs-float64 near-ties at the selection boundary (reported).
The kept-set Jaccard of each alternative, and of the bf16 softmax, against the original's rule is
printed (docs/policy-sources.md "kvzip"). Finally a trace without recon queries, and one with
recon queries but no reconstruction passes (format 1.0), are refused naming the missing dataset;
the latter runs with scoring=whole.

usage: /usr/bin/python3 tests/reference/test_kvzip_reference.py --kvsim BIN --workdir DIR
"""
import copy
import math
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_kvzip import (KvzipSpec, bf16, jaccard, kvzip_replay, original_kept, original_scores,  # noqa: E402
                       whole_scores)

REL_TOL = 1e-5


def hand(generated=0, chunks=False):
    """As HandKvzip / HandChunks in kvzip_test.cpp: head 0 x=[1/4,4,2,1,1/2,8], head 1
    x=[10,30,25,20,1,14]; whole: queries (3, -1) and (1, 1); chunks: passes [1,3) rows 0-1 and [3,5)
    rows 2-3, repeat keys ln y (y = [2,1,4,3] and [5,5,5,5]), queries q = 1 at rows 1 and 2.
    Generated positions get keys 0 (x = 1)."""
    xs = [[0.25, 4, 2, 1, 0.5, 8] + [1] * generated, [10, 30, 25, 20, 1, 14] + [1] * generated]
    keys = np.log(np.asarray(xs, dtype=np.float64))[:, :, None]
    lay = kvref.LayerData(keys, np.ones((2, 6 + generated, 1)), np.arange(6 + generated), 6, generated, 2, 2, 1)
    lay.recon = np.array([[[3.0], [-1.0]], [[1.0], [1.0]]])
    if chunks:
        lay.recon = np.ones((2, 2, 1))
        lay.recon_keys = np.log(np.array([[2.0, 1, 4, 3], [5, 5, 5, 5]]))[:, :, None]
        lay.recon_passes = [(1, 3, 0, 2), (3, 5, 2, 4)]
        lay.recon_rows = np.array([1, 2])
    return lay


def kept_whole(spec, generated=0, chunk=None):
    lay = hand(generated)
    r = kvzip_replay(spec, lay, whole_scores(lay, lay.recon), chunk)
    return [np.nonzero(k)[0].tolist() for k in r.kept]


def self_tests(ck):
    lay = hand(chunks=True)
    S = original_scores({0: lay}, sinks=1, window=1)[0]
    ck.check(np.allclose(S[0], [0, 4 / 9.25, 2 / 9.25, 1 / 5.75, 0.5 / 5.75, 0], rtol=1e-12),
             "hand chunks: head 0 = x over [sink | chunk | repeat keys up to the query's own]", S[0])
    ck.check(np.allclose(S[1], [0, .4, 25 / 75, 20 / 36, 1 / 36, 0], rtol=1e-12), "hand chunks: head 1", S[1])
    S0 = original_scores({0: lay}, sinks=0, window=1)[0]
    ck.close(S0[1, 1], 30 / 65, "hand chunks: sinks=0 leaves the sink key out of the softmax", rel=1e-12)
    for ratio, want in ((0.5, [[0, 1, 5], [0, 1, 3, 5]]), (0.3, [[0, 5], [0, 3, 5]])):
        kept, _ = original_kept({0: lay}, {0: S}, 1, 1, ratio)
        ck.eq([np.nonzero(k)[0].tolist() for k in kept[0]], want, "hand chunks: global threshold, ratio %g" % ratio)
    r = kvzip_replay("kvzip(budget=4, alloc=layer, sinks=1, window=1)", lay, S, None)
    ck.eq([np.nonzero(k)[0].tolist() for k in r.kept], [[0, 1, 5], [0, 1, 2, 3, 5]], "hand chunks: alloc=layer")

    lay = hand()
    S = whole_scores(lay, lay.recon)
    ck.check(np.allclose(S[0], [32 / 63, 64 / 585.140625, 0.5 / 7.875, 1 / 7.875, 2 / 7.875, 512 / 585.140625]),
             "hand whole: head 0 scores = max over the two queries", S[0])
    ck.check(np.allclose(S[1], [.1, .3, .25, .2, .01, .14]), "hand whole: head 1 scores", S[1])
    ck.eq(kept_whole("kvzip(budget=4, alloc=head, sinks=1, window=1)"), [[0, 3, 4, 5], [0, 1, 2, 5]],
          "hand whole: per head (max ranks 3 above 1; a mean would not)")
    ck.eq(kept_whole("kvzip(budget=4, alloc=layer, sinks=1, window=1)"), [[0, 4, 5], [0, 1, 2, 3, 5]],
          "hand whole: pooled over the layer")
    ck.eq(kept_whole("kvzip(budget=3, alloc=head, sinks=0, window=1)"), [[0, 4, 5], [1, 2, 5]], "hand whole: no sinks")
    ck.eq(kept_whole("kvzip(level=head, budget=0.5, sinks=1, window=1)"), [[0, 5], list(range(6))],
          "hand whole: head level")
    ck.eq(kept_whole("kvzip(level=head, budget=0.5, sinks=0, window=2)"), [list(range(6)), [4, 5]],
          "hand whole: head level, no sinks")
    ck.eq(kept_whole("kvzip(budget=4, alloc=head, sinks=1, window=1, decode=step)", generated=2)[0], [0, 5, 6, 7],
          "hand whole: decode steps keep generated tokens")
    ck.eq(kept_whole("kvzip(budget=0.2, alloc=head, sinks=1, window=1, prefill=chunk)", chunk=3)[0], [0, 3, 4, 5],
          "hand whole: chunked prefill")
    # Vectorised whole scores == a plain loop (GQA-3).
    rng = np.random.default_rng(2)
    keys = rng.normal(size=(2, 30, 4))
    lay = kvref.LayerData(keys, rng.normal(size=(6, 30, 4)), np.arange(30), 28, 2, 6, 2, 4)
    recon = rng.normal(size=(6, 9, 4)) * 1.5
    S = whole_scores(lay, recon)
    want = np.zeros((2, 28))
    for h in range(2):
        for g in range(3 * h, 3 * h + 3):
            for i in range(9):
                w = [math.exp(sum(recon[g, i, c] * keys[h, j, c] for c in range(4)) / 2) for j in range(28)]
                for j in range(28):
                    want[h, j] = max(want[h, j], w[j] / sum(w))
    ck.check(np.allclose(S, want, rtol=1e-12), "loop == vectorised whole scores")
    ck.eq(bf16(np.array([1.0, 1.00390625, 1.005859375, 1.01171875])).tolist(), [1.0, 1.0, 1.0078125, 1.015625],
          "bf16 rounds to 8 significant bits, half to even")


def load(ck, tag, shape, trace):
    """{layer: LayerData with .recon, .recon_keys, .recon_passes, .recon_rows} from the trace."""
    import h5py
    hq, hkv, d = shape
    _, lays = kvref.read_trace_layers(trace)
    with h5py.File(trace, "r") as f:
        ck.eq(int(f.attrs["version_minor"]), 1, "%s: trace format 1.1" % tag)
        for L, lay in lays.items():
            g = f["requests/0/layer_%d" % L]
            names = ("recon_queries", "recon_keys", "recon_passes", "recon_query_rows")
            if not ck.check(all(x in g for x in names), "%s: layer %d has %s" % (tag, L, ", ".join(names))):
                return None
            lay.recon = g["recon_queries"][...].astype(np.float64)
            lay.recon_keys = g["recon_keys"][...].astype(np.float64)
            lay.recon_passes = [tuple(int(v) for v in p) for p in g["recon_passes"][...]]
            lay.recon_rows = g["recon_query_rows"][...].astype(np.int64)
            ck.eq((lay.recon.shape[0], lay.recon.shape[2]), (hq, d), "%s: layer %d recon_queries shape" % (tag, L))
            ck.eq((lay.recon_keys.shape[0], lay.recon_keys.shape[2]), (hkv, d), "%s: layer %d recon_keys shape" % (tag, L))
    return lays


class Scores:
    """Reference pair scores of every layer by (scoring, sinks, window), computed once."""

    def __init__(self, lays):
        self.lays, self.cache = lays, {}

    def get(self, p, dtype=None):
        key = (p.scoring, p.sinks, p.window, dtype is not None)
        if key not in self.cache:
            if p.scoring == "whole":
                self.cache[key] = {L: whole_scores(lay, lay.recon) for L, lay in self.lays.items()}
            else:
                self.cache[key] = original_scores(self.lays, p.sinks, p.window, dtype)
        return self.cache[key]


def decode_after_global(p, S, kept, n, m):
    """kvsim's decode evictions after the global threshold (not in the original, which evicts once):
    at each decode eviction point the layer keeps the count it kept after the prompt, the `window`
    newest entries per head protected and the rest pooled over the heads by score (positions <
    sinks and generated tokens first; ties: lower head, then lower position)."""
    H = kept.shape[0]
    total = int(kept[:, :n].sum())
    resident = [list(np.nonzero(kept[h, :n])[0]) for h in range(H)]
    for step in range(1, m + 1):
        resident = [r + [n + step - 1] for r in resident]
        if step % p.decode_every:
            continue
        wb = n + step - p.window
        windows = [[t for t in r if t >= wb] for r in resident]
        if sum(len(r) for r in resident) <= total:
            continue
        score = lambda h, t: math.inf if (t < p.sinks or t >= n) else float(S[h, t])
        items = sorted(((h, t) for h in range(H) for t in resident[h] if t < wb), key=lambda it: (-score(*it), it))
        sel = items[:max(0, total - sum(len(w) for w in windows))]
        resident = [sorted([t for hh, t in sel if hh == h] + windows[h]) for h in range(H)]
    out = np.zeros((H, n + m), dtype=bool)
    for h in range(H):
        out[h, resident[h]] = True
    return out


def check_global(ck, what, p, scores, L, obs):
    """alloc=global: kvsim's mask of layer L == the original's threshold rule over all traced layers
    (then kvsim's decode evictions, if any), except context pairs within REL_TOL of the threshold
    (float32 vs float64)."""
    S = scores.get(p)
    want, thres = original_kept(scores.lays, S, p.sinks, p.window, p.budget_frac)
    lay = scores.lays[L]
    if p.decode_every:
        want = {L: decode_after_global(p, S[L], want[L], lay.n, lay.m)}
    diff = np.argwhere(want[L] != obs)
    n = scores.lays[L].n
    near = [tuple(x) for x in diff if x[1] < n and abs(S[L][x[0], x[1]] - thres) <= REL_TOL * thres]
    ck.check(len(diff) == len(near), what + ": kept mask == the original's global threshold",
             "%d differ, first %s (thres %.6g)" % (len(diff), diff[:6].tolist(), thres))
    if near:
        ck.near_ties(what, ["%d pairs within %.0e of the threshold: %s" % (len(near), REL_TOL, near[:4])])


def check_layer(ck, lays, chunk):
    scores = Scores(lays)

    def check(spec, what, L, lay, mask):
        obs = mask.astype(bool)
        if spec == "full":
            kvref.check_full(ck, what, obs)
            return
        p = KvzipSpec(spec)
        if p.level == "token" and p.alloc == "global":
            check_global(ck, what, p, scores, L, obs)
            return
        r = kvzip_replay(p, lay, scores.get(p)[L], chunk, observed=obs, layer=L, num_layers=2, rel_tol=REL_TOL)
        ck.check(not r.problems, what + ": kept masks == reference", "\n".join(r.problems))
        ck.check(r.evictions > 0, what + ": the reference evicted")
        ck.near_ties(what, r.near_ties)
    return check


def report_jaccard(ck, tag, lays):
    """Kept-set Jaccard against the original's rule (scoring=chunk, alloc=global, float64) of the
    bf16 softmax and of kvsim's alternatives, computed by the reference on this trace."""
    scores = Scores(lays)
    for ratio in (0.1, 0.3):
        base_p = KvzipSpec("kvzip(budget=%g)" % ratio)
        base, _ = original_kept(lays, scores.get(base_p), 4, 32, ratio)
        bf, _ = original_kept(lays, scores.get(base_p, bf16), 4, 32, ratio)
        line = ["bf16 softmax %.3f" % jaccard(base, bf)]
        # The trace's stored queries: every 16th of them (a scenario's default density; the original
        # takes every repeat token's query).
        sparse = {}
        for L, lay in lays.items():
            sub = copy.copy(lay)
            sub.recon, sub.recon_rows = lay.recon[:, ::16], lay.recon_rows[::16]
            sparse[L] = sub
        sub_kept, _ = original_kept(lays, original_scores(sparse, 4, 32), 4, 32, ratio)
        line.append("1/16 of the stored queries %.3f" % jaccard(base, sub_kept))
        whole_p = KvzipSpec("kvzip(budget=%g, scoring=whole)" % ratio)
        whole, _ = original_kept(lays, scores.get(whole_p), 4, 32, ratio)
        line.append("scoring=whole %.3f" % jaccard(base, whole))
        for spec in ("kvzip(budget=%g, alloc=layer)", "kvzip(budget=%g, alloc=head)",
                     "kvzip(budget=%g, alloc=layer, scoring=whole)"):
            sp = KvzipSpec(spec % ratio)
            other = {L: kvzip_replay(sp, lay, scores.get(sp)[L], None).kept for L, lay in lays.items()}
            line.append("%s %.3f" % (spec.replace("kvzip(budget=%g, ", "").rstrip(")"), jaccard(base, other)))
        ck.note("%s ratio %g: Jaccard vs the original's rule: %s" % (tag, ratio, "; ".join(line)))


# (tag, num_q_heads, num_kv_heads, head_dim, chunk, seed); recon queries per model below.
MODELS = [("mha", 2, 2, 16, 640, 51), ("gqa", 8, 2, 16, 700, 52)]
RECON = {"mha": 3000, "gqa": 700}  # every copy's query (capped at the context), and strided
N, M = 2600, 12
UNCHUNKED = ["kvzip(budget=0.2)", "kvzip(budget=0.05, sinks=8)", "kvzip(budget=0.3, sinks=0, window=16)",
             "kvzip(budget=0.2, scoring=whole)", "kvzip(budget=0.25, alloc=head, sinks=0, window=8)",
             "kvzip(level=head, budget=0.5, window=16)", "kvzip(budget=300, alloc=layer, window=16, decode=step)",
             "kvzip(budget=0.3, alloc=head, decode=every:4)", "kvzip(budget=0.2, alloc=layer, scoring=whole)"]
CHUNKED = ["kvzip(budget=0.3, prefill=chunk)", "kvzip(budget=0.2, alloc=head, window=8, prefill=chunk, decode=every:3)",
           "kvzip(level=head, budget=0.6, window=24, prefill=chunk, decode=step)", "kvzip(budget=0.1)",
           "kvzip(budget=0.1, decode=every:5)"]


def refused(ck, args, tag, wd, model_ini, trace, spec, pattern, what):
    scen = kvref.write_ini(os.path.join(wd, "%s.ini" % tag), [("model", [("preset", model_ini)]),
                                                            ("workload", [("trace", os.path.basename(trace))]),
                                                            ("policy", [("spec", spec)])])
    ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", os.path.join(wd, "out_" + tag)])
    if pattern is None:
        ck.check(ok, what, msg)
    else:
        ck.check(not ok and re.search(pattern, msg), what, msg)


def run(ck, args):
    for tag, hq, hkv, d, chunk, seed in MODELS:
        loaded = {}

        def compare(kept_file, specs, lays, sc_chunk, where):
            kvref.compare_kept(ck, kept_file, specs, lays, where, check_layer(ck, lays, sc_chunk))

        def load_once(trace, tag=tag, shape=(hq, hkv, d)):
            loaded["lays"] = load(ck, tag, shape, trace)
            return loaded["lays"]

        kvref.run_kept_model(ck, args, tag, hq, hkv, d, N, M, seed, kvref.two_scenarios(chunk, UNCHUNKED, CHUNKED),
                             compare, ["--recon-queries", RECON[tag]], load=load_once)
        if loaded.get("lays"):
            report_jaccard(ck, tag, loaded["lays"])
    # Without recon queries: refused, naming the dataset.
    made = kvref.synth_trace(ck, args, "norecon", 2, 2, 16, 200, 4, 53)
    if made is None:
        return
    wd, model_ini, trace = made
    refused(ck, args, "norecon", wd, model_ini, trace, "kvzip", r"trace\.h5 has no dataset /requests/0/layer_0/recon_queries",
            "kvzip on a trace without recon_queries is refused naming the file and dataset")
    # Format 1.0 (recon queries, no passes): the original's scoring is refused; scoring=whole runs.
    made = kvref.synth_trace(ck, args, "v10", 2, 2, 16, 200, 4, 54, ["--recon-queries", 50])
    if made is None:
        return
    import h5py
    wd, model_ini, trace = made
    with h5py.File(trace, "r+") as f:
        del f.attrs["version_minor"]
        for L in (0, 1):
            for name in ("recon_passes", "recon_keys", "recon_query_rows"):
                del f["requests/0/layer_%d/%s" % (L, name)]
    refused(ck, args, "v10", wd, model_ini, trace, "kvzip",
            r"scores each reconstruction pass's own chunk .*trace\.h5 has no dataset /requests/0/layer_0/recon_passes",
            "kvzip (scoring=chunk) on a format 1.0 trace is refused naming recon_passes")
    refused(ck, args, "v10_whole", wd, model_ini, trace, "kvzip(scoring=whole)", None,
            "kvzip(scoring=whole) runs on a format 1.0 trace")
    shutil.rmtree(os.path.join(wd, "out_v10_whole"), ignore_errors=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
