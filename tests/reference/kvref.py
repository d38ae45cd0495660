"""Independent numpy references for kvsim (shared by tests/reference/test_*.py).

Everything here is written from the definitions in shared/DESIGN.md (§2 metrics, §3 trace format,
§4 policies, §7 outputs) and shared/reference/policy-notes.md ("Footprint metric", "SnapKV"),
never from kvsim's C++ sources. Only numpy and h5py are used; run with /usr/bin/python3.

Contents
  - footprint closed forms: a port of qqtang-code/PruLong eval/viz/kv_footprint.py
    (causal_mask_active, streaming_mask_stats, global_mask_stats, get_kv_footprint), with exact
    integer arithmetic for the entry counts;
  - a pass-by-pass count simulator (footprint F and peak per (layer, KV head)) for full,
    streaming and snapkv, written from DESIGN.md §2/§4 independently of the closed forms;
  - a float64 SnapKV reference (scores, pooling, selection, post_fill and chunk eviction) and a
    comparison of kvsim's kept masks against it that tolerates only near-ties at the boundary;
  - helpers to write INI files, run kvsim, and read summary.json / trace / kept files;
  - the driver the policy scripts share: synthesise a tiny model's trace, run scenarios with
    --save-kept, and walk a kept file's policies, layers and masks;
  - a tiny check reporter that prints "N passed, M failed".
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover - reported clearly by the scripts
    h5py = None


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

class Checker:
    """Counts checks; prints every failure (and notes) with a clear message."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.notes = []
        self.t0 = time.time()

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            msg = "FAIL: " + what
            if detail:
                msg += "\n      " + str(detail).replace("\n", "\n      ")
            print(msg, flush=True)
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "got %r, want %r" % (got, want))

    def close(self, got, want, what, rel=1e-12, abs_=0.0):
        try:
            ok = abs(float(got) - float(want)) <= max(rel * abs(float(want)), abs_)
        except (TypeError, ValueError):
            ok = False
        return self.check(ok, what, "got %r, want %r (rel tol %g)" % (got, want, rel))

    def note(self, text):
        self.notes.append(text)
        print("NOTE: " + text, flush=True)

    def near_ties(self, what, ties):
        """Notes each near-tie a comparison accepted for `what`."""
        for t in ties:
            self.note("%s: accepted near-tie: %s" % (what, t))

    def finish(self):
        dt = time.time() - self.t0
        print("%s: %d passed, %d failed (%.1f s)" % (self.name, self.passed, self.failed, dt))
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(0 if self.failed == 0 and self.passed > 0 else 1)


def common_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kvsim", help="path to the kvsim binary")
    p.add_argument("--workdir", help="scratch directory (created if missing)")
    p.add_argument("--self-test", action="store_true",
                   help="only check the Python reference implementations (no kvsim needed)")
    args = p.parse_args()
    if not args.self_test:
        if not args.kvsim or not args.workdir:
            p.error("--kvsim and --workdir are required unless --self-test is given")
        if not os.path.isfile(args.kvsim) or not os.access(args.kvsim, os.X_OK):
            p.error("--kvsim %s is not an executable file" % args.kvsim)
        args.kvsim = os.path.abspath(args.kvsim)
        args.workdir = os.path.abspath(args.workdir)
        os.makedirs(args.workdir, exist_ok=True)
    if h5py is None:
        p.error("h5py is not importable by %s (use /usr/bin/python3)" % sys.executable)
    return args


def main(doc, script, self_tests, run):
    """A reference script's main: parses the common arguments, runs self_tests(ck) (alone with
    --self-test), then run(ck, args); prints "N passed, M failed" and exits."""
    args = common_args(doc)
    ck = Checker(os.path.basename(script))
    self_tests(ck)
    if args.self_test:
        ck.finish()
    run(ck, args)
    ck.finish()


# ---------------------------------------------------------------------------------------------
# Rounding and pass plan
# ---------------------------------------------------------------------------------------------

def round_half_even(x):
    """Round half to even (Python's round() on a float; numpy's rint)."""
    r = round(float(x))
    assert r == int(np.rint(float(x)))
    return int(r)


def A(k):
    """Footprint of full causal attention over k tokens: k(k+1)/2 (exact integer)."""
    return k * (k + 1) // 2


def prefill_chunks(n, chunk):
    """[(a, b)] prefill chunks of `chunk` tokens (last may be shorter); chunk >= n: one chunk."""
    chunk = n if chunk is None else chunk
    assert n >= 1 and chunk >= 1
    bounds = list(range(0, n, chunk)) + [n]
    return list(zip(bounds[:-1], bounds[1:]))


def passes(n, m, chunk):
    """All forward passes: prefill chunks then one per generated token: [(a, b, is_prefill)]."""
    out = [(a, b, True) for a, b in prefill_chunks(n, chunk)]
    out += [(t, t + 1, False) for t in range(n, n + m)]
    return out


# ---------------------------------------------------------------------------------------------
# Footprint closed forms: port of qqtang-code/PruLong:eval/viz/kv_footprint.py (commit ff22598e)
# Differences from the original: entry counts are exact Python integers (the original divides by
# 2 in floating point; identical below 2**53), and global_mask_stats's kv_window is a parameter
# (the original get_kv_footprint always uses its default 64; so does ours unless told otherwise).
# ---------------------------------------------------------------------------------------------

def causal_mask_active(total_len):
    return A(total_len)


