"""Independent float64 references for pyramidkv, adakv and chunkkv (SnapKV-scored policies).

Written from shared/reference/policy-notes.md (PyramidKV, AdaKV, ChunkKV, SnapKV sections) and
shared/DESIGN.md §4 (capacity rule), plus the documented kvsim adaptations (window kept outside
the selection, chunk rounding), never from kvsim's C++ sources. SnapKV scores and pooling come
from kvref (the shared SnapKV reference).

This module holds what the three policies share:
  - PolicyParams: a spec parsed with each method's reference defaults;
  - uniform_capacity (DESIGN.md §4) and pyramid_layer_budget / pyramid_capacity (kvpress
    pyramidkv_press.py get_layer_budget, scaled per prefill chunk);
  - snapkv_head_scores: pooled window-attention scores of one KV head's non-window entries;
  - guided_replay: a layer-level replay of any "competition" policy, optionally guided by kvsim's
    final kept mask so that float32-vs-float64 near-ties at a selection boundary are accepted and
    reported while any other difference is a failure;
  - pyramidkv_step: PyramidKV's selection (SnapKV per head at the layer's capacity).
ref_adakv.py and ref_chunkkv.py add their selections on top.
"""
import numpy as np

import kvref

DEFAULTS = {
    "pyramidkv": dict(budget="0.2", window=64, kernel=5, pooling="avg", beta=20),
    "adakv": dict(budget="0.2", window=32, kernel=7, pooling="max", floor_alpha=0.2, alloc="original"),
    "chunkkv": dict(budget="0.2", window=64, kernel=5, pooling="avg", chunk_length=20),
    "lava": dict(budget="0.2", window=32, kernel=7, pooling="max", floor_alpha=0.2),
}


class PolicyParams:
    def __init__(self, spec):
        self.spec = spec
        self.name, args = kvref.parse_spec(spec)
        d = dict(DEFAULTS[self.name])
        d.update(args)
        b = str(d.pop("budget"))
        if "." in b:
            self.budget_frac, self.budget_int = float(b), None
            assert 0 < self.budget_frac < 1
        else:
            self.budget_frac, self.budget_int = None, int(b)
        self.window = int(d.pop("window"))
        self.kernel = int(d.pop("kernel"))
        self.pooling = d.pop("pooling")
        self.prefill = d.pop("prefill", "post_fill")
        assert d.pop("decode", "none") == "none", "reference models decode=none only"
        assert self.prefill in ("post_fill", "chunk")
        self.beta = int(d.pop("beta", 20))
        self.alloc = d.pop("alloc", None)
        self.chunk_length = int(d.pop("chunk_length", 20))
        self.floor_alpha = float(d.pop("floor_alpha", 0.2))
        self.layer_budget = d.pop("layer_budget", "entropy" if self.name == "lava" else "uniform")
        # GQA (pyramidkv only in kvsim): mean|max reduce the group before pooling; expand is replayed on
        # kvref.expanded_layer (KVCache-Factory's default layout: repeat_kv before update_kv).
        self.gqa = d.pop("gqa", "mean")
        assert self.gqa in ("mean", "max", "expand")
        assert not d, "unknown arguments %r" % d

    def evicts_after(self, n, chunks, j):
        return self.prefill == "chunk" or chunks[j][1] == n

    def window_positions(self, a, b):
        """The observation window after pass [a, b): the chunk's own last queries in chunk mode,
        else the last `window` prompt positions."""
        w = min(self.window, b - a) if self.prefill == "chunk" else min(self.window, b)
        return np.arange(b - w, b, dtype=np.int64)


def uniform_capacity(p, n, chunks, j):
    """DESIGN.md §4: entries per head after prefill pass j."""
    if p.budget_int is not None:
        return p.budget_int
    cap = lambda c: min(kvref.round_half_even(p.budget_frac * c) + p.window, c)
    if p.prefill == "post_fill":
        return cap(n)
    return sum(cap(b - a) for a, b in chunks[: j + 1])


def pyramid_layer_budget(T, U, w, beta, layer, L):
    """Zefan-Cai/KVCache-Factory pyramidkv_utils.py PyramidKVCluster.update_kv, with
    max_capacity_prompt = U (window included): the pyramid spreads the scored part U - w."""
    if L < 2 or T <= U:
        return U
    scored = U - w
    if scored <= 0 or T < 2 * scored:  # the reference's uniform SnapKV branch
        return U
    min_num = scored // beta
    max_num = scored * 2 - min_num
    if max_num >= T - w:
        max_num = T - w
        min_num = scored * 2 - max_num
    steps = (max_num - min_num) // (L - 1)
    return max_num - layer * steps + w


