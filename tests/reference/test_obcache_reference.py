#!/usr/bin/python3
"""obcache (OBCache): kvsim's kept masks against the authors' code transliterated to float64 numpy,
on synthetic MHA and GQA traces, post-fill, per chunk and per decode step.

Original (its functionality-equivalent derivative MalachiAjayi/kv-cache-pruner @fc1779f03dddf97a68ae9b5bf5aa33731095a158;
the OBCache repository itself is not stored), step by step:
  1. kv_cache_pruner/monkey_patch/llama.py llama_flashattention2_forward: key_states = repeat_kv(key_states,
     num_key_value_groups) and the same for values (lines 55-56) BEFORE past_key_value.update (line 61):
     the cache holds one copy of each KV head per query head, and score_tracker.update receives Q and
     the repeated K per query head;
  2. kv_cache_pruner/cache_utils.py KVScoreTracker: prefill scores from the last ptb_window (= num_recent)
     queries, A = softmax(qK) causal, qK = q.k/sqrt(d), O = A V; v_update S_v = sum_i A^2 * ||v||^2
     (use_vnorm; else A^2); k_update S_key = sum_i (A qK)^2 (||v||^2 + ||o||^2 - 2 o.v), with use_cross
     + sum_i 2 A^2 qK (||v||^2 - o.v); kvcV = value, kvcK = key, kvcVK = both;
  3. cache_utils.py KVCachePruner.evict / KVScoreTracker.evict: per cache head (= query head), the
     num_sink first entries, topk(n_heavy) of the scores of [num_sink : seq_len - n_recent], and the
     n_recent tail (take_gather along the sequence).
gqa=expand (kvsim's default) is that per-query-head cache: the reference replays G copies of each KV
head, one per query head, and kvsim's kept file (one mask per KV head) must equal the union of a
group's copies. gqa=mean (kvsim's earlier variant) averages the group's saliency, one cache per KV
head. Budgets follow DESIGN.md §4 with window + sinks as the protected count."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, read_layers, replay  # noqa: E402


class Params:
    def __init__(self, spec):
        name, args = kvref.parse_spec(spec)
        assert name == "obcache", spec
        self.window = int(args.pop("window", 32))
        self.sinks = int(args.pop("sinks", 0))
        self.sal = args.pop("saliency", "both")
        self.vnorm = args.pop("vnorm", "yes") == "yes"
        self.gqa = args.pop("gqa", "expand")
        self.budget = Spec(args, self.window + self.sinks)
        assert not args, args


def query_head_saliency(pr, layer, kv, g, resident):
    """KVScoreTracker's saliency of one query head g against (its copy of) KV head kv, for the
    entries before the window."""
    d = layer["keys"].shape[2]
    w = pr.window
    K = layer["keys"][kv][resident]
    V = layer["values"][kv][resident]
    L = len(resident)
    p = L - w
    causal = np.arange(L)[None, :] > (p + np.arange(w))[:, None]     # window query i sees entries <= p + i
    Q = layer["queries"][g][[layer["qpos"][int(t)] for t in resident[p:]]]
    qK = Q @ K.T / math.sqrt(d)
    x = np.where(causal, -np.inf, qK)
    A = np.exp(x - x.max(axis=1, keepdims=True))
    A /= A.sum(axis=1, keepdims=True)
    O = A @ V                                                        # [w, d]
    Vn = (V ** 2).sum(axis=1)[None, :]
    VO = O @ V.T                                                     # [w, L]
    S_v = (A ** 2 * (Vn if pr.vnorm else 1.0)).sum(axis=0)           # v_update
    S_key = ((A * qK) ** 2 * (Vn + (O ** 2).sum(axis=1)[:, None] - 2 * VO)).sum(axis=0)   # k_update
    S_cross = (2 * A ** 2 * qK * (Vn - VO)).sum(axis=0)              # use_cross
    return {"value": S_v, "key": S_key, "both": S_v + S_key + S_cross}[pr.sal][:p]


def head_scores(pr, layer, h, resident, G):
    """Scores of cache head h's middle entries: under expand G = 1 and h is a query head whose copy of
    its KV head sits at h in the expanded layer; under mean / max the group of KV head h."""
    p = len(resident) - pr.window
    per_head = [query_head_saliency(pr, layer, h, g, resident) for g in range(h * G, (h + 1) * G)]
    total = np.max(per_head, axis=0) if pr.gqa == "max" else np.sum(per_head, axis=0) / len(per_head)
    return total[pr.sinks if pr.sinks < p else p:]


def expanded(layer, G):
    """The cache llama.py builds: K and V repeated per query head (repeat_kv), so cache head q holds
    KV head q // G."""
    out = dict(layer)
    out["keys"] = np.repeat(layer["keys"], G, axis=0)
    out["values"] = np.repeat(layer["values"], G, axis=0)
    return out


def make_policy(spec, G):
    """-> (params, scorer); under expand the scorer's layer is expanded(layer, G) and each cache head
    is one query head (G = 1)."""
    pr = Params(spec)
    g = 1 if pr.gqa == "expand" else G
    return pr, lambda layer, evicting, cap: {h: head_scores(pr, layer, h, r, g) for h, r in evicting.items()}