def streaming_mask_stats(input_len, output_len, prefill_chunk_size, sink_token_size, local_window_size):
    active_entries = 0
    prefill_boundaries = list(range(0, input_len, prefill_chunk_size)) + [input_len]
    peak_points = []
    local_tokens = sink_tokens = 0
    for a, b in zip(prefill_boundaries[:-1], prefill_boundaries[1:]):
        local_tokens = a - max(0, a - local_window_size)
        sink_tokens = a - local_tokens - max(0, a - local_tokens - sink_token_size)
        active_entries += causal_mask_active(b - a) + (b - a) * (local_tokens + sink_tokens)
        peak_points.append(b - a + local_tokens + sink_tokens)
    for a in range(input_len, input_len + output_len):
        local_tokens = a - max(0, a - local_window_size)
        sink_tokens = a - local_tokens - max(0, a - local_tokens - sink_token_size)
        active_entries += (1 + local_tokens + sink_tokens)
    # As in the original: with output_len == 0 this appends 1 + (last chunk's cached tokens), a
    # value never above that chunk's own peak point, so the maximum is unaffected.
    peak_points.append(1 + local_tokens + sink_tokens)
    return active_entries, np.array(peak_points, dtype=np.int64)


def global_mask_stats(input_len, output_len, prefill_chunk_size, kv_sparsity, kv_window=64):
    active_entries = 0
    prefill_boundaries = list(range(0, input_len, prefill_chunk_size)) + [input_len]
    peak_points = []
    past_kvs = 0
    for a, b in zip(prefill_boundaries[:-1], prefill_boundaries[1:]):
        active_entries += causal_mask_active(b - a) + past_kvs * (b - a)
        peak_points.append(past_kvs + (b - a))
        past_kvs += min(round_half_even((1 - kv_sparsity) * (b - a)) + kv_window, b - a)
    active_entries += causal_mask_active(output_len) + past_kvs * output_len
    peak_points.append(past_kvs + output_len)
    return active_entries, np.array(peak_points, dtype=np.int64)


def get_kv_footprint(prompt_len, response_len, prefill_chunk_size, sink_tokens, local_window_size,
                     kv_sparsity, head_sparsity, kv_window=64):
    """(normalized footprint, normalized peak) of a head mix, as the original (floats)."""
    s_e, s_p = streaming_mask_stats(prompt_len, response_len, prefill_chunk_size, sink_tokens, local_window_size)
    g_e, g_p = global_mask_stats(prompt_len, response_len, prefill_chunk_size, kv_sparsity, kv_window)
    full_e = causal_mask_active(prompt_len + response_len)
    full_peak = prompt_len + response_len
    fp = (s_e / full_e) * head_sparsity + (g_e / full_e) * (1 - head_sparsity)
    peak = (head_sparsity * s_p + (1 - head_sparsity) * g_p).max() / full_peak
    return float(fp), float(peak)


# ---------------------------------------------------------------------------------------------
# Policy specs
# ---------------------------------------------------------------------------------------------

SNAPKV_DEFAULTS = dict(window=32, kernel=7, pooling="max", prefill="post_fill", decode="none", gqa="mean")


