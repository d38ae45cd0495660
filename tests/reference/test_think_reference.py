#!/usr/bin/env python3
"""think (ThinK, Xu et al. 2024, arXiv 2407.21018; NVIDIA/kvpress kvpress/presses/think_press.py):
an independent numpy ThinK against `kvsim run` on a synthetic GQA trace.

Per KV head h after the prompt (n tokens): qn[c] = mean over the group's query heads of the mean over
the last `window` prompt queries of q[c]^2; kn[c] = mean over the prompt keys of k[c]^2; the
floor(head_dim * ratio) channels with the lowest qn * kn (ties: lower channel first) are zeroed in
every prompt key; values and decode keys are untouched. Checked: output error (mean, p95) of the
decode queries attending with the pruned prompt keys, recall 1, and the byte-weighted footprint
and peak_bytes of the rule in policies/policy.h (kept entries at stored bytes, the pass in flight
at full precision): stored key bytes = n (D - pruned) * 2 + (s - n) D * 2 once s >= n.
With prefill=chunk each chunk's keys are pruned once the chunk is done, scored by that chunk alone
(its last `window` queries, its keys), and the pruned class is everything up to the last finished
chunk.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvref  # noqa: E402
from test_kivi_reference import check_compressed_run, eval_positions  # noqa: E402

try:
    import h5py
except ImportError:  # reported by kvref.common_args
    h5py = None


def pruned_channels(keys_h, queries_group, qpos_index, n, window, ratio, begin=0):
    """Channels pruned from the keys of positions [begin, n), scored by that span."""
    d = keys_h.shape[1]
    rows = [qpos_index[t] for t in range(max(begin, n - window), n)]
    qn = np.mean([np.mean(q[rows].astype(np.float64) ** 2, axis=0) for q in queries_group], axis=0)
    kn = np.mean(keys_h[begin:n].astype(np.float64) ** 2, axis=0)
    order = sorted(range(d), key=lambda c: (np.float32(qn[c] * kn[c]), c))
    return sorted(order[:int(np.floor(d * ratio))])


def self_tests(ck):
    # The hand head of tests/policies/think_test.cpp: scores [5, 2, 2, 4.5].
    k = np.array([[1, 2, 0, 1], [1, 2, 0, 1], [1, 0, 2, 1], [1, 0, 2, 1]], dtype=np.float32)
    q = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [3, 1, 1, 0], [1, 1, 1, 3]], dtype=np.float32)
    idx = {t: t for t in range(4)}
    ck.eq(pruned_channels(k, [q], idx, 4, 2, 0.5), [1, 2], "hand: ratio 0.5 prunes channels 1, 2")
    ck.eq(pruned_channels(k, [q], idx, 4, 2, 0.25), [1], "hand: tie goes to the lower channel")
    ck.eq(pruned_channels(k, [q], idx, 4, 1, 0.5), [0, 1], "hand: window 1")
    # Span [2, 4) alone: kn = [1, 0, 4, 1], qn = [5, 1, 1, 4.5] -> scores [5, 0, 4, 4.5]: channels 1, 2.
    ck.eq(pruned_channels(k, [q], idx, 4, 2, 0.5, begin=2), [1, 2], "hand: span [2, 4)")
    # Span [0, 2): window queries rows 0, 1 are zero -> all scores 0, ties to the lower channels.
    ck.eq(pruned_channels(k, [q], idx, 2, 2, 0.5, begin=0), [0, 1], "hand: span [0, 2), zero queries")


def run(ck, args):
    tag, hq, hkv, d, n, m, chunk, window = "gqa", 8, 2, 32, 300, 24, 100, 32
    made = kvref.synth_trace(ck, args, tag, hq, hkv, d, n, m, 41, extra=["--chunk-tokens", chunk, "--window", 40])
    if made is None:
        return
    wd, model_ini, trace = made
    layers = []
    with h5py.File(trace, "r") as f:
        req = f["requests"]["0"]
        for name in sorted(req):
            if name.startswith("layer_"):
                g = req[name]
                layers.append((g["keys"][...], g["values"][...], g["queries"][...], g["query_positions"][...]))
    specs = ["think(ratio=0.5, window=32, prefill=post_fill)", "think(ratio=0.25, window=16, prefill=post_fill)",
             "think(ratio=0.5, window=32, prefill=chunk)", "think(ratio=0.25, window=40, prefill=chunk)"]
    got = kvref.run_policies(ck, args.kvsim, wd, model_ini, specs, chunk, "think")
    if got is None:
        return
    for spec in specs:
        _, a = kvref.parse_spec(spec)
        ratio, window = float(a["ratio"]), int(a["window"])
        spans = [(b, min(b + chunk, n)) for b in range(0, n, chunk)] if a["prefill"] == "chunk" else [(0, n)]
        r = got.get(spec)
        if not ck.check(r is not None, "%s in summary" % spec, sorted(got)):
            continue
        errs = []
        for keys, values, queries, qpos in layers:
            index = {int(p): i for i, p in enumerate(qpos)}
            G = hq // hkv
            for h in range(hkv):
                group = [queries[h * G + g] for g in range(G)]
                kp = keys[h].astype(np.float64)
                for b, e in spans:
                    kp[b:e, pruned_channels(keys[h], group, index, e, window, ratio, begin=b)] = 0.0
                for t in eval_positions(n, m):
                    for g in range(G):
                        q = group[g][index[t]].astype(np.float64)

                        def attend(kmat):
                            z = kmat[:t + 1] @ q / np.sqrt(d)
                            p = np.exp(z - z.max())
                            return (p / p.sum()) @ values[h][:t + 1].astype(np.float64)
                        o = attend(keys[h].astype(np.float64))
                        errs.append(np.linalg.norm(attend(kp) - o) / np.linalg.norm(o))
        pruned = int(np.floor(d * ratio))

        def stored(s):
            done = max([e for _, e in spans if e <= min(s, n)], default=0)  # keys pruned so far
            return done * (2 * d - pruned) * 2 + (s - done) * 2 * d * 2
        check_compressed_run(ck, r, spec, stored, np.array(errs), n, m, chunk, d, 2 * hkv)  # 2 layers

if __name__ == "__main__":
    kvref.main(__doc__, __file__, self_tests, run)
