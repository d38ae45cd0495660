#!/usr/bin/env python3
"""The committed recorded trace tests/data/recorded_tiny.h5 (issue 9; tests/data/PROVENANCE.md).

It comes from a trained network (tools/record/train_tiny.py), so it must show what trained
attention does and kvsim must accept it:
  - `kvsim inspect` validates it; it is a recorded trace of the documented shape;
  - induction: on the repeated passage, some head of the trained model puts most of its attention
    on the tokens after previous occurrences of the current token (the prefix-matching score of
    Olsson et al. 2022, "In-context learning and induction heads"), and, among those, singles out
    the one after the previous occurrence of the current *context* (the unique earlier match of
    the last 12 tokens): at least 5x the mass a uniform choice among the candidates would give,
    while a control target (the same distance shifted by 7) gets little. Computed here in numpy
    from the stored post-RoPE queries and keys (softmax(q k^T / sqrt(d)) over the causal prefix,
    GQA query head h reading KV head h // group) and the stored token ids;
  - (the greedy continuation does NOT copy the passage: this 354K-parameter byte model's
    induction head is not strong enough to override its language prior for 128 greedy bytes;
    docs/recorded.md shows it, and the decode queries are what the fidelity numbers use);
  - `kvsim run configs/scenarios/recorded.ini` runs on it (full, snapkv, streaming, kvzip), full
    recall is 1, and because the decode steps copy a passage that lies farther back than the
    kept count, SnapKV (which scores with the prompt's last window, inside the repeated passage)
    keeps more of the attended entries, and has a smaller output error, than streaming (sinks +
    recent window) keeping as many entries. (The margin is small: most of this model's heads are
    local, and only its induction head reaches back; docs/recorded.md has the numbers.)
Needs only numpy and h5py (no torch, no training).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import kvref  # noqa: E402

TRACE = os.path.join(ROOT, "tests", "data", "recorded_tiny.h5")
SCENARIO = os.path.join(ROOT, "configs", "scenarios", "recorded.ini")
MATCH = 12  # tokens of context that identify the previous occurrence


def previous_occurrences(tokens, positions, k=MATCH):
    """(row, t, j) for stored query rows whose last k tokens occurred exactly once before, ending
    at j < t; the token after that occurrence is j + 1 (the induction target)."""
    tokens = np.asarray(tokens)
    out = []
    for row, t in enumerate(positions):
        if t < k:
            continue
        pattern = tokens[t - k + 1:t + 1]
        ends = [j for j in range(k - 1, t) if np.array_equal(tokens[j - k + 1:j + 1], pattern)]
        if len(ends) == 1 and ends[0] + 1 < t:
            out.append((row, int(t), ends[0]))
    return out


def attention(q, keys, t):
    d = q.shape[-1]
    logits = keys[:t + 1].astype(np.float64) @ q.astype(np.float64) / np.sqrt(d)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    ck = kvref.Checker("record.recorded_trace")
    if kvref.h5py is None:
        ck.check(False, "h5py is not importable by %s (install python3-h5py)" % sys.executable)
        ck.finish()
    if not ck.check(os.path.isfile(TRACE), "committed trace exists: " + TRACE):
        ck.finish()
    ck.check(os.path.getsize(TRACE) <= 3_000_000, "committed trace is small (%d bytes)" % os.path.getsize(TRACE))

    ok, msg = kvref.run_kvsim(args.kvsim, ["inspect", TRACE])
    ck.check(ok, "kvsim inspect validates " + TRACE, msg)

    with kvref.h5py.File(TRACE, "r") as f:
        a = f.attrs
        ck.eq(kvref.attr_str(a["source"]), "recorded", "source attribute")
        hq, hkv = int(a["num_q_heads"]), int(a["num_kv_heads"])
        layers = [int(x) for x in a["traced_layers"]]
        ck.check(hq > hkv, "the model uses GQA (%d query heads, %d KV heads)" % (hq, hkv))
        req = f["requests/0"]
        n, m = int(req.attrs["prompt_tokens"]), int(req.attrs["generated_tokens"])
        tokens = req["tokens"][...]
        ck.eq(len(tokens), n + m, "tokens has n+m entries")
        data = {}
        for L in layers:
            g = req["layer_%d" % L]
            data[L] = {k: g[k][...] for k in ("keys", "queries", "query_positions")}
            ck.check("recon_queries" in g, "layer %d stores recon_queries (KVzip pass)" % L)
    positions = data[layers[0]]["query_positions"]
    group = hq // hkv

    hits = previous_occurrences(tokens, positions)
    ck.check(len(hits) >= 32, "at least 32 stored queries lie in a repeated passage (found %d)" % len(hits))
    delta = {t - j for _, t, j in hits}
    ck.note("repeated passage: %d stored queries, distance(s) to the previous occurrence %s" % (len(hits), sorted(delta)[:5]))

    # Per hit: the prefix-matching candidates k (tokens[k-1] == tokens[t], k <= t), the true target.
    candidates = [[k for k in range(1, t + 1) if tokens[k - 1] == tokens[t]] for _, t, _ in hits]
    best = None
    for L in layers:
        keys, queries = data[L]["keys"], data[L]["queries"]
        for h in range(hq):
            prefix, target, control, share = [], [], [], []
            for (row, t, j), cand in zip(hits, candidates):
                p = attention(queries[h, row], keys[h // group], t)
                prefix.append(p[cand].sum())
                target.append(p[j + 1])
                control.append(p[j + 1 - 7])
                share.append(p[cand].sum() / len(cand))
            r = (float(np.mean(prefix)), L, h, float(np.mean(target)), float(np.mean(control)), float(np.mean(share)))
            print("  layer %d q head %d: prefix-matching %.3f, induction target %.3f (uniform share %.4f), "
                  "control %.3f" % (L, h, r[0], r[3], r[5], r[4]))
            if best is None or r[0] > best[0]:
                best = r
    prefix, L, h, target, control, share = best
    ck.check(prefix > 0.5, "induction: some head puts most of its attention on the tokens after previous "
             "occurrences of the current token (best: layer %d head %d, %.3f)" % (L, h, prefix))
    ck.check(target > 5 * share, "the induction head singles out the previous occurrence of the context: "
             "%.3f on it vs %.4f uniform among the candidates" % (target, share))
    ck.check(control < 0.1, "induction head is specific: control target gets %.3f" % control)

    # kvsim runs the committed scenario on it.
    out = os.path.join(args.workdir, "recorded")
    ok, msg = kvref.run_kvsim(args.kvsim, ["run", SCENARIO, "--out", out])
    if ck.check(ok, "kvsim run configs/scenarios/recorded.ini", msg):
        summary = kvref.read_summary(out)
        names = {p["spec"].split("(")[0] for p in summary["policies"]}
        ck.check({"full", "snapkv", "streaming", "kvzip"} <= names, "summary has full, snapkv, streaming, kvzip",
                 sorted(names))
        full = [p for p in summary["policies"] if p["spec"] == "full"]
        if ck.check(len(full) == 1, "one full-cache baseline"):
            ck.close(full[0]["attention_recall"]["mean"], 1.0, "full cache recall is 1", rel=1e-6)
        # Each SnapKV budget b against the streaming window that keeps as many entries: 4 sinks +
        # window round(b n) + 28 = SnapKV's round(b n) + 32 (its observation window included).
        pairs = 0
        for s in summary["policies"]:
            spec = s["spec"]
            if not spec.startswith("snapkv(budget="):
                continue
            b = float(spec.split("budget=")[1].split(",")[0].rstrip(")"))
            window = int(round(b * n)) + 28
            st = [p for p in summary["policies"] if p["spec"].startswith("streaming(sinks=4, window=%d," % window)]
            if not st:
                continue
            st = st[0]
            pairs += 1
            ck.check(s["attention_recall"]["mean"] > st["attention_recall"]["mean"],
                     "budget %g: retrieval matters: snapkv recall %.3f > streaming recall %.3f"
                     % (b, s["attention_recall"]["mean"], st["attention_recall"]["mean"]))
            ck.check(s["output_error"]["mean"] < st["output_error"]["mean"],
                     "budget %g: snapkv output error %.3f < streaming %.3f"
                     % (b, s["output_error"]["mean"], st["output_error"]["mean"]))
        ck.check(pairs >= 1, "the scenario pairs snapkv with a streaming window of the same kept count")
    ck.finish()


if __name__ == "__main__":
    main()
