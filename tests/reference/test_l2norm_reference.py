#!/usr/bin/env python3
"""l2norm (Knorm; Devoto et al. 2024, arXiv 2406.11430) against its authors' code.

Original: alessiodevoto/l2compress, cache.py, function l2_compress, commit
f93d6ca2702d85a2db97d2ef350b44d955609761 (the stored snapshot's HEAD; cache.py last changed in
6d84d6e01e807568c053c0a51540b76a1ce37e0f). l2_compress below transliterates it line by line in
numpy (torch.norm -> np.linalg.norm, argsort, torch.gather -> take_along_axis); the authors call it
once on the prompt's cache with skip_layers=[0, 1] (README "Quickstart", eval_lm_quick.py
--skip_layers default "0,1"), which is kvsim's default skip_layers=2. The kvpress port
(NVIDIA/kvpress kvpress/presses/knorm_press.py KnormPress.score = -keys.norm(dim=-1)) compresses
every layer: skip_layers=0.

Part 1 (the original): a 4-layer synthetic MHA and GQA trace, every layer traced; `kvsim run
--save-kept` of l2norm post-fill must keep, in every layer and KV head, exactly the prompt positions
l2_compress keeps (the values tensor carries each entry's position, so the gathered values name the
kept ones), plus every decode position (the original compresses once, after the prompt). The
budget is chosen so that kvsim's round-half-even(b n) equals the original's ceil(keep_ratio n).

Part 2 (kvsim's extensions, not in the original: protected sinks/window, chunked and decode-time
eviction) on a 2-layer trace with skip_layers=0: kvsim's kept masks against a float64 numpy replay
(ref_leverage_replay.py: DESIGN.md §4 capacities, score -||k_t||_2 per KV head).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, read_layers, replay, run_reference_test  # noqa: E402


def l2_compress(past_key_values, keep_ratio=1, prune_after=2048, skip_layers=[]):  # noqa: B006 (as the original)
    """alessiodevoto/l2compress cache.py l2_compress, in numpy. past_key_values: [(keys, values)] per
    layer, each (batch_size, num_heads, seq_len, head_dim)."""
    # past_key_values = list(past_key_values)
    past_key_values = list(past_key_values)
    # for layer, kv in enumerate(past_key_values):
    for layer, kv in enumerate(past_key_values):
        # if kv[0].size(2) < prune_after: continue
        if kv[0].shape[2] < prune_after:
            continue
        # keys, values = kv
        keys, values = kv
        # token_dim = keys.shape[-1]
        token_dim = keys.shape[-1]
        # tokens_to_keep = ceil(keep_ratio * keys.size(2))
        tokens_to_keep = math.ceil(keep_ratio * keys.shape[2])
        # token_norms = torch.norm(keys, p=2, dim=-1)
        token_norms = np.linalg.norm(keys, ord=2, axis=-1)
        # sorted_indices = token_norms.squeeze(-1).argsort(dim=-1)
        sorted_indices = token_norms.argsort(axis=-1, kind="stable")
        # sorted_indices_expanded = sorted_indices.unsqueeze(-1).expand(-1, -1, -1, token_dim)
        sorted_indices_expanded = np.broadcast_to(sorted_indices[..., None], sorted_indices.shape + (token_dim,))
        # sorted_keys = torch.gather(keys, dim=2, index=sorted_indices_expanded)
        sorted_keys = np.take_along_axis(keys, sorted_indices_expanded, axis=2)
        # sorted_values = torch.gather(values, dim=2, index=sorted_indices_expanded)
        sorted_values = np.take_along_axis(values, sorted_indices_expanded, axis=2)
        # if layer not in skip_layers:
        if layer not in skip_layers:
            # past_key_values[layer] = (sorted_keys[:, :, :tokens_to_keep, :], sorted_values[:, :, :tokens_to_keep, :])
            past_key_values[layer] = (sorted_keys[:, :, :tokens_to_keep, :], sorted_values[:, :, :tokens_to_keep, :])
    return past_key_values


def original_kept(layer_keys, n, keep_ratio, skip_layers):
    """{layer: [sorted kept prompt positions] per KV head} after one l2_compress of the prompt's cache.
    The values carry the positions: value[t] = t in every channel."""
    cache = []
    for keys in layer_keys:  # [Hkv, T, d]
        hkv, _, d = keys.shape
        k = keys[None, :, :n, :].astype(np.float64)
        v = np.broadcast_to(np.arange(n, dtype=np.float64)[None, None, :, None], (1, hkv, n, d))
        cache.append((k, v))
    out = []
    for _, values in l2_compress(cache, keep_ratio=keep_ratio, prune_after=0, skip_layers=skip_layers):
        out.append([sorted(int(p) for p in values[0, h, :, 0]) for h in range(values.shape[1])])
    return out


def self_tests(ck):
    # Norms [5, 1, 2, .5, 3, 1.5] (tests/policies/l2norm_test.cpp); head 1 reversed.
    k0 = np.array([[3, 4], [1, 0], [0, 2], [0, 0.5], [3, 0], [0, 1.5]])
    keys = np.stack([k0, k0[::-1]])
    kept = original_kept([keys, keys, keys], 6, 0.5, skip_layers=[0, 1])
    ck.eq(kept[2], [[1, 3, 5], [0, 2, 4]], "hand: lowest three norms per head")
    ck.eq(kept[0], [list(range(6))] * 2, "hand: layer 0 skipped")
    ck.eq(kept[1], [list(range(6))] * 2, "hand: layer 1 skipped")
    ck.eq(original_kept([keys], 6, 0.5, skip_layers=[])[0], [[1, 3, 5], [0, 2, 4]], "hand: no layer skipped")
    # ceil: keep_ratio 0.4 of 6 = 2.4 -> 3 kept (kvsim's round-half-even would keep 2).
    ck.eq(original_kept([keys], 6, 0.4, skip_layers=[])[0][0], [1, 3, 5], "hand: ceil(2.4) = 3")
    # prune_after: a cache shorter than it is left alone.
    short = l2_compress([(keys[None], keys[None])], keep_ratio=0.5, prune_after=7)
    ck.eq(short[0][0].shape[2], 6, "hand: shorter than prune_after, untouched")
    # Part 2's replay: policy-notes.md example, norms [3,1,2,5], r=0.5 -> keep t1, t2.
    ck.eq(kept_ext("l2norm(budget=0.5, skip_layers=0)", hand_layer([[[3, 0], [0, 1], [2, 0], [0, 5]]]), 4), [[1, 2]],
          "hand: notes example")
    lay = hand_layer([k0.tolist(), k0[::-1].tolist()])
    ck.eq(kept_ext("l2norm(budget=3, sinks=1, window=1, skip_layers=0)", lay, 6), [[0, 3, 5], [0, 2, 5]],
          "hand: sinks + window")
    # Chunks [0,3),[3,6), budget 0.34 -> caps 1 then 2: chunk 0 keeps t1; chunk 1 keeps t3 (.5), t1 (1).
    ck.eq(kept_ext("l2norm(budget=0.34, prefill=chunk, skip_layers=0)", hand_layer([k0.tolist()]), 6, chunk=3),
          [[1, 3]], "hand: chunked")
    # Decode steps, window 1, n=4, m=2, B=2: post-fill keeps t3 + t1; step 4 keeps t4 + t3; step 5 t5 + t3.
    ck.eq(kept_ext("l2norm(budget=2, window=1, decode=step, skip_layers=0)", hand_layer([k0.tolist()]), 4, m=2),
          [[3, 5]], "hand: decode steps")


# ---- Part 1: the original -------------------------------------------------------------------

ORIGINAL_MODELS = [("orig-mha", 4, 4, 16, 31), ("orig-gqa4", 8, 2, 16, 32)]
ORIGINAL_LAYERS = 4
N1, M1 = 400, 6
# (kvsim spec, keep_ratio, skip_layers of l2_compress); ceil(r 400) == round_half_even(r 400) for these r.
ORIGINAL_CASES = [("l2norm(budget=0.2)", 0.2, [0, 1]),
                  ("l2norm(budget=0.25, skip_layers=1)", 0.25, [0]),
                  ("l2norm(budget=0.1, skip_layers=0)", 0.1, []),
                  ("l2norm(budget=0.5, skip_layers=3)", 0.5, [0, 1, 2])]


def run_original(ck, args):
    specs = [s for s, _, _ in ORIGINAL_CASES]
    for r in (0.2, 0.25, 0.1, 0.5):
        assert math.ceil(r * N1) == kvref.round_half_even(r * N1)
    for tag, hq, hkv, d, seed in ORIGINAL_MODELS:
        made = kvref.synth_trace(ck, args, tag, hq, hkv, d, N1, M1, seed, layers=tuple(range(ORIGINAL_LAYERS)),
                                 num_layers=ORIGINAL_LAYERS)
        if made is None:
            continue
        wd, model_ini, trace = made
        _, layers = read_layers(trace)
        layer_keys = [layers[L]["keys"] for L in range(ORIGINAL_LAYERS)]

        def compare(kept_file, specs_, chunk, where):
            kept = kvref.read_kept_checked(ck, kept_file, specs_, where)
            if kept is None:
                return
            for idx, (spec, ratio, skip) in enumerate(ORIGINAL_CASES, start=1):
                kspec, klayers = kept[idx]
                ck.check(kspec is not None and kspec.startswith("l2norm("), "%s %s: spec attribute" % (where, spec), kspec)
                want = original_kept(layer_keys, N1, ratio, skip)
                for L in range(ORIGINAL_LAYERS):
                    for h in range(hkv):
                        got = np.nonzero(klayers[L][h])[0].tolist()
                        ck.eq(got, want[L][h] + list(range(N1, N1 + M1)),
                              "%s %s layer %d head %d: kept == l2_compress(keep_ratio=%g, skip_layers=%s)"
                              % (where, spec, L, h, ratio, skip))

        kvref.run_scenarios(ck, args, tag, wd, model_ini, [("original", None, specs)], compare)


# ---- Part 2: kvsim's extensions (skip_layers=0) ------------------------------------------------

def make_policy(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "l2norm"
    sinks, window = int(args.pop("sinks", 0)), int(args.pop("window", 0))
    assert int(args.pop("skip_layers")) == 0, "part 2 replays every layer"
    pol = Spec(args, sinks + window)
    assert not args, args

    def scorer(layer, evicting, cap):
        out = {}
        for h, r in evicting.items():
            s = min(sinks, len(r))
            rr = min(window, len(r) - s)
            out[h] = -np.linalg.norm(layer["keys"][h][r[s:len(r) - rr]], axis=1)
        return out

    return pol, sinks, window, scorer, 1e-5


def hand_layer(rows_per_head):
    keys = np.array(rows_per_head, dtype=np.float64)
    return dict(keys=keys, values=keys, queries=None, qpos={})


def kept_ext(spec, layer, n, m=0, chunk=None):
    pol, sinks, recent, scorer, _ = make_policy(spec)
    masks, problems, _ = replay(pol, sinks, recent, scorer, layer, n, m, chunk, layer["keys"].shape[0])
    assert not problems
    return [np.nonzero(mk)[0].tolist() for mk in masks]


MODELS = [("mha", 2, 2, 16, 21), ("gqa4", 8, 2, 16, 22)]
N, M = 400, 6
SCENARIOS = [
    ("unchunked", None, ["l2norm(budget=0.2, skip_layers=0)", "l2norm(budget=0.3, sinks=4, window=8, skip_layers=0)",
                         "l2norm(budget=100, skip_layers=0)", "l2norm(budget=0.25, window=4, decode=step, skip_layers=0)",
                         "l2norm(budget=0.1, decode=every:3, skip_layers=0)"]),
    ("chunk96", 96, ["l2norm(budget=0.25, prefill=chunk, skip_layers=0)",
                     "l2norm(budget=0.2, sinks=2, window=16, prefill=chunk, skip_layers=0)",
                     "l2norm(budget=120, window=8, prefill=chunk, decode=step, skip_layers=0)",
                     "l2norm(budget=0.3, skip_layers=0)"]),
]


def run(ck, args):
    run_original(ck, args)
    run_reference_test(ck, args, "l2norm", MODELS, SCENARIOS, make_policy, N, M)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