def kept(spec):
    k = np.log(np.array([[1.0], [2], [4], [1]]))
    layer = dict(keys=k[None], values=np.array([[[3.0], [2], [.5], [1]]]), queries=np.ones((1, 4, 1)),
                 qpos={t: t for t in range(4)})
    pr, scorer = make_policy(spec, 1)
    masks, problems, _ = replay(pr.budget, pr.sinks, pr.window, scorer, layer, 4, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # The hand cases of tests/policies/obcache_test.cpp.
    for spec, want in [("obcache(budget=2, window=1, saliency=value)", [1, 3]),
                       ("obcache(budget=2, window=1, saliency=value, vnorm=no)", [2, 3]),
                       ("obcache(budget=2, window=1, saliency=key)", [2, 3]),
                       ("obcache(budget=3, window=1, saliency=key)", [1, 2, 3]),
                       ("obcache(budget=2, window=1)", [1, 3]),
                       ("obcache(budget=3, window=1)", [0, 1, 3]),
                       ("obcache(budget=3, window=1, sinks=1, saliency=key)", [0, 2, 3])]:
        ck.eq(kept(spec), want, "hand: " + spec)
    # GQA (tests/policies/obcache_test.cpp GqaMeanMaxExpand): one KV head, keys ln [1, 2, 3, 1], values 1,
    # query heads q = 1 and q = -2.
    k = np.log(np.array([[1.0], [2], [3], [1]]))
    layer = dict(keys=k[None], values=np.ones((1, 4, 1)), queries=np.stack([np.ones((4, 1)), -2 * np.ones((4, 1))]),
                 qpos={t: t for t in range(4)})
    for gqa, want in [("mean", [[0, 3]]), ("max", [[2, 3]]), ("expand", [[2, 3], [0, 3]])]:
        spec = "obcache(budget=2, window=1, saliency=value, vnorm=no, gqa=%s)" % gqa
        pr, scorer = make_policy(spec, 2)
        lay, heads = (expanded(layer, 2), 2) if gqa == "expand" else (layer, 1)
        masks, _, _ = replay(pr.budget, pr.sinks, pr.window, scorer, lay, 4, 0, None, heads)
        ck.eq([np.nonzero(row)[0].tolist() for row in masks], want, "hand GQA: " + spec)
    # The expanded ||v - o||^2 of S_key against the direct norm.
    rng = np.random.default_rng(7)
    V = rng.normal(size=(5, 3))
    o = rng.normal(size=3)
    direct = ((V - o) ** 2).sum(axis=1)
    ck.check(np.allclose(direct, (V ** 2).sum(axis=1) + (o ** 2).sum() - 2 * V @ o), "||v - o||^2 expansion")


MODELS = [("mha", 2, 2, 16, 71), ("gqa4", 8, 2, 16, 72)]
N, M = 320, 8
SCENARIOS = [
    ("unchunked", None, ["obcache(budget=0.2, window=8)", "obcache(budget=0.3, window=8, saliency=key, decode=every:3)",
                         "obcache(budget=60, window=6, sinks=2, saliency=value, vnorm=no, decode=step)",
                         "obcache(budget=0.2, window=8, gqa=mean)", "obcache(budget=0.25, window=8, gqa=max)"]),
    ("chunk96", 96, ["obcache(budget=0.25, window=8, prefill=chunk)",
                     "obcache(budget=0.2, window=4, sinks=1, saliency=value, prefill=chunk, decode=step)",
                     "obcache(budget=0.3, window=8, saliency=key, gqa=mean)"]),
]


def jaccard(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def run(ck, args):
    for tag, hq, hkv, d, seed in MODELS:
        G = hq // hkv

        def compare(kept_file, specs, loaded, chunk, where, hkv=hkv, G=G):
            _, layers = loaded
            kept = kvref.read_kept(kept_file)
            for idx, spec in enumerate(specs, start=1):   # after `full`, which kvsim always runs first
                kspec, klayers = kept[idx]
                ck.check(kspec is not None and kspec.startswith("obcache("), "%s %s: spec attribute" % (where, spec), kspec)
                pr, scorer = make_policy(spec, G)
                for L, lay in sorted(layers.items()):
                    obs = klayers[L].astype(bool)
                    what = "%s %s layer %d" % (where, spec, L)
                    if pr.gqa == "expand":
                        # One cache per query head; kvsim's kept file holds each KV head's union.
                        masks, _, _ = replay(pr.budget, pr.sinks, pr.window, scorer, expanded(lay, G), N, M, chunk, hkv * G)
                        want = masks.reshape(hkv, G, -1).any(axis=1)
                        j = jaccard(obs, want)
                        ck.check(j >= 0.99, what + ": union of the per-query-head kept sets, Jaccard >= 0.99", "%.4f" % j)
                        print("%s: Jaccard %.4f%s" % (what, j, " (exact)" if (obs == want).all() else ""), flush=True)
                    else:
                        _, problems, ties = replay(pr.budget, pr.sinks, pr.window, scorer, lay, N, M, chunk, hkv, obs, 1e-4)
                        ck.check(not problems, what + ": kept masks == reference", "\n".join(problems[:5]))
                        ck.near_ties(what, ties)

        kvref.run_kept_model(ck, args, tag, hq, hkv, d, N, M, seed, SCENARIOS, compare,
                             synth_args=["--query-window", 16, "--chunk-tokens", 96, "--window", 8], load=read_layers)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
