#!/usr/bin/python3
"""kvsim's SnapKV kept sets against an independent float64 numpy reference.

The reference follows FasterDecoding/SnapKV @395b54d snapkv/monkeypatch/snapkv_utils.py
(SnapKVCluster.update_kv: the last `window` queries' causal softmax over the cache, summed over the
window, pooled along positions with padding kernel//2, top (capacity - window) of the prefix plus
the window), with GQA as gqa= selects: mean/max reduce the group before pooling (NVIDIA/kvpress
snapkv_press.py, KVCache-Factory's per-KV-head path), expand replays the layer with K/V repeated per
query head (the original's repeat_kv before update_kv); docs/policy-sources.md "snapkv".

Self-tests (always run; alone with --self-test): the reference on hand examples (1 head, d=1,
sum over the window, policy-notes.md's SnapKV example adapted), pooling by hand, chunked
eviction by hand, the vectorized reference against a loop-based one on random GQA data, and the
mask comparison's tolerance logic (accepts a near-tie, rejects a real difference).

GQA (issue 19): gqa=mean averages the group's window-summed attention, gqa=max takes its maximum
(both before pooling, as KVCache-Factory pyramidkv_utils.py _grouped_window_attn_cache), and
gqa=expand is FasterDecoding/SnapKV's layout (mistral_hijack_4_37.py: repeat_kv before update_kv): the
reference replays a layer whose KV heads are repeated per query head (kvref.expanded_layer), one
selection per query head, and kvsim's kept file (each KV head's union of its G copies) must equal the
union of those exactly.

Then for MHA, GQA-2 and GQA-4 tiny models: `kvsim synth` a trace (n=600, m=8, two layers, with
--chunk-tokens/--window so every chunk's last queries are stored), `kvsim run --save-kept` with
snapkv under both poolings, post_fill and chunk, fractional and integer budgets, the three gqa modes (plus streaming),
and compare every policy's final kept mask for every layer and KV head with the reference
computed from the trace file's keys and queries. kvsim scores in float32: a differing set is
accepted only as a near-tie at the selection boundary (largest reference score kvsim dropped minus
smallest kept < 1e-5 of the max score); such cases are reported. full must keep everything.

usage: /usr/bin/python3 tests/reference/test_snapkv_reference.py --kvsim BIN --workdir DIR
       /usr/bin/python3 tests/reference/test_snapkv_reference.py --self-test
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from kvref import Policy  # noqa: E402


def hand_layer(key_weights, query_positions, n, m=0, q=1.0):
    """1 KV head, 1 query head, d=1: key k_j = ln(x_j), queries q at the given positions, so
    exp(q*k_j/sqrt(1)) = x_j**q: attention is proportional to the chosen weights."""
    w = list(key_weights) + [1.0] * (n + m - len(key_weights))   # decode keys (never scored)
    keys = np.log(np.asarray(w, dtype=np.float64)).reshape(1, -1, 1)
    qs = np.full((1, len(query_positions), 1), q)
    return kvref.LayerData(keys, qs, query_positions, n, m, 1, 1, 1)


def kept_of(spec, layer, chunk=None, observed=None, h=0):
    res = kvref.snapkv_replay(Policy(spec), layer, h, chunk, observed=observed)
    return res, (sorted(np.nonzero(res.kept)[0].tolist()) if res.kept is not None else None)


def self_tests(ck):
    # Pooling by hand: s = [.1,.5,.2,.05,.3], kernel 3.
    s = [0.1, 0.5, 0.2, 0.05, 0.3]
    got = kvref.pool1d(s, 3, "avg")
    want = [0.6 / 3, 0.8 / 3, 0.75 / 3, 0.55 / 3, 0.35 / 3]
    ck.check(np.allclose(got, want, rtol=0, atol=1e-15), "hand: avg pooling k=3 (zero padded, /k)", got)
    ck.eq(kvref.pool1d(s, 3, "max").tolist(), [0.5, 0.5, 0.5, 0.3, 0.3], "hand: max pooling k=3")
    ck.eq(kvref.pool1d(s, 1, "avg").tolist(), s, "hand: kernel 1 is the identity")
    ck.check(np.allclose(kvref.pool1d([1.0, 2.0], 5, "avg"), [0.6, 0.6]), "hand: avg pooling wider than input")
    ck.eq(kvref.top_k_positions([0.5, 0.7, 0.5, 0.5], [3, 9, 1, 2], 3), [9, 1, 2], "hand: ties -> lower position first")

    # policy-notes.md's SnapKV example: T=4, keys [1,0,2,x], last query q=1, w=1, kernel 1:
    # ranking t=2 > t=0 > t=1; keep {3 (window), 2} with capacity 2 (integer 2, or 0.25*4+1).
    e = math.e
    lay = hand_layer([e ** 1, e ** 0, e ** 2, e ** 5], [3], 4)
    ck.eq(kept_of("snapkv(budget=2, window=1, kernel=1)", lay)[1], [2, 3], "hand: policy-notes example B=2")
    ck.eq(kept_of("snapkv(budget=0.25, window=1, kernel=1)", lay)[1], [2, 3], "hand: policy-notes example b=0.25")
    ck.eq(kept_of("snapkv(budget=3, window=1, kernel=1)", lay)[1], [0, 2, 3], "hand: policy-notes example B=3")
    ck.eq(kept_of("snapkv(budget=4, window=1, kernel=1)", lay)[1], [0, 1, 2, 3], "hand: capacity >= cache keeps all")

    # Pooling inside the policy: weights x = [.1,.5,.2,.05,.3 | window 1.0], one query, B=3 (2 + window).
    lay = hand_layer([0.1, 0.5, 0.2, 0.05, 0.3, 1.0], [5], 6, m=2)
    ck.eq(kept_of("snapkv(budget=3, window=1, kernel=1)", lay)[1], [1, 4, 5, 6, 7], "hand: kernel 1 (+decode kept)")
    ck.eq(kept_of("snapkv(budget=3, window=1, kernel=3, pooling=avg)", lay)[1], [1, 2, 5, 6, 7], "hand: avg k=3")
    ck.eq(kept_of("snapkv(budget=3, window=1, kernel=3, pooling=max)", lay)[1], [0, 1, 5, 6, 7], "hand: max k=3 tie order")

    # Sum over a 2-query window with the causal mask: weights x = [1,2,3 | a,b] (window = positions 3,4).
    # Query 3 sees keys 0..3, query 4 sees 0..4: score_j = x_j/(6+a) + x_j/(6+a+b), same ranking as x;
    # check the actual scores against the closed form.
    a_, b_ = 4.0, 8.0
    lay = hand_layer([1, 2, 3, a_, b_], [3, 4], 5)
    sc = kvref.snapkv_scores(lay.keys[0], lay.queries, lay.qpos_index, np.arange(5), [3, 4], 3, 1)
    want = [x / (6 + a_) + x / (6 + a_ + b_) for x in (1, 2, 3)]
    ck.check(np.allclose(sc, want, rtol=1e-14), "hand: window sum with causal mask", (sc, want))

    # GQA: group mean. Two query heads of one KV head, q=+1 and q=-1 on keys ln x: head 0 ~ x, head 1 ~ 1/x.
    keys = np.log(np.array([1.0, 2.0, 4.0, 1.0])).reshape(1, 4, 1)
    qs = np.array([[[1.0]], [[-1.0]]])
    lay = kvref.LayerData(keys, qs, [3], 4, 0, 2, 1, 1)
    sc = kvref.snapkv_scores(lay.keys[0], lay.queries, lay.qpos_index, np.arange(4), [3], 3, 1)
    want = [(x / 8.0 + (1 / x) / 2.75) / 2 for x in (1.0, 2.0, 4.0)]
    ck.check(np.allclose(sc, want, rtol=1e-14), "hand: GQA group mean of probabilities", (sc, want))

    # GQA modes by hand (tests/policies/gqa_modes_test.cpp): keys ln [1, 2, 3, 1], query heads q = 1
    # (attention ~ x) and q = -2 (~ x^-2), window {3}, budget 2: mean -> 0, max -> 2, expand: head 0
    # keeps 2, head 1 keeps 0.
    keys = np.log(np.array([1.0, 2.0, 3.0, 1.0])).reshape(1, 4, 1)
    lay = kvref.LayerData(keys, np.array([[[1.0]] * 4, [[-2.0]] * 4]), np.arange(4), 4, 0, 2, 1, 1)
    for gqa, want in (("mean", [0, 3]), ("max", [2, 3])):
        ck.eq(kept_of("snapkv(budget=2, window=1, kernel=1, gqa=%s)" % gqa, lay)[1], want, "hand: GQA " + gqa)
    ex = kvref.expanded_layer(lay)
    ck.eq([kept_of("snapkv(budget=2, window=1, kernel=1, gqa=expand)", ex, h=q)[1] for q in range(2)], [[2, 3], [0, 3]],
          "hand: GQA expand, one kept set per query head")
    ck.eq(kvref.union_per_kv_head([[1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 1]], 2).astype(int).tolist(),
          [[1, 0, 1, 1], [0, 1, 0, 1]], "hand: union of each KV head's copies")

    # Chunked eviction by hand: n=6, chunk 3, w=1, kernel 1, window queries at 2 and 5,
    # weights x = [3,1,2,5,4,1] (x_5 is the window key of chunk 1).
    lay = hand_layer([3, 1, 2, 5, 4, 1], [2, 5], 6)
    ck.eq(kept_of("snapkv(budget=2, window=1, kernel=1, prefill=chunk)", lay, chunk=3)[1], [3, 5],
          "hand: chunk B=2 (chunk0 keeps {0,2}; chunk1 keeps {3,5})")
    ck.eq(kept_of("snapkv(budget=3, window=1, kernel=1, prefill=chunk)", lay, chunk=3)[1], [3, 4, 5],
          "hand: chunk B=3 (no eviction after chunk0)")
    ck.eq(kept_of("snapkv(budget=0.25, window=1, kernel=1, prefill=chunk)", lay, chunk=3)[1], [0, 3, 4, 5],
          "hand: chunk b=0.25 (capacity 2 then 4)")
    ck.eq(kept_of("snapkv(budget=0.5, window=1, kernel=1, prefill=chunk)", lay, chunk=3)[1], list(range(6)),
          "hand: chunk b=0.5 (round(1.5)+1 = 3 per chunk: no eviction)")
    ck.eq(kept_of("snapkv(budget=2, window=1, kernel=1, prefill=post_fill)", lay, chunk=3)[1], [3, 5],
          "hand: post_fill with chunked prefill scores once over the whole prompt")
    # window larger than the last chunk: w' = min(w, chunk length). n=7, chunk 3 -> [0,3),[3,6),[6,7).
    lay = hand_layer([3, 1, 2, 5, 4, 1, 9], [0, 1, 2, 3, 4, 5, 6], 7)
    res, kept = kept_of("snapkv(budget=3, window=2, kernel=1, prefill=chunk)", lay, chunk=3)
    # chunk0: cache 3 <= 3. chunk1: cache 6 > 3, window {4,5}, keep 1 of {0..3}: max of
    # x/(11+5+4 ... ) ~ x -> 3 (x=5). chunk2 (len 1): cache {3,4,5,6} > 3, w'=1 -> keep top 2 of {3,4,5}.
    ck.eq(kept, [3, 4, 6], "hand: w' = min(w, last chunk length)")

    # Vectorized reference == loop reference on random data (MHA, GQA-2, GQA-4; both modes).
    rng = np.random.default_rng(7)
    specs = ["snapkv(budget=0.3, window=4, kernel=3, pooling=avg, prefill=chunk)",
             "snapkv(budget=9, window=3, kernel=5, pooling=max, prefill=chunk)",
             "snapkv(budget=0.25, window=5, kernel=5, pooling=max)",
             "snapkv(budget=12, window=2, kernel=1, pooling=avg, prefill=post_fill)"]
    for hq, hkv, d in [(2, 2, 4), (4, 2, 3), (8, 2, 2)]:
        n, m, chunk = 47, 3, 13
        keys = rng.normal(size=(hkv, n + m, d)) * 1.5
        qpos = np.arange(n + m)
        queries = rng.normal(size=(hq, n + m, d)) * 1.5
        lay = kvref.LayerData(keys, queries, qpos, n, m, hq, hkv, d)
        for spec in specs:
            pol = Policy(spec)
            for h in range(hkv):
                ref = kvref.snapkv_replay(pol, lay, h, chunk)
                naive = kvref.snapkv_reference_naive(pol, keys, queries, qpos, n, m, chunk, h, hq // hkv, d)
                ck.eq(np.nonzero(ref.kept)[0].tolist(), naive,
                      "vectorized == loop reference: Hq=%d Hkv=%d %s head %d" % (hq, hkv, spec, h))

    # The comparison's tolerance: an exact match passes; swapping a near-tied boundary pair is a
    # reported near-tie; swapping a clearly better entry for a worse one is a failure.
    x = [0.9, 0.3 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0]          # window = position 5; keep 2 + window
    lay = hand_layer(x, [5], 6, m=1)
    spec = "snapkv(budget=3, window=1, kernel=1)"
    res, kept = kept_of(spec, lay)
    ck.eq(kept, [0, 4, 5, 6], "tolerance: reference selection")
    obs = np.zeros(7, dtype=bool)
    obs[[0, 4, 5, 6]] = True
    r = kvref.snapkv_replay(Policy(spec), lay, 0, None, observed=obs)
    ck.check(not r.problems and not r.near_ties, "tolerance: identical mask accepted", r.problems)
    x2 = [0.9, 0.6 * (1 + 1e-9), 0.3, 0.05, 0.6, 1.0]         # 1 and 4 near-tied at the boundary
    lay2 = hand_layer(x2, [5], 6, m=1)
    obs = np.zeros(7, dtype=bool)
    obs[[0, 4, 5, 6]] = True                                   # reference keeps {0, 1}
    r = kvref.snapkv_replay(Policy(spec), lay2, 0, None, observed=obs)
    ck.check(not r.problems and len(r.near_ties) == 1, "tolerance: near-tie swap accepted and reported",
             (r.problems, r.near_ties))
    obs = np.zeros(7, dtype=bool)
    obs[[0, 3, 5, 6]] = True                                   # keeps 3 (0.05) instead of 4 (0.6)
    r = kvref.snapkv_replay(Policy(spec), lay, 0, None, observed=obs)
    ck.check(r.problems and not r.near_ties, "tolerance: real difference rejected", (r.problems, r.near_ties))
    obs = np.zeros(7, dtype=bool)
    obs[[0, 4, 5]] = True                                      # decode token dropped
    r = kvref.snapkv_replay(Policy(spec), lay, 0, None, observed=obs)
    ck.check(bool(r.problems), "tolerance: dropped decode token rejected", r.problems)
    # Chunk mode: a kvsim mask that kept, at an intermediate eviction, an entry the reference drops.
    lay = hand_layer([3, 1, 2, 5, 4, 1], [2, 5], 6)
    obs = np.zeros(6, dtype=bool)
    obs[[1, 3, 4, 5]] = True                                   # 1 (x=1) cannot beat 0 (x=3) at chunk 0
    r = kvref.snapkv_replay(Policy("snapkv(budget=0.25, window=1, kernel=1, prefill=chunk)"), lay, 0, 3, observed=obs)
    ck.check(r.problems and any("chunk 0" in p for p in r.problems), "tolerance: intermediate-eviction error found",
             r.problems)


# Tiny models: (tag, num_q_heads, num_kv_heads, head_dim, chunk for the chunked scenario, seed)
MODELS = [
    ("mha", 2, 2, 16, 256, 11),    # chunks 256, 256, 88
    ("gqa2", 4, 2, 16, 296, 12),   # chunks 296, 296, 8: last chunk shorter than most windows
    ("gqa4", 8, 2, 16, 128, 13),   # chunks 128 x 4, 88
]
N, M, SYNTH_WINDOW = 600, 8, 32

UNCHUNKED_SPECS = [
    "snapkv(budget=0.2)",                                                    # defaults: w=32, k=7, max, post_fill
    "snapkv(budget=0.5, window=16, kernel=5, pooling=avg, prefill=post_fill)",
    "snapkv(budget=100, window=8, kernel=3, pooling=max, prefill=post_fill)",
    "snapkv(budget=150, window=32, kernel=1, pooling=avg)",
    "snapkv(budget=0.25, window=8, kernel=5, pooling=avg, prefill=chunk)",  # unchunked: one chunk
    "snapkv(budget=0.2, gqa=expand)",
    "snapkv(budget=0.25, window=8, kernel=5, pooling=avg, gqa=max)",
    "snapkv(budget=100, window=8, kernel=3, pooling=max, gqa=max)",
    "streaming(sinks=4, window=64)",
]
CHUNKED_SPECS = [
    "snapkv(budget=0.25, window=16, kernel=5, pooling=max, prefill=chunk)",
    "snapkv(budget=0.3, window=8, kernel=7, pooling=avg, prefill=chunk)",
    "snapkv(budget=64, window=32, kernel=3, pooling=avg, prefill=chunk)",
    "snapkv(budget=120, window=16, kernel=7, pooling=max, prefill=chunk)",
    "snapkv(budget=0.1, window=8, kernel=5, pooling=max, prefill=post_fill)",  # last chunk >= 8 in all models
    "snapkv(budget=0.25, window=16, kernel=5, pooling=max, prefill=chunk, gqa=expand)",
    "snapkv(budget=0.3, window=8, kernel=7, pooling=avg, prefill=chunk, gqa=max)",
    "streaming(sinks=2, window=16)",
]


def check_layer(ck, chunk):
    def check(spec, what, L, lay, mask):
        pol = Policy(spec)
        n, m = N, M
        ck.check(mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 1},
                 "%s: kept is uint8 0/1" % what, "dtype %s values %s" % (mask.dtype, np.unique(mask)))
        obs_all = mask.astype(bool)
        if pol.name == "snapkv" and pol.gqa == "expand":
            # One cache per query head; the kept file holds each KV head's union of its G copies.
            ex = kvref.expanded_layer(lay)
            copies = [kvref.snapkv_replay(pol, ex, q, chunk) for q in range(lay.hq)]
            ck.check(not any(r.problems for r in copies), what + ": expanded reference runs",
                     [r.problems for r in copies if r.problems][:1])
            want = kvref.union_per_kv_head([r.kept for r in copies], lay.G)
            diff = np.argwhere(want != obs_all)
            union = np.logical_or(want, obs_all).sum()
            ck.check(len(diff) == 0, what + ": kept union == union of the per-query-head reference sets",
                     "%d differ, first (head, position) %s; Jaccard %.4f"
                     % (len(diff), diff[:5].tolist(), np.logical_and(want, obs_all).sum() / union))
            return
        for h in range(lay.hkv):
            obs = obs_all[h]
            where = "%s head %d" % (what, h)
            if pol.name == "full":
                kvref.check_full(ck, where, obs)
            elif pol.name == "streaming":
                want = np.zeros(n + m, dtype=bool)
                want[: pol.sinks] = True
                want[max(0, n + m - pol.window):] = True
                diff = np.nonzero(want != obs)[0]
                ck.check(len(diff) == 0, where + ": sinks + last window kept", "differs at %s" % diff[:10].tolist())
            else:
                res = kvref.snapkv_replay(pol, lay, h, chunk, observed=obs)
                ck.check(not res.problems, where + ": kept set == reference", "\n".join(res.problems))
                ck.near_ties(where, res.near_ties)
    return check


def load(ck, tag, shape, trace):
    try:
        meta, layers = kvref.read_trace_layers(trace)
    except (OSError, KeyError, AssertionError) as e:
        ck.check(False, "%s: read trace %s" % (tag, trace), repr(e))
        return None
    ck.eq((int(meta["num_q_heads"]), int(meta["num_kv_heads"]), int(meta["head_dim"]),
           meta["prompt_tokens"], meta["generated_tokens"]), shape + (N, M), "%s: trace shape attributes" % tag)
    ck.eq(sorted(layers), [0, 1], "%s: traced layers" % tag)
    return layers


def run(ck, args):
    kvref.run_kept_models(ck, args, MODELS, N, M, UNCHUNKED_SPECS, CHUNKED_SPECS, lambda chunk: check_layer(ck, chunk),
                          synth_args=lambda chunk: ["--chunk-tokens", chunk, "--window", SYNTH_WINDOW], load=load,
                          width=N + M, spec_prefix=lambda spec: Policy(spec).name, shape_label="kept shape")
    if ck.notes:
        print("%d accepted near-tie(s) reported above" % len(ck.notes))


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