def parse_spec(text):
    """'name(k=v, k=v)' -> (name, {k: v-string})."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*", text)
    if not m:
        raise ValueError("bad policy spec %r" % text)
    args = {}
    if m.group(2) and m.group(2).strip():
        for part in m.group(2).split(","):
            k, v = part.split("=")
            args[k.strip()] = v.strip()
    return m.group(1), args


class Policy:
    """A policy as this reference understands it (only full, streaming, snapkv)."""

    def __init__(self, spec):
        self.spec = spec
        self.name, args = parse_spec(spec)
        if self.name == "full":
            assert not args
        elif self.name == "streaming":
            self.sinks = int(args.pop("sinks"))
            self.window = int(args.pop("window"))
            assert args.pop("prefill", "chunk") == "chunk" and args.pop("decode", "step") == "step"
            assert not args, "reference does not model streaming args %r" % args
        elif self.name == "snapkv":
            b = args.pop("budget")
            if re.fullmatch(r"\d+", b):
                self.budget_int = int(b)
                self.budget_frac = None
                assert self.budget_int >= 1
            else:
                self.budget_frac = float(b)
                self.budget_int = None
                if not (0.0 < self.budget_frac < 1.0):
                    raise ValueError("ambiguous budget %r (fractional must be in (0,1), integer >= 1)" % b)
            self.window = int(args.pop("window", SNAPKV_DEFAULTS["window"]))
            self.kernel = int(args.pop("kernel", SNAPKV_DEFAULTS["kernel"]))
            self.pooling = args.pop("pooling", SNAPKV_DEFAULTS["pooling"])
            self.prefill = args.pop("prefill", SNAPKV_DEFAULTS["prefill"])
            self.gqa = args.pop("gqa", SNAPKV_DEFAULTS["gqa"])
            assert self.gqa in ("mean", "max", "expand")
            assert args.pop("decode", "none") == "none"
            assert self.pooling in ("max", "avg") and self.prefill in ("post_fill", "chunk")
            assert not args, "reference does not model snapkv args %r" % args
        else:
            raise ValueError("reference has no model of policy %r" % self.name)

    # -- snapkv capacity (entries kept per (layer, KV head) at an eviction point) --
    def snapkv_capacity(self, n, chunks, j, cache_size):
        """Capacity after prefill pass j (chunks = [(a,b)]) for a cache of `cache_size` entries."""
        w = self.window
        if self.budget_int is not None:
            return min(self.budget_int, cache_size)
        b = self.budget_frac
        if self.prefill == "post_fill":
            return min(round_half_even(b * n) + w, n)
        return sum(min(round_half_even(b * (bb - aa)) + w, bb - aa) for aa, bb in chunks[: j + 1])

    def snapkv_window(self, a, b):
        """Window size at the eviction after pass [a, b): the chunk's own last `window` tokens in chunk
        mode; after the whole prompt (post_fill) the last `window` prompt tokens, whatever the chunking."""
        return min(self.window, b - a) if self.prefill == "chunk" else min(self.window, b)

    def snapkv_evicts_after(self, n, chunks, j):
        """Whether prefill pass j is an eviction point (before the size test)."""
        if self.prefill == "chunk":
            return True
        return chunks[j][1] == n


class EvictionBudget:
    """A spec's budget and eviction points (DESIGN.md §4), popped from its args: budget = a fraction b
    in (0, 1) of the prompt plus `protected` entries w per chunk (or after the prompt), or a token
    count; prefill=none|post_fill|chunk; decode=none|step|every:K|length:K (default `decode`)."""

    def __init__(self, args, protected=0, decode="none"):
        b = args.pop("budget", "0.2")
        if re.fullmatch(r"\d+", b):
            self.budget_int, self.budget_frac = int(b), None
        else:
            self.budget_int, self.budget_frac = None, float(b)
            assert 0.0 < self.budget_frac < 1.0
        self.prefill = args.pop("prefill", "post_fill")
        dec = args.pop("decode", decode)
        self.decode_every = 0 if dec == "none" else 1 if dec == "step" else int(dec.split(":")[1])
        # length:K is R-KV's step_length rule (Zefan-Cai/R-KV rkv/modeling.py, the causal LM forward:
        # `is_newline = self.length % self.config.divide_length == 0` after a forward sets
        # `compression` for every layer's NEXT forward, which appends its token, then compresses).
        self.by_length = dec.startswith("length:")
        self.w = protected

    def evicts_after(self, is_prefill, index, num_chunks, prompt_tokens=None):
        """index: the prefill chunk's, or the decode step's (0: the first generated token);
        prompt_tokens: needed for decode=length:K."""
        if is_prefill:
            return self.prefill == "chunk" or (self.prefill == "post_fill" and index == num_chunks - 1)
        if self.by_length:
            length_before_step = prompt_tokens + index   # self.length after the previous forward
            return length_before_step % self.decode_every == 0
        return self.decode_every > 0 and (index + 1) % self.decode_every == 0

    def capacity(self, n, chunks, index, is_prefill):
        """Entries per head after the pass (index as evicts_after); fixed in decode."""
        if self.budget_int is not None:
            return self.budget_int
        cap = lambda c: min(round_half_even(self.budget_frac * c) + self.w, c)
        if self.prefill == "chunk":
            last = index if is_prefill else len(chunks) - 1
            return sum(cap(bb - aa) for aa, bb in chunks[: last + 1])
        return cap(n)

    def capacity_after(self, n, chunks, j, a, is_prefill):
        """The capacity after pass j = [a, b) of passes(n, m, chunk) (chunks = its prefill chunks),
        or None where that pass is not an eviction point."""
        index = j if is_prefill else a - n   # the prefill chunk's, or the decode step's
        if not self.evicts_after(is_prefill, index, len(chunks), n):
            return None
        return self.capacity(n, chunks, index, is_prefill)


def simulate_counts(policy, n, m, chunk):
    """Pass-by-pass simulation of resident counts for one (layer, KV head).

    Returns (F, peak): F = sum_t V(t), V(t) = resident before the pass + (t - a + 1);
    peak = max over passes of (resident before the pass + pass length). Eviction after a pass
    takes effect for the next pass (DESIGN.md §2)."""
    chunks = prefill_chunks(n, chunk)
    r = 0
    F = 0
    peak = 0
    for j, (a, b, is_prefill) in enumerate(passes(n, m, chunk)):
        L = b - a
        F += sum(r + (t - a + 1) for t in range(a, b)) if L < 64 else L * r + A(L)
        peak = max(peak, r + L)
        cache = r + L
        if policy.name == "full":
            r = cache
        elif policy.name == "streaming":
            # positions < S plus the W most recent of the b processed so far
            sink = min(policy.sinks, b)
            recent_lo = max(0, b - policy.window)
            recent = b - recent_lo
            overlap = max(0, sink - recent_lo)
            r = sink + recent - overlap
        elif policy.name == "snapkv":
            if is_prefill and policy.snapkv_evicts_after(n, chunks, j):
                r = min(cache, policy.snapkv_capacity(n, chunks, j, cache))
            else:
                r = cache
        else:
            raise ValueError(policy.name)
    return F, peak


def closed_form_counts(policy, n, m, chunk):
    """(F, peak) per head from the paper's closed forms, where one applies; else None."""
    c = n if chunk is None else chunk
    if policy.name == "full":
        return A(n + m), n + m
    if policy.name == "streaming":
        e, p = streaming_mask_stats(n, m, c, policy.sinks, policy.window)
        return e, int(p.max())
    if policy.name == "snapkv" and policy.budget_frac is not None:
        s = 1 - policy.budget_frac
        # post_fill: one eviction after the prompt; prefill passes without eviction sum to A(n)
        # whatever the chunking, so the unchunked closed form applies.
        cc = c if policy.prefill == "chunk" else n
        if not kv_sparsity_rounds_like_budget(policy.budget_frac, [bb - aa for aa, bb in prefill_chunks(n, cc)]):
            return None
        e, p = global_mask_stats(n, m, cc, s, policy.window)
        return e, int(p.max())
    return None


