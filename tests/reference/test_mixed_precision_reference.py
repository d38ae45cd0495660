#!/usr/bin/env python3
"""mixed_precision (MiKV-style, Yang et al. 2024, arXiv 2402.18096): an independent numpy version
against `kvsim run` on a synthetic GQA trace, with prefill=post_fill and prefill=chunk. MiKV has no
public code (docs/policy-sources.md "mixed_precision"), so this follows the paper's description, with
the asymmetric group quantizer of test_kivi_reference.py (written from jy-yuan/KIVI quant/new_pack.py)
and SnapKV's selection of test_snapkv_reference.py (FasterDecoding/SnapKV).

Per KV head the high-precision class is SnapKV's kept set of the prompt (kvref.snapkv_replay, the
float64 SnapKV of tests/reference/test_snapkv_reference.py, evicting once after the prompt or
after every chunk); every other prompt entry's K and V are quantized per token in groups of
`group` channels at low_bits (asymmetric, round half to even), the high class at high_bits (16:
kept as is); decode entries stay whole. Checked: output error (mean, p95) of the decode queries,
recall 1, and the byte-weighted footprint and peak_bytes of the rule in policies/policy.h (kept
entries at stored bytes, the pass in flight at full precision), where once the first e positions
are split (e = n after the prompt with post_fill; the end of the last finished chunk with chunk)
with H of them high, one head's K (or V) holds
    H * B(high) + (e - H) * B(low) + (s - e) * D * 2,   B(b) = D * b/8 + D/group * 4 (or D * 2 at 16 bits).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from test_kivi_reference import check_compressed_run, eval_positions, fake_quant_groups  # noqa: E402

try:
    import h5py
except ImportError:  # reported by kvref.common_args
    h5py = None


def entry_bytes(d, bits, group):
    return d * 2 if bits >= 16 else d * bits / 8 + d // group * 4


def spans(n, chunk, mode):
    return [(b, min(b + chunk, n)) for b in range(0, n, chunk)] if mode == "chunk" else [(0, n)]


def high_counts(n, chunk, mode, budget, window):
    """High-class size after each span: sum_{i<=j} min(round(b c_i) + w, c_i) (chunk), else once."""
    out, total = [], 0
    for b, e in spans(n, chunk, mode):
        total += min(kvref.round_half_even(budget * (e - b)) + window, e - b)
        out.append(total)
    return out


def stored_key_bytes(s, n, chunk, mode, budget, window, d, high_bits, low_bits, group):
    """One head's K (or V) bytes for s stored entries."""
    done = [(e, h) for (_, e), h in zip(spans(n, chunk, mode), high_counts(n, chunk, mode, budget, window))
            if e <= min(s, n)]
    e, high = done[-1] if done else (0, 0)
    return high * entry_bytes(d, high_bits, group) + (e - high) * entry_bytes(d, low_bits, group) + (s - e) * d * 2


def self_tests(ck):
    # Bytes by hand (tests/policies/mixed_precision_test.cpp): D=128, G=32, 2 bits: 48 bytes; n=1000,
    # chunks 400/400/200, b=0.2, w=32: high 112, 224, 296.
    ck.eq(entry_bytes(128, 2, 32), 48, "hand: 2-bit entry bytes")
    ck.eq(high_counts(1000, 400, "chunk", 0.2, 32), [112, 224, 296], "hand: chunked high counts")
    ck.eq(high_counts(1000, 400, "post_fill", 0.2, 32), [232], "hand: post-fill high count")
    f = lambda s, mode: stored_key_bytes(s, 1000, 400, mode, 0.2, 32, 128, 16, 2, 32)
    ck.eq(f(399, "chunk"), 399 * 256, "hand: nothing split before the first chunk ends")
    ck.eq(f(400, "chunk"), 112 * 256 + 288 * 48, "hand: after chunk 0")
    ck.eq(f(1010, "chunk"), 296 * 256 + 704 * 48 + 10 * 256, "hand: decode")
    ck.eq(f(800, "post_fill"), 800 * 256, "hand: post-fill mid-prompt")
    ck.eq(f(1000, "post_fill"), 232 * 256 + 768 * 48, "hand: post-fill after the prompt")


def run(ck, args):
    tag, hq, hkv, d, n, m, chunk, window = "gqa", 8, 2, 32, 300, 24, 100, 16
    made = kvref.synth_trace(ck, args, tag, hq, hkv, d, n, m, 43, extra=["--chunk-tokens", chunk, "--window", window])
    if made is None:
        return
    wd, model_ini, trace = made
    _, layers = kvref.read_trace_layers(trace)
    with h5py.File(trace, "r") as f:  # LayerData keeps keys and queries only
        values = {l: f["requests"]["0"]["layer_%d" % l]["values"][...] for l in layers}
    specs = [
        "mixed_precision(budget=0.2, window=16, kernel=5, pooling=max, high_bits=16, low_bits=2, group=8, prefill=post_fill)",
        "mixed_precision(budget=0.2, window=16, kernel=5, pooling=max, high_bits=16, low_bits=2, group=8, prefill=chunk)",
        "mixed_precision(budget=0.5, window=16, kernel=3, pooling=avg, high_bits=8, low_bits=4, group=16, prefill=chunk)",
    ]
    got = kvref.run_policies(ck, args.kvsim, wd, model_ini, specs, chunk, "mixed")
    if got is None:
        return
    for spec in specs:
        _, a = kvref.parse_spec(spec)
        budget, win, mode = float(a["budget"]), int(a["window"]), a["prefill"]
        high_bits, low_bits, group = int(a["high_bits"]), int(a["low_bits"]), int(a["group"])
        r = got.get(spec)
        if not ck.check(r is not None, "%s in summary" % spec, sorted(got)):
            continue
        snap = kvref.Policy("snapkv(budget=%s, window=%d, kernel=%s, pooling=%s, prefill=%s)"
                            % (a["budget"], win, a["kernel"], a["pooling"], mode))
        errs, highs = [], []
        for layer, lay in sorted(layers.items()):
            G = hq // hkv
            for h in range(hkv):
                high = kvref.snapkv_replay(snap, lay, h, chunk).kept[:n]
                highs.append(int(high.sum()))
                k = lay.keys[h].astype(np.float32)
                v = values[layer][h].astype(np.float32)
                ks, vs = k.copy(), v.copy()
                for bits, rows in ((low_bits, ~high), (high_bits, high)):
                    if bits >= 16:
                        continue
                    idx = np.nonzero(rows)[0]
                    ks[idx] = fake_quant_groups(k[idx], bits, group, axis=1)
                    vs[idx] = fake_quant_groups(v[idx], bits, group, axis=1)
                for t in eval_positions(n, m):
                    for g in range(G):
                        q = lay.queries[h * G + g, lay.qpos_index[t]]

                        def attend(kmat, vmat):
                            z = kmat[:t + 1].astype(np.float64) @ q / np.sqrt(d)
                            p = np.exp(z - z.max())
                            return (p / p.sum()) @ vmat[:t + 1].astype(np.float64)
                        o = attend(k, v)
                        errs.append(np.linalg.norm(attend(ks, vs) - o) / np.linalg.norm(o))
        want_high = high_counts(n, chunk, mode, budget, win)[-1]
        ck.eq(set(highs), {want_high}, "%s: high class per head = the SnapKV capacity" % spec)
        check_compressed_run(ck, r, spec, lambda s: 2 * stored_key_bytes(s, n, chunk, mode, budget, win, d, high_bits,
                                                                          low_bits, group),
                             np.array(errs), n, m, chunk, d, 2 * hkv)  # 2 layers

if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