def pyramid_capacity(p, n, chunks, j, layer, L):
    """Per-layer capacity: post_fill: pyramid(n, uniform); chunk: each chunk's share scaled per
    layer and summed; token budget: pyramid(T, min(B, T)), T = tokens so far (chunk) or n."""
    w = p.window
    if p.budget_int is not None:
        T = chunks[j][1] if p.prefill == "chunk" else n
        return pyramid_layer_budget(T, min(p.budget_int, T), w, p.beta, layer, L)
    share = lambda c: pyramid_layer_budget(c, min(kvref.round_half_even(p.budget_frac * c) + w, c), w, p.beta, layer, L)
    if p.prefill == "post_fill":
        return share(n)
    return sum(share(b - a) for a, b in chunks[: j + 1])


def snapkv_head_scores(p, lay, h, cache, window_pos, dtype=np.float64):
    """Pooled scores of cache[:len(cache)-len(window_pos)] (the non-window entries) for KV head h."""
    nonwin = len(cache) - len(window_pos)
    qg = lay.queries[h * lay.G:(h + 1) * lay.G]
    assert p.gqa != "expand" or lay.G == 1, "gqa=expand replays kvref.expanded_layer"
    gqa = "mean" if p.gqa == "expand" else p.gqa
    s = kvref.snapkv_scores(lay.keys[h], qg, lay.qpos_index, cache, window_pos, nonwin, lay.d, dtype, gqa)
    return kvref.pool1d(s, p.kernel, p.pooling, dtype)


class Competition:
    """Select the best K items of `ranking` (best first). Item i stands for the entries members[i]
    ([(head, position)]); raw[i] is its float64 score (for the near-tie test)."""

    def __init__(self, ranking, raw, K, members):
        self.ranking, self.raw, self.K, self.members = list(ranking), raw, K, members


def ranked(items, score):
    """Items by decreasing score; ties: the smaller item (tuple order: head, then position) first."""
    return sorted(items, key=lambda it: (-score[it], it))


def guided_replay(p, lay, step, observed=None, chunk=None, rel_tol=1e-5):
    """Replays one layer. step(j, resident) -> None (no eviction) or (always, [Competition]) where
    `always` are (head, position) entries kept regardless of scores. Without `observed`: the float64
    reference; returns (kept mask [H, n+m], [], []). With `observed` (kvsim's final mask): at each
    eviction, items whose entries kvsim still holds at the end must have been chosen; the rest is
    completed in reference order; a choice differing from the reference is accepted only as a
    near-tie (largest reference-chosen raw score kvsim dropped minus smallest raw score it kept
    instead < rel_tol x max raw score). Returns (mask, problems, near_ties)."""
    n, m, H = lay.n, lay.m, lay.hkv
    chunks = kvref.prefill_chunks(n, chunk)
    evicting = []
    resident = [np.zeros(0, dtype=np.int64) for _ in range(H)]
    problems, ties = [], []
    for j, (a, b) in enumerate(chunks):
        resident = [np.concatenate([r, np.arange(a, b, dtype=np.int64)]) for r in resident]
        if not p.evicts_after(n, chunks, j):
            continue
        out = step(j, resident)
        if out is None:
            continue
        evicting.append(j)
        always, comps = out
        chosen_entries = set(always)
        for ci, c in enumerate(comps):
            ref_sel = c.ranking[: c.K]
            sel = ref_sel
            if observed is not None:
                forced = [it for it in c.ranking if any(observed[hh, pp] for hh, pp in c.members[it])]
                if len(forced) > c.K:
                    problems.append("chunk %d competition %d: kvsim holds %d items, more than the %d chosen"
                                    % (j, ci, len(forced), c.K))
                    return None, problems, ties
                fs = set(forced)
                sel = forced + [it for it in c.ranking if it not in fs][: c.K - len(forced)]
                if set(sel) != set(ref_sel):
                    only_k = set(sel) - set(ref_sel)
                    only_r = set(ref_sel) - set(sel)
                    gap = max(c.raw[i] for i in only_r) - min(c.raw[i] for i in only_k)
                    smax = max(c.raw.values())
                    desc = ("chunk %d [%d,%d) competition %d: kvsim chose %s, reference %s; gap %.3g (max %.3g)"
                            % (j, a, b, ci, sorted(only_k)[:4], sorted(only_r)[:4], gap, smax))
                    if not gap < rel_tol * smax:
                        problems.append(desc)
                        return None, problems, ties
                    ties.append(desc)
            for it in sel:
                chosen_entries.update(c.members[it])
        resident = [np.array(sorted(pp for hh, pp in chosen_entries if hh == h), dtype=np.int64) for h in range(H)]
    kept = np.zeros((H, n + m), dtype=bool)
    for h in range(H):
        kept[h, resident[h]] = True
        kept[h, n:] = True  # decode=none: generated tokens all kept
    if observed is not None and not np.array_equal(kept, observed):
        diff = np.argwhere(kept != observed)
        problems.append("final mask differs at %d (head, position) pairs, first %s"
                        % (len(diff), diff[:6].tolist()))
    return kept, problems, ties