def kv_sparsity_rounds_like_budget(b, chunk_lengths):
    """The closed form takes s = 1 - b and rounds (1 - s)*c; kvsim rounds b*c. In floating point
    1 - (1 - b) may differ from b (b = 0.1 gives 0.09999999999999998), which flips an exact half:
    b = 0.1, c = 235: round(23.5) = 24 but round(23.499999999999996) = 23. Where that happens the
    closed form does not describe the policy kvsim defines; callers fall back to the simulation."""
    b2 = 1 - (1 - b)
    return all(round_half_even(b * c) == round_half_even(b2 * c) for c in chunk_lengths)


# ---------------------------------------------------------------------------------------------
# SnapKV reference (float64)
# ---------------------------------------------------------------------------------------------

def pool1d(s, kernel, mode, dtype=np.float64):
    """Pool along the cache order: kernel k (odd), padding k//2, stride 1.
    avg: zero-padded sum / k (count_include_pad); max: max over in-range neighbours."""
    s = np.asarray(s, dtype=dtype)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError("reference only defines odd kernels (got %d)" % kernel)
    r = kernel // 2
    L = len(s)
    if mode == "avg":
        padded = np.concatenate([np.zeros(r, dtype), s, np.zeros(r, dtype)])
        out = np.zeros(L, dtype)
        for u in range(kernel):
            out += padded[u:u + L]
        return out / dtype(kernel)
    if mode == "max":
        padded = np.concatenate([np.full(r, -np.inf, dtype), s, np.full(r, -np.inf, dtype)])
        out = np.full(L, -np.inf, dtype)
        for u in range(kernel):
            out = np.maximum(out, padded[u:u + L])
        return out
    raise ValueError(mode)


def top_k_positions(scores, positions, k):
    """The k entries with the highest score; ties: lower position first. Returns positions."""
    order = np.lexsort((np.asarray(positions), -np.asarray(scores)))
    return [int(positions[i]) for i in order[:k]]


def snapkv_scores(keys_h, queries_group, qpos_index, cache, window_pos, nonwin_count, d, dtype=np.float64,
                  gqa="mean"):
    """Pooled-before scores s[j] for the first `nonwin_count` cache entries.

    keys_h [T, d] float64; queries_group [G, Tq, d]; qpos_index: position -> row in queries;
    cache: sorted positions (array); window_pos: the window query positions. gqa: how the group's
    window-summed attention is reduced before pooling, "mean" (kvpress) or "max" (KVCache-Factory
    pyramidkv_utils.py _reduce_group_scores). gqa=expand (FasterDecoding/SnapKV: repeat_kv before
    update_kv) is a layer whose KV heads are repeated per query head: expanded_layer()."""
    K = keys_h[cache].astype(dtype)                          # [C, d]
    rows = [qpos_index[int(p)] for p in window_pos]
    Q = queries_group[:, rows, :].astype(dtype)              # [G, w', d]
    logits = np.einsum("gid,jd->gij", Q, K) / dtype(math.sqrt(d))   # [G, w', C]
    mask = cache[None, :] > np.asarray(window_pos)[:, None]  # j > i: masked
    logits = np.where(mask[None, :, :], dtype(-np.inf), logits)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    a = p[:, :, :nonwin_count].sum(axis=1)                   # [G, nonwin]
    assert gqa in ("mean", "max"), gqa
    return (a.max(axis=0) if gqa == "max" else a.mean(axis=0)).astype(dtype)


class LayerData:
    """One traced layer of one request, as float64 arrays."""

    def __init__(self, keys, queries, qpos, n, m, num_q_heads, num_kv_heads, head_dim):
        self.keys = np.asarray(keys, dtype=np.float64)
        self.queries = np.asarray(queries, dtype=np.float64)
        self.qpos = np.asarray(qpos, dtype=np.int64)
        self.qpos_index = {int(p): i for i, p in enumerate(self.qpos)}
        self.n, self.m = n, m
        self.hq, self.hkv, self.d = num_q_heads, num_kv_heads, head_dim
        assert self.keys.shape == (num_kv_heads, n + m, head_dim), self.keys.shape
        assert self.queries.shape[0] == num_q_heads and self.queries.shape[2] == head_dim
        assert num_q_heads % num_kv_heads == 0
        self.G = num_q_heads // num_kv_heads


def expanded_layer(layer):
    """The cache of the authors' code under GQA (transformers' repeat_kv before the cache update): KV
    head h repeated once per query head, cache head q = query head q holding KV head q // G, G = 1."""
    return LayerData(np.repeat(layer.keys, layer.G, axis=0), layer.queries, layer.qpos, layer.n, layer.m, layer.hq,
                     layer.hq, layer.d)


