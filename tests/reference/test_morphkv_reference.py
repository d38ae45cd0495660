#!/usr/bin/python3
"""morphkv (MorphKV, Ghadia et al. 2025) against its authors' code, and kvsim's extensions.

Original: ghadiaravi13/MorphKV, commit 8903d2ac20a3d88851b2501f19106dc758f0308b (the stored snapshot's
HEAD): morphkv/models/patch_llama.py, LlamaAttentionMorph.morphkv_mask and the MorphKV lines of
LlamaAttentionMorph.forward (decode, eager) and LlamaFlashAttention2Morph.forward (prefill: no
eviction, the window's attention logits cached), and morphkv/morph_cache.py, cleanup. Transliterated
line by line in numpy below (morph_type max|sum, evict_after 1 as its LongBench runs "ea1.0").
What they do: nothing is evicted during prefill; at every decode step whose cache (the current token
included) holds >= max_capacity + 1 entries, the window's W cached logit rows (the W queries before
the current token) score every entry but the last W + 1 (softmax over them, GQA: the group's logits
summed first, then max|sum over the rows), the top max_capacity - W stay with the last W + 1; the
eviction already masks the current token's attention.

Part 1 (the original): kvsim's default morphkv(budget=B, window=W) (prefill=none, decode=step) must
keep, in every layer and KV head after the last decode step, exactly the entries the transliteration
keeps with max_capacity = B - 1 (the value cache carries each entry's position). MHA: after 12
decode steps. GQA: after 1 decode step; after more, the original prunes its cached logit rows per
QUERY head (init_mask_attn) but its KV cache per KV head (init_mask_kv), so later steps score rows
whose columns no longer line up with the KV cache; the overlap of the two kept sets is printed
(docs/policy-sources.md "MorphKV").

Part 2 (kvsim's eviction points, incl. its extensions prefill=post_fill|chunk, decode=every:K):
kvsim's kept masks against a float64 numpy replay on synthetic MHA and GQA traces (DESIGN.md §4
capacities, window + 1 protected) with the scoring above."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from ref_leverage_replay import Spec, read_layers, replay, run_reference_test  # noqa: E402


class Params:
    def __init__(self, spec):
        name, args = kvref.parse_spec(spec)
        assert name == "morphkv", spec
        self.window = int(args.pop("window", 32))
        self.agg = args.pop("aggregate", "max")
        args.setdefault("decode", "step")
        args.setdefault("prefill", "none")
        self.budget = Spec(args, self.window + 1)
        assert not args, args


def head_scores(pr, layer, h, resident, G):
    d = layer["keys"].shape[2]
    p = len(resident) - (pr.window + 1)
    K = layer["keys"][h][resident[:p]]
    rows = [layer["qpos"][int(t)] for t in resident[p:-1]]
    logits = sum(layer["queries"][g][rows] @ K.T for g in range(h * G, (h + 1) * G)) / math.sqrt(d)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e.max(axis=0) if pr.agg == "max" else e.sum(axis=0)


def make_policy(spec, G):
    pr = Params(spec)
    return pr, lambda layer, evicting, cap: {h: head_scores(pr, layer, h, r, G) for h, r in evicting.items()}


def kept(spec):
    k = np.array([[2.3, 2.3], [3, -3], [-3, 2.8], [0, 0], [0, 0], [0, 0], [0, 0]])
    q = np.zeros((7, 2))
    q[4], q[5], q[6] = [1, 0], [0, 1], [5, 5]
    layer = dict(keys=k[None], values=k[None], queries=q[None], qpos={t: t for t in range(7)})
    pr, scorer = make_policy(spec, 1)
    masks, problems, _ = replay(pr.budget, 0, pr.window + 1, scorer, layer, 7, 0, None, 1)
    assert not problems
    return np.nonzero(masks[0])[0].tolist()


def self_tests(ck):
    # The hand cases of tests/policies/morphkv_test.cpp (one eviction after a 7-token prompt).
    for spec, want in [("morphkv(budget=4, window=2, prefill=post_fill)", [1, 4, 5, 6]),
                       ("morphkv(budget=4, window=2, aggregate=sum, prefill=post_fill)", [0, 4, 5, 6]),
                       ("morphkv(budget=5, window=2, prefill=post_fill)", [1, 2, 4, 5, 6]),
                       ("morphkv(budget=5, window=2, aggregate=sum, prefill=post_fill)", [0, 1, 4, 5, 6]),
                       ("morphkv(budget=3, window=1, prefill=post_fill)", [2, 5, 6])]:
        ck.eq(kept(spec), want, "hand: " + spec)
    # GQA: the group's logits are summed before the softmax (not the probabilities averaged).
    K = np.array([[1.0, 0], [0, 1.0], [0, 0], [0, 0]])
    Q = np.zeros((2, 4, 2))
    Q[0, 2], Q[1, 2] = [4, 0], [0, 3]
    layer = dict(keys=K[None], queries=Q, qpos={t: t for t in range(4)})
    s = head_scores(Params("morphkv(window=1)"), layer, 0, np.arange(4), 2)
    z = np.array([4, 3]) / math.sqrt(2)
    ck.check(np.allclose(s, np.exp(z) / np.exp(z).sum()), "GQA logits summed before softmax", s.tolist())


# ---- Part 1: the original (ghadiaravi13/MorphKV @8903d2a) ----------------------------------------

def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def topk_indices(x, k):
    """torch.topk(x, dim=-1, k=k).indices (largest; the order within the k does not matter here)."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