def gqa_guided_replay(p, lay, make_step, observed=None, chunk=None):
    """guided_replay(p, lay, make_step(lay), observed, chunk), except under gqa=expand on a GQA layer:
    then the authors' layout (K/V repeated per query head before the cache) is replayed on
    kvref.expanded_layer as the float64 reference, one selection per query head, and its per-KV-head
    union must equal kvsim's kept file (which holds each KV head's union of its G copies) exactly."""
    if p.gqa != "expand" or lay.G == 1:
        return guided_replay(p, lay, make_step(lay), observed, chunk)
    ex = kvref.expanded_layer(lay)
    copies, problems, _ = guided_replay(p, ex, make_step(ex), None, chunk)
    kept = kvref.union_per_kv_head(copies, lay.G)
    if observed is not None and not np.array_equal(kept, observed):
        diff = np.argwhere(kept != observed)
        problems = problems + ["gqa=expand: kept union differs at %d (head, position) pairs, first %s"
                               % (len(diff), diff[:6].tolist())]
    return kept, problems, []


def snapkv_competitions(p, lay, j, resident, capacity, chunks):
    """SnapKV per head at `capacity`: always = window, one competition per head over the rest."""
    a, b = chunks[j]
    wp = p.window_positions(a, b)
    always, comps = [], []
    for h, cache in enumerate(resident):
        if len(cache) <= capacity:
            always += [(h, int(t)) for t in cache]
            continue
        nonwin = cache[: len(cache) - len(wp)]
        s = snapkv_head_scores(p, lay, h, cache, wp)
        raw = {(h, int(t)): float(v) for t, v in zip(nonwin, s)}
        comps.append(Competition(ranked(raw.keys(), raw), raw, capacity - len(wp), {it: [it] for it in raw}))
        always += [(h, int(t)) for t in wp]
    return always, comps


def pyramidkv_step(p, lay, layer, num_layers, chunk):
    chunks = kvref.prefill_chunks(lay.n, chunk)

    def step(j, resident):
        cap = pyramid_capacity(p, lay.n, chunks, j, layer, num_layers)
        if all(len(r) <= cap for r in resident):
            return None
        return snapkv_competitions(p, lay, j, resident, cap, chunks)

    return step


# ---------------------------------------------------------------------------------------------
# Driver shared by test_{pyramidkv,adakv,chunkkv}_reference.py (on kvref's)
# ---------------------------------------------------------------------------------------------

def hand_layer(x_per_head, n, m=0, num_q_per_kv=1):
    """d=1 layer: KV head h has keys ln x_h and every query is 1, so attention ~ x (queries at all positions)."""
    H = len(x_per_head)
    keys = np.log(np.asarray(x_per_head, dtype=np.float64)).reshape(H, n + m, 1)
    qs = np.ones((H * num_q_per_kv, n + m, 1))
    return kvref.LayerData(keys, qs, np.arange(n + m), n, m, H * num_q_per_kv, H, 1)


def check_layer(ck, replay, num_layers, chunk):
    """kvref.compare_kept's per-layer check: replay(params, layer_data, layer_index, num_layers,
    chunk, observed) -> (mask, problems, ties) must find kvsim's masks consistent."""
    def check(spec, what, L, lay, mask):
        _, problems, ties = replay(PolicyParams(spec), lay, L, num_layers, chunk, mask.astype(bool))
        ck.check(not problems, what + ": kept masks == reference", "\n".join(problems))
        ck.near_ties(what, ties)
    return check


def run_models(ck, args, models, unchunked, chunked, replay, n, m, num_layers=2, layers=(0, 1), synth_window=64):
    """For each model (tag, hq, hkv, d, chunk, seed): synthesise a trace (queries stored at the end
    of every chunk), run the unchunked and chunked scenarios with --save-kept and compare every
    policy's masks (after `full`, which kvsim always runs first) with the reference."""
    kvref.run_kept_models(ck, args, models, n, m, unchunked, chunked,
                          lambda chunk: check_layer(ck, replay, num_layers, chunk),
                          synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", synth_window], layers=layers,
                          num_layers=num_layers, with_full=False,
                          spec_prefix=lambda spec: PolicyParams(spec).name + "(", shape_label="kept shape")


def kept_sets(replay, spec, lay, chunk=None):
    """The reference's kept positions per KV head of a one-layer model."""
    kept, _, _ = replay(PolicyParams(spec), lay, 0, 1, chunk)
    return [np.nonzero(k)[0].tolist() for k in kept]