def union_per_kv_head(masks, G):
    """kvsim's kept file under gqa=expand: a position is kept if any of the KV head's G copies keeps it."""
    masks = np.asarray(masks, dtype=bool)
    return masks.reshape(masks.shape[0] // G, G, -1).any(axis=1)


class ReplayResult:
    def __init__(self):
        self.kept = None          # reference final mask (bool [n+m])
        self.problems = []        # mismatches not explained by near-ties (strings)
        self.near_ties = []       # accepted near-tie deviations (strings)
        self.evictions = 0        # eviction points that really evicted
        self.paths_tried = 0      # guided comparison: trajectories explored


def _eviction_plan(policy, n, chunks):
    """Indices of the prefill passes that really evict (counts do not depend on scores)."""
    evicting = []
    r = 0
    for j, (a, b) in enumerate(chunks):
        cache = r + (b - a)
        if policy.snapkv_evicts_after(n, chunks, j):
            cap = policy.snapkv_capacity(n, chunks, j, cache)
            if cache > cap:
                evicting.append(j)
                r = cap
                continue
        r = cache
    return evicting


def _eviction_inputs(policy, layer, h, chunks, j, resident):
    """(cache, nonwin, window_pos, k, cap) at eviction point j, or a problem string."""
    a, b = chunks[j]
    cache = np.concatenate([resident, np.arange(a, b, dtype=np.int64)])
    cap = policy.snapkv_capacity(layer.n, chunks, j, len(cache))
    wp = policy.snapkv_window(a, b)
    k = cap - wp
    if k < 0:
        return "chunk %d: capacity %d < window %d: semantics undefined" % (j, cap, wp)
    window_pos = np.arange(b - wp, b, dtype=np.int64)
    missing = [int(p) for p in window_pos if int(p) not in layer.qpos_index]
    if missing:
        return "trace lacks queries at window positions %s (chunk %d)" % (missing[:5], j)
    return cache, cache[: len(cache) - wp], window_pos, k, cap


def _pooled(policy, layer, h, cache, nonwin, window_pos, dtype=np.float64):
    qg = layer.queries[h * layer.G:(h + 1) * layer.G]
    assert policy.gqa != "expand" or layer.G == 1, "gqa=expand replays expanded_layer()"
    gqa = "mean" if policy.gqa == "expand" else policy.gqa
    s = snapkv_scores(layer.keys[h], qg, layer.qpos_index, cache, window_pos, len(nonwin), layer.d, dtype, gqa)
    return pool1d(s, policy.kernel, policy.pooling, dtype)


def snapkv_replay(policy, layer, h, chunk, observed=None, rel_tol=1e-5, max_paths=2000):
    """Reference SnapKV for KV head h of `layer`, optionally compared with kvsim's final mask.

    Without `observed`: the pure float64 reference; `kept` is its final mask.

    With `observed` (bool [n+m], kvsim's final kept mask): searches for a trajectory of kept sets,
    one per eviction point, that (1) ends exactly at kvsim's mask, (2) keeps at every eviction
    point the entries kvsim still holds at the end (evicted entries never return), and (3) at
    every eviction point differs from the float64 reference selection on that point's cache only
    by a near-tie: largest reference score dropped minus smallest kept < rel_tol * max score.
    With post_fill (one eviction point) this is exactly the single-step criterion. With
    prefill=chunk a near-tie at an early chunk changes the later caches (and the pooling
    neighbourhoods), so kvsim's unseen intermediate choices are guessed: the float64 order, the
    float64 scores rounded to float32 (underflow to 0 then ties by position, as in float32), and
    a float32 recomputation, each completed around the entries that must be kept; the first
    consistent trajectory is accepted and its near-ties reported. If none exists, `problems`
    describes the first failure on the primary (float64-order) path."""
    n, m = layer.n, layer.m
    chunks = prefill_chunks(n, chunk)
    res = ReplayResult()
    evicting = _eviction_plan(policy, n, chunks)
    res.evictions = len(evicting)
    last_evicting = evicting[-1] if evicting else None

    def final_mask(resident):
        kept = np.zeros(n + m, dtype=bool)
        kept[resident] = True
        kept[n:] = True  # decode: no eviction, generated tokens all kept
        return kept

    if observed is None:
        resident = np.zeros(0, dtype=np.int64)
        for j, (a, b) in enumerate(chunks):
            if j not in evicting:
                resident = np.concatenate([resident, np.arange(a, b, dtype=np.int64)])
                continue
            inp = _eviction_inputs(policy, layer, h, chunks, j, resident)
            if isinstance(inp, str):
                res.problems.append(inp)
                return res
            cache, nonwin, window_pos, k, cap = inp
            pooled = _pooled(policy, layer, h, cache, nonwin, window_pos)
            sel = top_k_positions(pooled, nonwin, k)
            resident = np.array(sorted(set(sel) | set(window_pos.tolist())), dtype=np.int64)
        res.kept = final_mask(resident)
        return res

    observed = np.asarray(observed, dtype=bool)
    failures = []   # messages; the first is on the primary (float64-order) path

    def fail(msg):
        failures.append(msg)
        return None

    def step(j, resident, ties):
        while j < len(chunks) and j not in evicting:
            a, b = chunks[j]
            resident = np.concatenate([resident, np.arange(a, b, dtype=np.int64)])
            j += 1
        if j == len(chunks):
            res.paths_tried += 1
            kept = final_mask(resident)
            if np.array_equal(kept, observed):
                return ties, kept
            diff = np.nonzero(kept != observed)[0]
            return fail("final mask differs at %d positions, first %s (reference kept: %s)"
                        % (len(diff), diff[:8].tolist(), kept[diff[:8]].astype(int).tolist()))
        if res.paths_tried >= max_paths:
            return fail("gave up after %d trajectories" % res.paths_tried)
        a, b = chunks[j]
        inp = _eviction_inputs(policy, layer, h, chunks, j, resident)
        if isinstance(inp, str):
            return fail(inp)
        cache, nonwin, window_pos, k, cap = inp
        pooled = _pooled(policy, layer, h, cache, nonwin, window_pos)
        ref_order = top_k_positions(pooled, nonwin, len(nonwin))
        ref_sel = set(ref_order[:k])
        score_of = {int(p): float(v) for p, v in zip(nonwin, pooled)}
        smax = float(pooled.max())
        forced = [int(p) for p in nonwin if observed[p]]
        if j == last_evicting:
            if len(forced) != k:
                return fail("chunk %d [%d,%d) (last eviction): kvsim kept %d of the %d non-window cache entries, "
                            "the capacity %d minus the window %d leaves %d"
                            % (j, a, b, len(forced), len(nonwin), cap, len(window_pos), k))
            dropped_win = [int(p) for p in window_pos if not observed[p]]
            if dropped_win:
                return fail("chunk %d [%d,%d): kvsim dropped window positions %s" % (j, a, b, dropped_win[:8]))
            candidates = [set(forced)]
        else:
            if len(forced) > k:
                return fail("chunk %d [%d,%d): kvsim's final mask holds %d of this eviction's non-window "
                            "entries, more than the %d it may keep" % (j, a, b, len(forced), k))
            orders = [ref_order,
                      top_k_positions(pooled.astype(np.float32), nonwin, len(nonwin)),
                      top_k_positions(_pooled(policy, layer, h, cache, nonwin, window_pos, np.float32),
                                      nonwin, len(nonwin))]
            candidates = []
            fs = set(forced)
            for order in orders:
                sel = fs | set([p for p in order if p not in fs][: k - len(fs)])
                if sel not in candidates:
                    candidates.append(sel)
        for ci, sel in enumerate(candidates):
            ties2 = ties
            if sel != ref_sel:
                kept_scores = [score_of[p] for p in sel]
                dropped_scores = [score_of[int(p)] for p in nonwin if int(p) not in sel]
                gap = max(dropped_scores) - min(kept_scores)
                only_k = sorted(sel - ref_sel)
                only_r = sorted(ref_sel - sel)
                desc = ("chunk %d [%d,%d): kvsim keeps %s%s, reference keeps %s%s instead; largest dropped minus "
                        "smallest kept reference score = %.3g (max score %.3g, rel %.3g)"
                        % (j, a, b, only_k[:6], "..." if len(only_k) > 6 else "", only_r[:6],
                           "..." if len(only_r) > 6 else "", gap, smax, gap / smax if smax > 0 else float("inf")))
                if not gap < rel_tol * smax:
                    fail(desc if j == last_evicting or ci == 0 else "(alternative) " + desc)
                    continue
                ties2 = ties + [desc]
            resident2 = np.array(sorted(sel | set(window_pos.tolist())), dtype=np.int64)
            r = step(j + 1, resident2, ties2)
            if r is not None:
                return r
        return None

    r = step(0, np.zeros(0, dtype=np.int64), [])
    if r is None:
        res.problems.append(failures[0] if failures else "no consistent trajectory")
        if len(failures) > 1:
            res.problems.append("(%d trajectories tried, all inconsistent)" % res.paths_tried)
    else:
        res.near_ties, res.kept = r
    return res


def snapkv_reference_naive(policy, keys, queries, qpos, n, m, chunk, h, G, d):
    """Slow, loop-based SnapKV reference (self-test cross-check of the vectorized one)."""
    qi = {int(p): i for i, p in enumerate(qpos)}
    chunks = prefill_chunks(n, chunk)
    resident = []
    for j, (a, b) in enumerate(chunks):
        cache = resident + list(range(a, b))
        if not policy.snapkv_evicts_after(n, chunks, j):
            resident = cache
            continue
        cap = policy.snapkv_capacity(n, chunks, j, len(cache))
        if len(cache) <= cap:
            resident = cache
            continue
        wp = policy.snapkv_window(a, b)
        win = list(range(b - wp, b))
        nonwin = cache[: len(cache) - wp]
        score = [0.0] * len(nonwin)
        for g in range(h * G, (h + 1) * G):
            for i in win:
                q = queries[g][qi[i]]
                logit = {}
                for p in cache:
                    if p <= i:
                        logit[p] = sum(float(q[x]) * float(keys[h][p][x]) for x in range(d)) / math.sqrt(d)
                mx = max(logit.values())
                den = sum(math.exp(v - mx) for v in logit.values())
                for jj, p in enumerate(nonwin):
                    if p in logit:
                        score[jj] += math.exp(logit[p] - mx) / den / G
        kk = policy.kernel
        rr = kk // 2
        pooled = []
        for jj in range(len(nonwin)):
            nb = [score[u] for u in range(jj - rr, jj + rr + 1) if 0 <= u < len(nonwin)]
            pooled.append(sum(nb) / kk if policy.pooling == "avg" else max(nb))
        order = sorted(range(len(nonwin)), key=lambda u: (-pooled[u], nonwin[u]))
        keep = sorted([nonwin[u] for u in order[: cap - wp]] + win)
        resident = keep
    return sorted(resident + list(range(n, n + m)))


# ---------------------------------------------------------------------------------------------
# Files and running kvsim
# ---------------------------------------------------------------------------------------------

def write_ini(path, sections):
    """sections: [(name, [(key, value), ...])] - keys may repeat (e.g. several `spec`)."""
    with open(path, "w") as f:
        for name, items in sections:
            f.write("[%s]\n" % name)
            for k, v in items:
                f.write("%s = %s\n" % (k, v))
            f.write("\n")
    return path


def write_model_ini(path, name, num_layers, num_q_heads, num_kv_heads, head_dim, kv_bits=16, rope_theta=10000,
                    extra=()):
    """extra: more (key, value) pairs of [model], e.g. rope_scaling_type and its parameters."""
    return write_ini(path, [("model", [("name", name), ("num_layers", num_layers), ("num_q_heads", num_q_heads),
                                       ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                                       ("kv_bits", kv_bits), ("rope_theta", rope_theta)] + list(extra))])


def fresh(*paths):
    """Removes earlier outputs (files or directories) so a rerun never reads stale results."""
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def run_kvsim(kvsim, argv, timeout=300, cwd=None):
    """Runs kvsim; returns (ok, message). Never raises for a failing kvsim."""
    cmd = [kvsim] + [str(a) for a in argv]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out after %ds: %s" % (timeout, " ".join(cmd))
    except OSError as e:
        return False, "could not start %s: %s" % (" ".join(cmd), e)
    dt = time.time() - t0
    if p.returncode != 0:
        tail = (p.stderr.decode(errors="replace") or p.stdout.decode(errors="replace"))[-2000:]
        return False, "exit status %d (%.1f s): %s\n%s" % (p.returncode, dt, " ".join(cmd), tail)
    return True, "%.1f s" % dt


def read_summary(out_dir):
    with open(os.path.join(out_dir, "summary.json")) as f:
        return json.load(f)


def run_policies(ck, kvsim, wd, model_ini, specs, chunk, name):
    """`kvsim run` of `specs` on wd/trace.h5 prefilled in chunks of `chunk` (2 threads), in
    wd/<name>.ini -> {canonical spec: its summary.json entry}, or None after a failed check."""
    scen = write_ini(os.path.join(wd, name + ".ini"),
                     [("model", [("preset", model_ini)]), ("workload", [("trace", "trace.h5"), ("chunk_tokens", chunk)]),
                      ("policy", [("spec", s) for s in specs]), ("sim", [("threads", 2)])])
    out = os.path.join(wd, "out_" + name)
    fresh(out)
    ok, msg = run_kvsim(kvsim, ["run", scen, "--out", out], timeout=180)
    if not ck.check(ok, "kvsim run " + name, msg):
        return None
    return {p["spec"]: p for p in read_summary(out)["policies"]}


def attr_str(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        return attr_str(v[()])
    return str(v)


def read_trace_layers(path, request="0"):
    """-> (meta dict, {layer: LayerData}) for one request of a trace file."""
    out = {}
    with h5py.File(path, "r") as f:
        meta = {k: f.attrs[k] for k in f.attrs}
        hq, hkv, d = int(meta["num_q_heads"]), int(meta["num_kv_heads"]), int(meta["head_dim"])
        req = f["requests"][request]
        n, m = int(req.attrs["prompt_tokens"]), int(req.attrs["generated_tokens"])
        meta["prompt_tokens"], meta["generated_tokens"] = n, m
        for name in req:
            mm = re.fullmatch(r"layer_(\d+)", name)
            if not mm:
                continue
            g = req[name]
            out[int(mm.group(1))] = LayerData(g["keys"][...], g["queries"][...], g["query_positions"][...],
                                              n, m, hq, hkv, d)
    return meta, out


def read_layer_arrays(path, request="0"):
    """-> [(keys, values, queries, query_positions)] of one request's layers, in the order of their
    group names (layer_0, layer_1, layer_10, ...: h5py's sorted order)."""
    layers = []
    with h5py.File(path, "r") as f:
        req = f["requests"][request]
        for name in sorted(req):
            if name.startswith("layer_"):
                g = req[name]
                layers.append((g["keys"][...], g["values"][...], g["queries"][...], g["query_positions"][...]))
    return layers


def read_kept(path, request="0"):
    """-> {policy_index: (spec, {layer: bool [num_kv_heads, n+m]})}."""
    out = {}
    with h5py.File(path, "r") as f:
        for idx in f["policies"]:
            g = f["policies"][idx]
            spec = attr_str(g.attrs["spec"]) if "spec" in g.attrs else None
            layers = {}
            req = g["requests"][request]
            for name in req:
                mm = re.fullmatch(r"layer_(\d+)", name)
                if mm:
                    layers[int(mm.group(1))] = req[name]["kept"][...]
            out[int(idx)] = (spec, layers)
    return out


# ---------------------------------------------------------------------------------------------
# Driver shared by the test_<policy>_reference.py scripts: synth, run, compare
# ---------------------------------------------------------------------------------------------

def two_scenarios(chunk, unchunked, chunked):
    """The usual pair of scenarios: (tag, chunk or None, specs) unchunked, and chunked by `chunk`."""
    return [("unchunked", None, unchunked), ("chunk%d" % chunk, chunk, chunked)]


def synth_trace(ck, args, tag, hq, hkv, d, n, m, seed, extra=(), layers=(0, 1), num_layers=2, model_keys=()):
    """`kvsim synth` a trace of model "tiny-<tag>" in workdir/<tag> (extra: more synth options;
    model_keys: more [model] keys of its ini). -> (directory, model ini, trace), or None after a failed check."""
    wd = os.path.join(args.workdir, tag)
    os.makedirs(wd, exist_ok=True)
    model_ini = write_model_ini(os.path.join(wd, "model.ini"), "tiny-" + tag, num_layers, hq, hkv, d, extra=model_keys)
    trace = os.path.join(wd, "trace.h5")
    fresh(trace)
    argv = ["synth", "--model", model_ini, "--prompt-tokens", n, "--generated-tokens", m,
            "--layers", ",".join(str(x) for x in layers), "--seed", seed, "--out", trace] + list(extra)
    ok, msg = run_kvsim(args.kvsim, argv, timeout=120)
    if not ck.check(ok, "%s: kvsim synth" % tag, msg):
        return None
    return wd, model_ini, trace


def run_scenarios(ck, args, tag, wd, model_ini, scenarios, compare):
    """For each scenario (tag, chunk or None, [specs]): `kvsim run --save-kept` on wd's trace.h5,
    then compare(kept_file, specs, chunk, where)."""
    for sc_tag, sc_chunk, specs in scenarios:
        where = "%s/%s" % (tag, sc_tag)
        wl = [("trace", "trace.h5")] + ([("chunk_tokens", sc_chunk)] if sc_chunk else [])
        scen = write_ini(os.path.join(wd, "%s.ini" % sc_tag),
                         [("model", [("preset", model_ini)]), ("workload", wl),
                          ("policy", [("spec", s) for s in specs]), ("sim", [("threads", 2)])])
        out, kept_file = os.path.join(wd, "out_" + sc_tag), os.path.join(wd, "kept_%s.h5" % sc_tag)
        fresh(out, kept_file)
        ok, msg = run_kvsim(args.kvsim, ["run", scen, "--out", out, "--save-kept", kept_file], timeout=180)
        if not ck.check(ok, "%s: kvsim run --save-kept" % where, msg):
            continue
        compare(kept_file, specs, sc_chunk, where)
        print("%s: kvsim %s, masks compared" % (where, msg), flush=True)


def run_kept_model(ck, args, tag, hq, hkv, d, n, m, seed, scenarios, compare, synth_args=(), layers=(0, 1),
                   num_layers=2, load=None, model_keys=()):
    """synth_trace, load(trace) -> {layer: data} (None: stop; default: read_trace_layers and check
    the traced layers), then run_scenarios with compare(kept_file, specs, layers, chunk, where)."""
    made = synth_trace(ck, args, tag, hq, hkv, d, n, m, seed, synth_args, layers, num_layers, model_keys)
    if made is None:
        return
    wd, model_ini, trace = made
    if load is None:
        _, lays = read_trace_layers(trace)
        ck.eq(sorted(lays), sorted(layers), "%s: traced layers" % tag)
    else:
        lays = load(trace)
        if lays is None:
            return
    run_scenarios(ck, args, tag, wd, model_ini, scenarios,
                  lambda kept_file, specs, chunk, where: compare(kept_file, specs, lays, chunk, where))


def run_kept_models(ck, args, models, n, m, unchunked, chunked, make_check, synth_args=lambda chunk: (),
                    load=None, layers=(0, 1), num_layers=2, **compare_kw):
    """For each model (tag, num_q_heads, num_kv_heads, head_dim, chunk, seed): run_kept_model over
    two_scenarios(chunk, unchunked, chunked), the synth options synth_args(chunk), and
    compare_kept(..., make_check(scenario chunk), **compare_kw). load(ck, tag, (hq, hkv, d), trace)
    replaces the default trace loading."""
    for tag, hq, hkv, d, chunk, seed in models:
        def compare(kept_file, specs, lays, sc_chunk, where):
            compare_kept(ck, kept_file, specs, lays, where, make_check(sc_chunk), **compare_kw)

        model_load = None if load is None else (lambda trace, tag=tag, shape=(hq, hkv, d): load(ck, tag, shape, trace))
        run_kept_model(ck, args, tag, hq, hkv, d, n, m, seed, two_scenarios(chunk, unchunked, chunked), compare,
                       synth_args(chunk), layers, num_layers, model_load)


def read_kept_checked(ck, kept_file, specs, where):
    """read_kept, checking that it holds `full` (which kvsim always runs first) and each spec."""
    try:
        kept = read_kept(kept_file)
    except (OSError, KeyError) as e:
        ck.check(False, "%s: read %s" % (where, kept_file), repr(e))
        return None
    if not ck.eq(sorted(kept), list(range(1 + len(specs))), "%s: policy indices in the kept file" % where):
        return None
    return kept


def compare_kept(ck, kept_file, specs, layers, where, check_layer, width=None, with_full=True, spec_prefix=None,
                 shape_label="shape"):
    """Walks a kept file: for each policy (`full` first unless with_full is False) checks its spec
    attribute (starts with spec_prefix(spec), when given) and its layers, then for each traced layer
    the mask's shape [num_kv_heads, width (default n + m)] and check_layer(spec, what, L, layer, mask) with
    what = "<where> policy <index> <spec> layer <L>"."""
    kept = read_kept_checked(ck, kept_file, specs, where)
    if kept is None:
        return
    for idx, spec in enumerate(["full"] + specs):
        if idx == 0 and not with_full:
            continue
        kspec, klayers = kept[idx]
        name = "%s policy %d %s" % (where, idx, spec)
        if spec_prefix is not None:
            ck.check(kspec is not None and kspec.startswith(spec_prefix(spec)), name + ": spec attribute", repr(kspec))
        ck.eq(sorted(klayers), sorted(layers), name + ": layers in the kept file")
        for L, lay in sorted(layers.items()):
            mask = klayers.get(L)
            what = "%s layer %d" % (name, L)
            shape = (lay.hkv, width if width is not None else lay.n + lay.m)
            if mask is None or not ck.eq(tuple(mask.shape), shape, "%s: %s" % (what, shape_label)):
                continue
            check_layer(spec, what, L, lay, mask)


def check_full(ck, what, obs):
    return ck.check(obs.all(), what + ": full keeps everything", "%d dropped" % (~obs).sum())