def repeat_kv(hidden_states, n_rep):
    """patch_llama.py repeat_kv: (batch, kv_heads, slen, dim) -> (batch, kv_heads * n_rep, slen, dim)."""
    return np.repeat(hidden_states, n_rep, axis=1)


class MorphCache:
    """The parts of morph_cache.py's cache the MorphKV lines use, one layer: key/value/attn caches."""

    def __init__(self):
        self.key_cache, self.value_cache, self.attn_cache = [], [], []

    def update(self, key_states, value_states):
        if len(self.key_cache) == 0:
            self.key_cache, self.value_cache = key_states, value_states
        else:
            self.key_cache = np.concatenate([self.key_cache, key_states], axis=-2)
            self.value_cache = np.concatenate([self.value_cache, value_states], axis=-2)
        return self.key_cache, self.value_cache

    def cleanup(self, init_mask, init_mask_attn):
        """morph_cache.py cleanup (not dummy)."""
        # indices = (init_mask.squeeze(2).reshape(-1)==0).nonzero(as_tuple=True)[0]
        BS, NH, LEN, DIM = self.key_cache.shape
        indices = np.nonzero(init_mask.squeeze(2).reshape(-1) == 0)[0]
        # self.key_cache[layer_idx] = torch.index_select(self.key_cache[layer_idx].view(BS,-1,DIM), dim=1, index=indices).view(BS,NH,-1,DIM)
        self.key_cache = self.key_cache.reshape(BS, -1, DIM)[:, indices].reshape(BS, NH, -1, DIM)
        BS, NH, LEN, DIM = self.value_cache.shape
        self.value_cache = self.value_cache.reshape(BS, -1, DIM)[:, indices].reshape(BS, NH, -1, DIM)
        if len(self.attn_cache) != 0:
            BS, NH, WS, LEN = self.attn_cache.shape
            # init_mask_attn = init_mask_attn.expand(BS,NH,WS,LEN)
            init_mask_attn = np.broadcast_to(init_mask_attn, (BS, NH, WS, LEN))
            # indices_attn = (init_mask_attn.reshape(-1)==0).nonzero(as_tuple=True)[0]
            indices_attn = np.nonzero(init_mask_attn.reshape(-1) == 0)[0]
            # self.attn_cache[layer_idx] = torch.index_select(self.attn_cache[layer_idx].view(-1),dim=0,index=indices_attn).reshape(BS,NH,WS,-1)
            self.attn_cache = self.attn_cache.reshape(-1)[indices_attn].reshape(BS, NH, WS, -1)


