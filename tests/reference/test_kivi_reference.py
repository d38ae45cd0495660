#!/usr/bin/env python3
"""kivi (Liu et al. 2024, arXiv 2402.02750; jy-yuan/KIVI models/llama_kivi.py, quant/new_pack.py):
an independent numpy KIVI against `kvsim run` on synthetic GQA traces.

KIVI as written here from the reference code: asymmetric quantization in groups of G, per group
scale = (max - min) / (2^bits - 1), q = clamp(round_half_even((x - min) / scale), 0, 2^bits - 1),
x' = q * scale + min (float32). Keys per channel (groups of G consecutive tokens), values per token
(groups of G channels). A head holding s entries has floor(s/R)*R keys and max(0, s-R) values
quantized, the rest in full precision; each quantized element costs bits/8 bytes plus an fp16
scale and fp16 zero-point per group, each full one kv_bits/8 bytes. Accounting (DESIGN.md §2 and
policies/policy.h): kept entries at their stored bytes, the pass in flight at full precision.

Checks: the numpy quantizer's hand grid and error bound; then per scenario the byte-weighted
footprint_normalized and peak_bytes against the hand formula, and the output error (mean and p95
over decode queries, query heads and traced layers, K/V dequantized where stored quantized)
against numpy's own attention; attention recall is 1 (KIVI evicts nothing).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402

def fake_quant_groups(x, bits, group, axis):
    """x float32 2-D; groups of `group` consecutive elements along `axis` (last partial group alone)."""
    x = np.asarray(x, dtype=np.float32)
    out = x.copy()
    levels = np.float32(2 ** bits - 1)
    n = x.shape[axis]
    for g0 in range(0, n, group):
        sl = [slice(None), slice(None)]
        sl[axis] = slice(g0, min(g0 + group, n))
        blk = x[tuple(sl)]
        lo = blk.min(axis=axis, keepdims=True)
        hi = blk.max(axis=axis, keepdims=True)
        scale = (hi - lo) / levels
        safe = np.where(scale > 0, scale, np.float32(1))
        q = np.clip(np.round((blk - lo) / safe), 0, levels).astype(np.float32)
        out[tuple(sl)] = np.where(scale > 0, q * scale + lo, lo)
    return out


def quant_keys(k, bits, group):  # [tokens, channels], per channel
    return fake_quant_groups(k, bits, group, axis=0)


def quant_values(v, bits, group):  # per token
    return fake_quant_groups(v, bits, group, axis=1)


def stored_bytes(s, d, bits, group, residual, kv_bits=16):
    kq, vq = s // residual * residual, max(0, s - residual)
    per_q = d * bits / 8 + d // group * 4
    full = d * kv_bits / 8
    return kq * per_q + (s - kq) * full + vq * per_q + (s - vq) * full


def passes(n, m, chunk):
    out, b = [], 0
    while b < n:
        out.append((b, min(b + chunk, n)))
        b = out[-1][1]
    return out + [(t, t + 1) for t in range(n, n + m)]


def check_compressed_run(ck, r, what, stored, errs, n, m, chunk, d, heads, copies=1):
    """What every precision policy's run is checked on: output error (mean, p95) against the numpy
    errors, recall 1 (nothing evicted), and the byte-weighted footprint and peak_bytes of the rule
    in policies/policy.h: per head, the s entries kept from earlier passes cost stored(s) bytes (K
    and V), the pass in flight full precision; `heads` = layers x KV heads, each held `copies` times
    (gqa=expand: one copy per query head)."""
    ck.close(r["output_error"]["mean"], errs.mean(), "%s output_error mean" % what, rel=2e-4)
    ck.close(r["output_error"]["p95"], np.percentile(errs, 95), "%s output_error p95" % what, rel=2e-4)
    ck.close(r["attention_recall"]["mean"], 1.0, "%s recall" % what, rel=0, abs_=1e-5)
    entry = 2 * d * 2
    fp = peak = 0.0
    for b, e in passes(n, m, chunk):
        fp += (e - b) * stored(b) + entry * (e - b) * (e - b + 1) / 2
        peak = max(peak, stored(b) + (e - b) * entry)
    ck.close(r["footprint_normalized"], copies * fp / (entry * kvref.A(n + m)), "%s footprint_normalized" % what)
    ck.eq(r["peak_bytes"], round(peak * heads * copies), "%s peak_bytes" % what)
    print("%s: footprint %.5f peak %d output_error %.4g (numpy %.4g)" % (
        what, r["footprint_normalized"], r["peak_bytes"], r["output_error"]["mean"], errs.mean()))


def self_tests(ck):
    k = np.array([[0.0], [0.4], [0.6], [3.0]], dtype=np.float32)
    ck.eq(quant_keys(k, 2, 4)[:, 0].tolist(), [0.0, 0.0, 1.0, 3.0], "hand: 2-bit grid, scale 1")
    k = np.array([[0.0], [0.5], [1.5], [3.0]], dtype=np.float32)
    ck.eq(quant_keys(k, 2, 4)[:, 0].tolist(), [0.0, 0.0, 2.0, 3.0], "hand: ties to even (0.5->0, 1.5->2)")
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((150, 64)) * (1 + np.arange(64) % 5)).astype(np.float32)
    for bits in (2, 4):
        for axis in (0, 1):
            q = fake_quant_groups(x, bits, 32, axis)
            worst = 0.0
            for g0 in range(0, x.shape[axis], 32):
                blk = x[g0:g0 + 32] if axis == 0 else x[:, g0:g0 + 32]
                qb = q[g0:g0 + 32] if axis == 0 else q[:, g0:g0 + 32]
                scale = (blk.max(axis=axis) - blk.min(axis=axis)) / (2 ** bits - 1)
                err = np.abs(blk.astype(np.float64) - qb).max(axis=axis)
                worst = max(worst, float((err / (scale / 2)).max()))
            ck.check(worst <= 1 + 1e-5, "bound |x - x'| <= scale/2, bits %d axis %d" % (bits, axis), worst)
    # Bytes by hand (head_dim 128, G 32, R 128, 1000 entries): 896*48 + 104*256 + 872*48 + 128*256.
    ck.eq(stored_bytes(1000, 128, 2, 32, 128), 896 * 48 + 104 * 256 + 872 * 48 + 128 * 256, "hand: 2-bit bytes")
    ck.eq(stored_bytes(1000, 128, 4, 32, 128), 896 * 80 + 104 * 256 + 872 * 80 + 128 * 256, "hand: 4-bit bytes")


def kivi_params(spec):
    name, args = kvref.parse_spec(spec)
    assert name == "kivi"
    return int(args.get("bits", 2)), int(args.get("group", 32)), int(args.get("residual", 128))


def eval_positions(n, m, max_q=64):
    count = min(m, max_q)
    return sorted({n + (m - 1 if count == 1 else i * (m - 1) // (count - 1)) for i in range(count)})


def reference_errors(layers, n, m, bits, group, residual):
    errs, recalls = [], []
    for keys, values, queries, qpos in layers:
        index = {int(p): i for i, p in enumerate(qpos)}
        hkv, _, d = keys.shape
        G = queries.shape[0] // hkv
        for h in range(hkv):
            k, v = keys[h].astype(np.float32), values[h].astype(np.float32)
            kq_all, vq_all = quant_keys(k, bits, group), quant_values(v, bits, group)
            for t in eval_positions(n, m):
                s = t  # stored entries; the query's own is in flight
                kq, vq = s // residual * residual, max(0, s - residual)
                kk = np.vstack([kq_all[:kq], k[kq:t + 1]]).astype(np.float64)
                vv = np.vstack([vq_all[:vq], v[vq:t + 1]]).astype(np.float64)
                for g in range(G):
                    q = queries[h * G + g, index[t]].astype(np.float64)
                    def attend(kmat, vmat):
                        z = kmat @ q / np.sqrt(d)
                        p = np.exp(z - z.max())
                        p /= p.sum()
                        return p @ vmat
                    o = attend(k[:t + 1].astype(np.float64), v[:t + 1].astype(np.float64))
                    o2 = attend(kk, vv)
                    errs.append(np.linalg.norm(o2 - o) / np.linalg.norm(o))
                    recalls.append(1.0)
    return np.array(errs), np.array(recalls)


def run(ck, args):
    tag, hq, hkv, d, n, m, chunk = "gqa", 8, 2, 32, 300, 24, 100
    made = kvref.synth_trace(ck, args, tag, hq, hkv, d, n, m, 31)
    if made is None:
        return
    wd, model_ini, trace = made
    layers = kvref.read_layer_arrays(trace)
    specs = ["kivi(bits=2, group=32, residual=64)", "kivi(bits=4, group=16, residual=64)",
             "kivi(bits=2, group=8, residual=128)"]
    for sc_chunk in (None, chunk):
        where = "%s/chunk=%s" % (tag, sc_chunk)
        wl = [("trace", "trace.h5")] + ([("chunk_tokens", sc_chunk)] if sc_chunk else [])
        scen = kvref.write_ini(os.path.join(wd, "kivi_%s.ini" % sc_chunk),
                               [("model", [("preset", model_ini)]), ("workload", wl),
                                ("policy", [("spec", s) for s in specs]), ("sim", [("threads", 2)])])
        out = os.path.join(wd, "out_%s" % sc_chunk)
        kvref.fresh(out)
        ok, msg = kvref.run_kvsim(args.kvsim, ["run", scen, "--out", out], timeout=180)
        if not ck.check(ok, "%s: kvsim run" % where, msg):
            continue
        got = {p["spec"]: p for p in kvref.read_summary(out)["policies"]}
        for spec in specs:
            bits, group, residual = kivi_params(spec)
            r = got.get(spec)
            if not ck.check(r is not None, "%s: %s in summary" % (where, spec), sorted(got)):
                continue
            errs, _ = reference_errors(layers, n, m, bits, group, residual)
            check_compressed_run(ck, r, "%s: %s" % (where, spec), lambda b: stored_bytes(b, d, bits, group, residual),
                                 errs, n, m, sc_chunk or n, d, 2 * hkv)  # 2 layers

if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
