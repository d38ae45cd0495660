#!/usr/bin/python3
"""kvsim's head-mask policies (duoattention, prulong) against an independent numpy reference
(ref_headmask.py) and against the footprint closed forms of "Cache Me If You Can".

Self-tests (always run; alone with --self-test): the hand examples of
tests/policies/duoattention_test.cpp and prulong_test.cpp (proxy scores, count rules, ties), and
the mixed-head closed form on the policy-notes table (hs = fraction of streaming heads).

Then:
  1. kept masks: MHA and GQA tiny models (`kvsim synth`, n=480, m=12, two layers), duoattention and
     prulong from mask files and from the proxy, chunked and unchunked, decode every step or every
     K steps; every final mask must equal the reference's (full heads keep everything, streaming
     heads sinks + window), a proxy choice differing only by a near-tie is reported;
  2. footprint: llama-3.1-8b at 32K (layer 0 traced, 31 untraced) with a mask file giving each layer
     a different number of full heads, with prulong's proxy, and with duoattention's default for
     this preset (its published gates, ref_duo_sparsify.py): footprint_entry_steps, peak_entries and
     peak_bytes exact, normalised values to 1e-12, against the sum over heads of A(n+m) (full) and
     streaming_mask_stats (streaming): footprint = f x full + (1 - f) x streaming, per layer.

usage: /usr/bin/python3 tests/reference/test_headmask_reference.py --kvsim BIN --workdir DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from kvref import A  # noqa: E402
from ref_duo_sparsify import duo_full_heads, load_gates  # noqa: E402
from ref_headmask import HeadMaskSpec, proxy_scores, read_mask, streaming_kept, top_mask  # noqa: E402


def self_tests(ck):
    # duoattention_test.cpp: d=1, keys ln x, queries 1; last query t=7, sinks 1, window 2.
    xs = [[1, 1, 8, 1, 1, 1, 1, 1], [4, 1, 1, 1, 1, 1, 4, 4]]
    keys = np.log(np.asarray(xs, dtype=np.float64))[:, :, None]
    lay = kvref.LayerData(keys, np.ones((2, 8, 1)), np.arange(8), 8, 0, 2, 2, 1)
    ck.check(np.allclose(proxy_scores(lay, [7], 1, 2), [12 / 15, 5 / 17]), "hand: proxy scores",
             proxy_scores(lay, [7], 1, 2))
    ck.check(np.isclose(proxy_scores(lay, [6, 7], 1, 2)[0], (11 / 14 + 12 / 15) / 2), "hand: proxy over two queries")
    # Count rules (prulong_test.cpp): 4 heads, sparsity 0.3 -> duo 3 full, prulong 2.
    ck.eq(HeadMaskSpec("duoattention(sparsity=0.3)").full_count(4), 3, "duoattention: 4 - round(1.2)")
    ck.eq(HeadMaskSpec("prulong(sparsity=0.3)").full_count(4), 2, "prulong: int(2.8)")
    ck.eq(HeadMaskSpec("prulong").full_count(8), 2, "prulong default: int(8 x 0.3) = 2")
    ck.eq([HeadMaskSpec("prulong").layer_full_count(8, 32, layer) for layer in (0, 5)], [2, 3],
          "prulong default, 32 x 8 heads: int(76.8) = 76 full, spread 2, 2, 3, ...")
    ck.eq(sum(HeadMaskSpec("duoattention(sparsity=0.8)").layer_full_count(8, 32, layer) for layer in range(32)), 51,
          "duoattention 0.8 over 256 heads: 256 - round(204.8) = 51 full")
    ck.eq(HeadMaskSpec("duoattention(sparsity=0.7)").full_count(8), 2, "duoattention: 8 - round(5.6)")
    ck.eq(top_mask([[1, 1], [1, 0.5]], 2).tolist(), [[True, True], [False, False]], "ties: lower (layer, head)")
    ck.eq(streaming_kept(HeadMaskSpec("duoattention(sinks=1, window=2)"), 8, 2, 4).nonzero()[0].tolist(), [0, 8, 9],
          "hand: streaming head after chunks and decode steps")
    # The closed form's head mix is linear in hs (policy-notes table: P=131072, C=32768, R=20).
    e_s, _ = kvref.streaming_mask_stats(131072, 20, 32768, 128, 1024)
    fp, _ = kvref.get_kv_footprint(131072, 20, 32768, 128, 1024, 0.0, 0.7)
    ck.close(fp, 0.7 * e_s / A(131092) + 0.3, "closed form: hs x streaming + (1 - hs) x full")
    ck.close(100 * fp, 48.418, "policy-notes table: Duo/PruLong hs=0.7", rel=0, abs_=0.0006)


# ---------------------------------------------------------------------------------------------
# 1. kept masks on tiny models

MODELS = [("mha", 2, 2, 16, 128, 61), ("gqa", 8, 4, 16, 200, 62)]
N, M = 480, 12


def mask_text(hkv, seed):
    rng = np.random.default_rng(seed)
    rows = np.round(rng.uniform(0, 1, size=(2, hkv)), 3)
    rows[1, 0] = rows[0, 1]  # a tie across layers
    return "\n".join("\t".join("%g" % v for v in r) for r in rows) + "\n"


def scenario_specs(mask):
    unchunked = ["duoattention(sparsity=0.5, sinks=8, window=32)",
                 "prulong(sparsity=0.5, sinks=4, window=64, proxy_window=16)",
                 "duoattention(sparsity=0.25, sinks=4, window=40, mask=%s)" % mask,
                 "prulong(sparsity=0.6, sinks=16, window=24, mask=%s, decode=none)" % mask]
    chunked = ["duoattention(sinks=8, window=50)",
               "prulong(sinks=8, window=100, prefill=post_fill, decode=every:4)",
               "duoattention(sparsity=0.75, sinks=2, window=16, mask=%s, decode=every:3)" % mask]
    return unchunked, chunked


def check_layer(ck, chunk):
    def check(spec, what, L, lay, mask):
        obs = mask.astype(bool)
        if spec == "full":
            kvref.check_full(ck, what, obs)
            return
        p = HeadMaskSpec(spec)
        if p.mask is not None:
            table = read_mask(p.mask)
            full = top_mask(table, p.full_count(table.size))[L]
            scores = None
        else:
            observed = list(range(max(0, lay.n - p.proxy_window), lay.n))
            scores = proxy_scores(lay, observed, p.sinks, p.window)
            full = top_mask(scores, p.layer_full_count(lay.hkv, 2, L))
        stream = streaming_kept(p, lay.n, lay.m, chunk)
        seen = obs.all(axis=1)
        if scores is not None and not np.array_equal(seen, full) and seen.sum() == full.sum():
            gap = scores[full & ~seen].max() - scores[seen & ~full].min()
            if gap < 1e-5 * scores.max():
                ck.near_ties(what, ["proxy: kvsim full heads %s, reference %s (scores %s)"
                                    % (np.nonzero(seen)[0].tolist(), np.nonzero(full)[0].tolist(), scores)])
                full = seen
        want = np.array([np.ones(lay.n + lay.m, dtype=bool) if f else stream for f in full])
        ck.check(np.array_equal(obs, want), what + ": kept masks == reference",
                 "full heads kvsim %s, reference %s; scores %s" % (np.nonzero(seen)[0].tolist(),
                                                                   np.nonzero(full)[0].tolist(), scores))
    return check


# ---------------------------------------------------------------------------------------------
# 2. footprint of full + streaming heads, traced and untraced layers

def mixed_counts(n, m, chunk, sinks, window, full_per_layer, kv_heads):
    """(footprint_entry_steps, peak_entries) of layers with full_per_layer[L] full heads."""
    c = n if chunk is None else chunk
    e_s, p_s = kvref.streaming_mask_stats(n, m, c, sinks, window)
    e_f, p_f = kvref.global_mask_stats(n, m, c, 0.0, 0)  # s = 0: a full head
    assert e_f == A(n + m)
    full = sum(full_per_layer)
    stream = len(full_per_layer) * kv_heads - full
    return full * e_f + stream * e_s, int((full * p_f + stream * p_s).max())


LLAMA_MAP = os.path.join(os.environ.get("KVSIM_CONFIG_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                            "..", "..", "configs"),
                         "head_maps", "llama-3.1-8b.tsv")


def run_footprint(ck, args):
    L, H, entry_bytes = 32, 8, 2 * 128 * 16 // 8
    n, m = 32768, 16
    wd = os.path.join(args.workdir, "footprint")
    os.makedirs(wd, exist_ok=True)
    full_per_layer = [(3 * layer + 2) % (H + 1) for layer in range(L)]  # 2, 5 or 8 full heads
    rows = [["0.9" if h < f else "0.1" for h in range(H)] for f in full_per_layer]
    mask = os.path.join(wd, "mask.tsv")
    with open(mask, "w") as f:
        f.write("".join("\t".join(r) + "\n" for r in rows))
    hs = 1 - sum(full_per_layer) / (L * H)
    cases = [  # (spec, sinks, window, full heads per layer)
        ("duoattention(sparsity=%r, sinks=64, window=512, mask=%s)" % (hs, mask), 64, 512, full_per_layer),
        ("prulong(sparsity=0.7, sinks=128, window=1024)", 128, 1024,
         [HeadMaskSpec("prulong").layer_full_count(H, L, layer) for layer in range(L)]),
        # No mask on llama-3.1-8b: its published DuoAttention gates by the original's rule (issue 19).
        ("duoattention(sparsity=0.8)", 128, 256,
         [int(f) for f in duo_full_heads(load_gates(LLAMA_MAP), 0.8).sum(axis=1)]),
    ]
    for chunk in (8192, None):
        tag = "llama32k_%s" % ("chunk%d" % chunk if chunk else "unchunked")
        wl = [("prompt_tokens", n), ("generated_tokens", m)] + ([("chunk_tokens", chunk)] if chunk else [])
        wl += [("trace", "synthetic"), ("seed", 1), ("traced_layers", "0")]
        scen = kvref.write_ini(os.path.join(wd, tag + ".ini"),
                               [("model", [("preset", "llama-3.1-8b")]), ("workload", wl),
                                ("policy", [("spec", c[0]) for c in cases]), ("sim", [("threads", 2)])])
        out = os.path.join(wd, "out_" + tag)
        kvref.fresh(out)
        ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", out], timeout=300)
        if not ck.check(ok, tag + ": kvsim run", msg):
            continue
        pols = kvref.read_summary(out)["policies"]
        for (spec, sinks, window, fpl), got in zip(cases, pols[1:]):
            what = "%s %s" % (tag, spec)
            F, peak = mixed_counts(n, m, chunk, sinks, window, fpl, H)
            ck.eq(got["footprint_entry_steps"], F, what + ": footprint_entry_steps")
            ck.eq(got["peak_entries"], peak, what + ": peak_entries")
            ck.eq(got["peak_bytes"], peak * entry_bytes, what + ": peak_bytes")
            ck.close(got["footprint_normalized"], F / (A(n + m) * L * H), what + ": footprint_normalized")
            ck.close(got["peak_normalized"], peak / ((n + m) * L * H), what + ": peak_normalized")
            # The paper's get_kv_footprint with hs = fraction of streaming heads.
            f = sum(fpl) / (L * H)
            fp, pk = kvref.get_kv_footprint(n, m, chunk or n, sinks, window, 0.0, 1 - f, kv_window=0)
            ck.close(got["footprint_normalized"], fp, what + ": = get_kv_footprint(hs)", rel=1e-9)
            ck.close(got["peak_normalized"], pk, what + ": peak = get_kv_footprint(hs)", rel=1e-9)
        print("%s: kvsim %s" % (tag, msg), flush=True)


def run(ck, args):
    for tag, hq, hkv, d, chunk, seed in MODELS:
        wd = os.path.join(args.workdir, tag)
        os.makedirs(wd, exist_ok=True)
        mask = os.path.join(wd, "mask.tsv")
        with open(mask, "w") as f:
            f.write(mask_text(hkv, seed))
        unchunked, chunked = scenario_specs(mask)

        def compare(kept_file, specs, lays, sc_chunk, where):
            kvref.compare_kept(ck, kept_file, specs, lays, where, check_layer(ck, sc_chunk))
        kvref.run_kept_model(ck, args, tag, hq, hkv, d, N, M, seed, kvref.two_scenarios(chunk, unchunked, chunked),
                             compare)
    run_footprint(ck, args)


if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