def morphkv_mask(scores, past_key_value, key_heads, query_heads, WIN_SIZE, MAX_CAPACITY, morph_type):
    """patch_llama.py LlamaAttentionMorph.morphkv_mask, branches max|sum."""
    reduce = (lambda x: x.max(axis=2, keepdims=True)) if "max" in morph_type else (lambda x: x.sum(axis=2, keepdims=True))
    # if past_key_value.attn_cache[self.layer_idx]!=[]: scores = torch.cat([attn_cache, scores], dim=2)
    if len(past_key_value.attn_cache) != 0:
        scores = np.concatenate([past_key_value.attn_cache, scores], axis=2)
    if key_heads != query_heads:
        # sim_tokens = torch.full_like(scores[:,:key_heads,-2:-1,:], -torch.inf)
        sim_tokens = np.full_like(scores[:, :key_heads, -2:-1, :], -np.inf)
        # init_mask_kv = sim_tokens[:,:,-1:].scatter_(-1, torch.topk(nn.functional.softmax(scores.view(scores.shape[0],
        #     key_heads,-1,scores.shape[2],scores.shape[3]).sum(dim=2)[:, :, -(W+1):-1, :-(W+1)],dim=-1).max(dim=2,
        #     keepdim=True)[0], dim=-1, k=self.MAX_CAPACITY-self.WIN_SIZE).indices, 0.0)
        grouped = scores.reshape(scores.shape[0], key_heads, -1, scores.shape[2], scores.shape[3]).sum(axis=2)
        votes = reduce(softmax(grouped[:, :, -(WIN_SIZE + 1):-1, :-(WIN_SIZE + 1)], axis=-1))
        init_mask_kv = sim_tokens[:, :, -1:]
        np.put_along_axis(init_mask_kv, topk_indices(votes, MAX_CAPACITY - WIN_SIZE), 0.0, axis=-1)
        # init_mask_kv[:, :, -1, -(self.WIN_SIZE+1):] = 0.0
        init_mask_kv[:, :, -1, -(WIN_SIZE + 1):] = 0.0
    # sim_tokens = torch.full_like(scores[:,:,-(1+1):-1,:], -torch.inf)
    sim_tokens = np.full_like(scores[:, :, -(1 + 1):-1, :], -np.inf)
    # init_mask_attn = sim_tokens[:,:,-1:].scatter_(-1,torch.topk(nn.functional.softmax(scores[:, :, -(W+1):-1,
    #     :-(W+1)],dim=-1).max(dim=2, keepdim=True)[0], dim=-1, k=self.MAX_CAPACITY-self.WIN_SIZE).indices,0.0)
    votes = reduce(softmax(scores[:, :, -(WIN_SIZE + 1):-1, :-(WIN_SIZE + 1)], axis=-1))
    init_mask_attn = sim_tokens[:, :, -1:]
    np.put_along_axis(init_mask_attn, topk_indices(votes, MAX_CAPACITY - WIN_SIZE), 0.0, axis=-1)
    # init_mask_attn[:, :, -1, -(self.WIN_SIZE+1):] = 0.0
    init_mask_attn[:, :, -1, -(WIN_SIZE + 1):] = 0.0
    if key_heads != query_heads:
        past_key_value.cleanup(init_mask_kv, init_mask_attn)
    else:
        past_key_value.cleanup(init_mask_attn, init_mask_attn)
    # return (init_mask_attn + scores[:,:,-1:,:]), init_mask_attn
    return init_mask_attn + scores[:, :, -1:, :], init_mask_attn


def original_run(keys, queries, qpos, n, m, WIN_SIZE, MAX_CAPACITY, morph_type, evict_after=1.0):
    """One layer through the prompt (flash forward) and m decode steps (eager forward); values carry
    the positions. -> the kept positions per KV head after the last step."""
    hkv, _, d = keys.shape
    hq = queries.shape[0]
    groups = hq // hkv
    index = {int(p): i for i, p in enumerate(qpos)}
    cache = MorphCache()
    pos = np.arange(n + m, dtype=np.float64)[None, None, :, None] * np.ones((1, hkv, 1, 1))

    def q_rows(positions):
        return np.stack([[queries[g][index[t]] for t in positions] for g in range(hq)])[None].astype(np.float64)

    # Prefill (LlamaFlashAttention2Morph.forward, q_len = n > 1): cache.update, no eviction
    # (`if hidden_states.shape[1]==1` fails), then the attention cache:
    key_states, _ = cache.update(keys[None, :, :n].astype(np.float64), pos[:, :, :n])
    key_states = repeat_kv(key_states, groups)
    # attn_weights = torch.matmul(query_states[:,:,-self.WIN_SIZE:,:], key_states.transpose(2, 3)) / math.sqrt(self.head_dim)
    attn_weights = q_rows(range(n - WIN_SIZE, n)) @ key_states.transpose(0, 1, 3, 2) / math.sqrt(d)
    bs, n_heads, _, cache_len = attn_weights.shape
    assert cache_len >= WIN_SIZE
    # past_key_value.attn_cache = torch.cat([attn_weights[:,:,-W:,:], torch.full((bs,n_heads,W,1),-torch.inf)],dim=-1)
    cache.attn_cache = np.concatenate([attn_weights[:, :, -WIN_SIZE:, :], np.full((bs, n_heads, WIN_SIZE, 1), -np.inf)],
                                      axis=-1)
    evict_after_now = evict_after
    # Decode (LlamaAttentionMorph.forward, q_len = 1).
    for p in range(n, n + m):
        key_states, _ = cache.update(keys[None, :, p:p + 1].astype(np.float64), pos[:, :, p:p + 1])
        key_states = repeat_kv(key_states, groups)
        attn_weights = q_rows([p]) @ key_states.transpose(0, 1, 3, 2) / math.sqrt(d)
        evicting = key_states.shape[2] >= (1 + MAX_CAPACITY) * evict_after_now
        if evicting:
            attn_weights, init_mask = morphkv_mask(attn_weights, cache, hkv, hq, WIN_SIZE, MAX_CAPACITY, morph_type)
        # the attention cache: roll out the oldest window row, append the current one
        if evicting:
            bs, n_heads, win_size, seq_len = cache.attn_cache.shape
            evict_after_now = evict_after
            cache.attn_cache = np.roll(cache.attn_cache, shift=-1, axis=2)
            # attn_cache[:, :, -1:] = attn_weights.transpose(3,2)[init_mask.squeeze(2)==0].view(bs, n_heads, -1, 1).transpose(3,2)
            row = attn_weights.transpose(0, 1, 3, 2)[init_mask.squeeze(2) == 0].reshape(bs, n_heads, -1, 1)
            cache.attn_cache[:, :, -1:] = row.transpose(0, 1, 3, 2)
        else:
            assert key_states.shape[2] > WIN_SIZE
            cache.attn_cache = np.roll(cache.attn_cache, shift=-1, axis=2)
            cache.attn_cache[:, :, -1:] = attn_weights
            bs, n_heads, win_size, seq_len = cache.attn_cache.shape
        cache.attn_cache = np.concatenate([cache.attn_cache, np.full((bs, n_heads, win_size, 1), -np.inf)], axis=-1)
    return [sorted(int(x) for x in cache.value_cache[0, h, :, 0]) for h in range(hkv)]


ORIGINAL_MODELS = [("orig-mha", 4, 4, 16, 71, 12), ("orig-gqa4", 8, 2, 16, 72, 1), ("orig-gqa4-long", 8, 2, 16, 73, 12)]
N1 = 320
ORIGINAL_SPECS = [("morphkv(budget=60, window=8)", 8, 59, "max"), ("morphkv(budget=40, window=4, aggregate=sum)", 4, 39, "sum"),
                  ("morphkv(budget=100, window=16)", 16, 99, "max"), ("morphkv(budget=0.2, window=8)", 8, 64 + 8, "max")]


def run_original(ck, args):
    assert kvref.round_half_even(0.2 * N1) + 8 + 1 - 1 == 72  # budget=0.2: max_capacity = round(0.2 n) + W
    for tag, hq, hkv, d, seed, m in ORIGINAL_MODELS:
        made = kvref.synth_trace(ck, args, tag, hq, hkv, d, N1, m, seed, extra=["--query-window", 17])
        if made is None:
            continue
        wd, model_ini, trace = made
        _, layers = read_layers(trace)
        exact = hq == hkv or m == 1

        def compare(kept_file, specs_, chunk, where):
            kept = kvref.read_kept_checked(ck, kept_file, specs_, where)
            if kept is None:
                return
            for idx, (spec, w, cap, mtype) in enumerate(ORIGINAL_SPECS, start=1):
                kspec, klayers = kept[idx]
                ck.check(kspec is not None and kspec.startswith("morphkv(") and "prefill=none, decode=step" in kspec,
                         "%s %s: spec attribute" % (where, spec), kspec)
                same = total = 0
                for L, lay in sorted(layers.items()):
                    qpos = sorted(lay["qpos"], key=lambda t: lay["qpos"][t])
                    want = original_run(lay["keys"], lay["queries"], qpos, N1, m, w, cap, mtype)
                    for h in range(hkv):
                        got = np.nonzero(klayers[L][h])[0].tolist()
                        if exact:
                            ck.eq(got, want[h], "%s %s layer %d head %d: kept == MorphKV (max_capacity %d)"
                                  % (where, spec, L, h, cap))
                        else:
                            ck.eq(len(got), len(want[h]), "%s %s layer %d head %d: kept count" % (where, spec, L, h))
                        same += len(set(got) & set(want[h]))
                        total += len(want[h])
                print("%s %s: %d of %d kept entries shared with the original after %d decode steps" % (
                    where, spec, same, total, m), flush=True)

        kvref.run_scenarios(ck, args, tag, wd, model_ini, [("original", None, [s for s, _, _, _ in ORIGINAL_SPECS])],
                            compare)


MODELS = [("mha", 2, 2, 16, 61), ("gqa4", 8, 2, 16, 62)]
N, M = 320, 12
SCENARIOS = [
    ("unchunked", None, ["morphkv(budget=0.2, window=8)", "morphkv(budget=0.3, window=4, aggregate=sum, decode=every:3)",
                         "morphkv(budget=60, window=6, prefill=post_fill, decode=none)",
                         "morphkv(budget=0.2, window=8, prefill=post_fill)"]),
    ("chunk96", 96, ["morphkv(budget=0.25, window=8, prefill=chunk, decode=none)",
                     "morphkv(budget=0.2, window=3, prefill=chunk)", "morphkv(budget=0.3, window=8, aggregate=sum)"]),
]


def reference_policy(spec, model, chunk):
    pr, scorer = make_policy(spec, model.group)
    return pr.budget, 0, pr.window + 1, scorer, 1e-4


def run(ck, args):
    run_original(ck, args)
    run_reference_test(ck, args, "morphkv", MODELS, SCENARIOS, reference_policy, N, M, synth_args=["--query-window", 16, "--chunk-tokens", 96, "--window", 9],
                       with_model=True)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
