#!/usr/bin/env python3
"""tools/record/record_trace.py against an independent numpy recomputation (issue 9).

A small random Llama-architecture checkpoint (tools/record/llama_tiny.py, 3 layers, 4 query heads
sharing 2 KV heads, head_dim 16, rope_theta 100 so RoPE matters at every distance) is recorded with
the --tiny front end. This script then recomputes the whole model from the checkpoint's weights in
numpy (float64), written from the Llama definition (RMSNorm, RoPE rotate_half: dim i pairs with
i + d/2, GQA: query head h reads KV head h // (q_heads / kv_heads), SwiGLU), not from the
recorder's or the model's code, and checks:
  - post-RoPE keys and values at every position, post-RoPE queries at every stored position, of
    the traced layers (0 and 2: layer 2 also depends on untraced layer 1);
  - the stored query positions (last window + every decode step), tokens, greedy continuation;
  - the recon_queries of the context-reconstruction pass (KVzip), evenly subsampled;
  - that the GQA grouping matters: the attention output computed from the file with h // group
    matches the numpy forward, the wrong grouping h % kv_heads does not;
  - `kvsim inspect` validates the file and `kvsim run` replays it;
  - a missing layer index and a prompt shorter than the window fail with status 2, one line on
    stderr, and no file left behind; --hf without transformers says so.
Needs torch (python3-torch, installed by tools/bootstrap.sh): without it this test FAILS.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORD = os.path.join(ROOT, "tools", "record")
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import kvref  # noqa: E402

try:
    import h5py
except ImportError:
    h5py = None

CONFIG = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
              num_hidden_layers=3, vocab_size=256, rope_theta=100.0, rms_norm_eps=1e-5)
N_PROMPT, M_GEN, WINDOW = 90, 6, 8
RECON_FIRST = b"\n\nRepeat the previous context exactly."


# ---- independent numpy Llama forward ------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, theta, inv=None):
    """x [T, H, d]; dim i pairs with i + d/2; angle = position * inv[i], inv[i] = theta^(-2i/d) unless given."""
    d = x.shape[-1]
    half = d // 2
    if inv is None:
        inv = theta ** (-2.0 * np.arange(half) / d)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def forward(W, cfg, ids, kv_of=lambda h, hq, hkv: h // (hq // hkv), inv=None):
    """Full causal forward of token ids (positions 0..T-1). Returns per layer the post-RoPE keys,
    values [T, Hkv, d], post-RoPE queries [T, Hq, d], attention output [T, Hq*d], and logits.
    inv: the RoPE frequencies (default: plain theta^(-2i/d))."""
    hq, hkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(ids)
    pos = np.arange(T)
    x = W["model.embed_tokens.weight"][np.asarray(ids)]
    layers = []
    mask = np.tril(np.ones((T, T), dtype=bool))
    for L in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % L
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = rope((h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, hq, d), pos, theta, inv)
        k = rope((h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, hkv, d), pos, theta, inv)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, hkv, d)
        out = np.zeros((T, hq, d))
        for g in range(hq):
            kv = kv_of(g, hq, hkv)
            logits = q[:, g, :] @ k[:, kv, :].T / np.sqrt(d)
            logits = np.where(mask, logits, -np.inf)
            pr = np.exp(logits - logits.max(axis=1, keepdims=True))
            pr /= pr.sum(axis=1, keepdims=True)
            out[:, g, :] = pr @ v[:, kv, :]
        out = out.reshape(T, hq * d)
        x = x + out @ W[p + "self_attn.o_proj.weight"].T
        h2 = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = h2 @ W[p + "mlp.gate_proj.weight"].T
        up = h2 @ W[p + "mlp.up_proj.weight"].T
        x = x + ((gate / (1.0 + np.exp(-gate))) * up) @ W[p + "mlp.down_proj.weight"].T
        layers.append({"keys": k, "values": v, "queries": q, "attn": out})
    logits = rms_norm(x, W["model.norm.weight"], eps) @ W["lm_head.weight"].T
    return layers, logits


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)) /
                 max(np.linalg.norm(np.asarray(b, np.float64)), 1e-30))


# ---- helpers ------------------------------------------------------------------------------------

def run_recorder(*argv, timeout=300):
    cmd = [sys.executable, os.path.join(RECORD, "record_trace.py"), "--quiet"] + [str(a) for a in argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def make_checkpoint(wd, config=CONFIG, name="ckpt"):
    """A random checkpoint written by llama_tiny (torch); returns its weights as numpy float64."""
    import torch
    sys.path.insert(0, RECORD)
    from llama_tiny import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(7)
    model = LlamaForCausalLM(LlamaConfig(**config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.35)
    ckpt = os.path.join(wd, name)
    model.save_pretrained(ckpt)
    state = torch.load(os.path.join(ckpt, "pytorch_model.bin"), map_location="cpu")
    return ckpt, {k: v.double().numpy() for k, v in state.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    ck = kvref.Checker("record.recorder")
    try:
        import torch  # noqa: F401
    except ImportError:
        ck.check(False, "torch is not importable by %s: install python3-torch (tools/bootstrap.sh does); "
                 "the recorder tests need it" % sys.executable)
        ck.finish()
    if h5py is None:
        ck.check(False, "h5py is not importable by %s (install python3-h5py)" % sys.executable)
        ck.finish()
    wd = args.workdir
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)

    ckpt, W = make_checkpoint(wd)
    rng = np.random.default_rng(3)
    prompt = rng.integers(32, 127, size=N_PROMPT)
    ids_path = os.path.join(wd, "prompt_ids.txt")
    with open(ids_path, "w") as f:
        f.write(",".join(str(int(i)) for i in prompt))
    trace = os.path.join(wd, "rec.h5")
    t0 = time.time()
    p = run_recorder("--tiny", ckpt, "--prompt-ids", ids_path, "--out", trace, "--generate", M_GEN,
                     "--window", WINDOW, "--layers", "0,2", "--dtype", "float32", "--recon",
                     "--recon-max-queries", 40, "--recon-chunk-tokens", 4096, "--threads", 1)
    if not ck.check(p.returncode == 0, "record_trace.py exits 0", p.stderr[-2000:]):
        ck.finish()
    ck.note("recorded in %.1f s" % (time.time() - t0))

    with h5py.File(trace, "r") as f:
        a = f.attrs
        ck.eq(kvref.attr_str(a["format"]), "kvsim-trace", "format attribute")
        ck.eq(int(a["version"]), 1, "version attribute")
        ck.eq(kvref.attr_str(a["source"]), "recorded", "source attribute")
        for key, want in (("num_layers", 3), ("num_q_heads", 4), ("num_kv_heads", 2), ("head_dim", 16)):
            ck.eq(int(a[key]), want, "root attribute " + key)
        ck.close(float(a["rope_theta"]), 100.0, "rope_theta from the config")
        ck.eq(list(a["traced_layers"]), [0, 2], "traced_layers")
        req = f["requests/0"]
        n, m = int(req.attrs["prompt_tokens"]), int(req.attrs["generated_tokens"])
        ck.eq((n, m), (N_PROMPT, M_GEN), "prompt_tokens, generated_tokens")
        tokens = req["tokens"][...]
        ck.eq(tokens.dtype, np.int32, "tokens are int32")
        ck.eq(list(tokens[:n]), [int(i) for i in prompt], "prompt tokens stored")
        ck.check("layer_1" not in req, "untraced layer 1 has no group")
        ck.eq(int(a["version_minor"]), 1, "version_minor attribute (format 1.1)")
        data = {L: {k: req["layer_%d" % L][k][...] for k in ("keys", "values", "queries", "query_positions",
                                                             "recon_queries", "recon_keys", "recon_passes",
                                                             "recon_query_rows")} for L in (0, 2)}

    qpos = data[0]["query_positions"]
    ck.eq(list(qpos), list(range(N_PROMPT - WINDOW, N_PROMPT + M_GEN)), "query positions: last window + every decode step")

    layers, logits = forward(W, CONFIG, tokens)
    # The continuation is greedy: argmax of the logits at the position before each generated token.
    for s in range(m):
        row = logits[n - 1 + s]
        top2 = np.sort(row)[-2:]
        if top2[1] - top2[0] > 1e-6:
            ck.eq(int(tokens[n + s]), int(np.argmax(row)), "generated token %d is the greedy argmax" % s)
    for L in (0, 2):
        ref = layers[L]
        got = data[L]
        ck.eq(got["keys"].shape, (2, n + m, 16), "layer %d keys shape [kv_heads, n+m, d]" % L)
        ck.eq(got["queries"].shape, (4, len(qpos), 16), "layer %d queries shape [q_heads, T_q, d]" % L)
        ck.close(rel_err(got["keys"], ref["keys"].transpose(1, 0, 2)), 0.0, "layer %d post-RoPE keys == numpy" % L,
                 abs_=2e-5)
        ck.close(rel_err(got["values"], ref["values"].transpose(1, 0, 2)), 0.0, "layer %d values == numpy" % L,
                 abs_=2e-5)
        ck.close(rel_err(got["queries"], ref["queries"][qpos].transpose(1, 0, 2)), 0.0,
                 "layer %d post-RoPE queries == numpy" % L, abs_=2e-5)
        # Single positions, spelled out (first, middle and last key; first and last stored query).
        for t in (0, (n + m) // 2, n + m - 1):
            ck.close(rel_err(got["keys"][:, t, :], ref["keys"][t]), 0.0, "layer %d key at position %d" % (L, t), abs_=2e-5)
        for row in (0, len(qpos) - 1):
            ck.close(rel_err(got["queries"][:, row, :], ref["queries"][qpos[row]]), 0.0,
                     "layer %d query at position %d" % (L, qpos[row]), abs_=2e-5)
        # The file holds rotated keys: un-rotating the reference (RoPE at -t) does not match it.
        pre = rope(ref["keys"], -np.arange(n + m), 100.0).transpose(1, 0, 2)
        ck.check(rel_err(got["keys"][:, 1:, :], pre[:, 1:, :]) > 1e-2,
                 "layer %d keys are not the pre-RoPE keys (RoPE applied)" % L)

    # GQA grouping: attention from the file with h // group reproduces the numpy forward's attention
    # output; h % kv_heads (a plausible wrong grouping) does not.
    d = 16
    for L in (0, 2):
        got = data[L]
        for grouping, kv_of, should_match in (("h // group", lambda h: h // 2, True), ("h % kv_heads", lambda h: h % 2, False)):
            errs = []
            for row in (0, len(qpos) - 1):
                t = qpos[row]
                out = []
                for h in range(4):
                    k = got["keys"][kv_of(h), :t + 1].astype(np.float64)
                    lg = k @ got["queries"][h, row].astype(np.float64) / np.sqrt(d)
                    pr = np.exp(lg - lg.max())
                    pr /= pr.sum()
                    out.append(pr @ got["values"][kv_of(h), :t + 1])
                errs.append(rel_err(np.concatenate(out), layers[L]["attn"][t]))
            if should_match:
                ck.check(max(errs) < 1e-4, "layer %d: attention with GQA grouping %s matches the model" % (L, grouping), errs)
            else:
                ck.check(min(errs) > 1e-2, "layer %d: wrong GQA grouping %s does not match (test discriminates)"
                         % (L, grouping), errs)

    # Reconstruction queries: numpy forward of prompt + repeat ids, queries at n + i, subsampled.
    # One pass (chunk 4096 > n) re-reading the context [4, n) after the 4 sink tokens (KVzip's
    # system prompt); its own keys are those of the same forward at n + i.
    repeat = list(RECON_FIRST) + list(b"\n") + [int(i) for i in prompt[4:]]
    layers_r, _ = forward(W, CONFIG, list(prompt) + repeat)
    keep = np.unique(np.round(np.linspace(0, len(repeat) - 1, 40)).astype(np.int64))
    for L in (0, 2):
        ck.eq(data[L]["recon_passes"].tolist(), [[4, n, 0, len(repeat)]], "layer %d recon_passes (one pass)" % L)
        ck.eq(data[L]["recon_query_rows"].tolist(), keep.tolist(), "layer %d recon_query_rows" % L)
        got = data[L]["recon_keys"]
        ck.eq(got.shape, (2, len(repeat), 16), "layer %d recon_keys shape [kv_heads, R, d]" % L)
        if got.shape == (2, len(repeat), 16):
            ck.close(rel_err(got, layers_r[L]["keys"][n + np.arange(len(repeat))].transpose(1, 0, 2)), 0.0,
                     "layer %d recon_keys == numpy keys of the repeat pass" % L, abs_=2e-5)
    for L in (0, 2):
        got = data[L]["recon_queries"]
        ck.eq(got.shape, (4, len(keep), 16), "layer %d recon_queries shape [q_heads, T_r, d]" % L)
        if got.shape == (4, len(keep), 16):
            ck.close(rel_err(got, layers_r[L]["queries"][n + keep].transpose(1, 0, 2)), 0.0,
                     "layer %d recon_queries == numpy queries of the repeat pass" % L, abs_=2e-5)

    # kvsim validates and replays the recorded file.
    ok, msg = kvref.run_kvsim(args.kvsim, ["inspect", trace])
    ck.check(ok, "kvsim inspect validates the recorded file", msg)
    ini = os.path.join(wd, "scenario.ini")
    kvref.write_ini(ini, [("workload", [("trace", trace)]),
                          ("policy", [("spec", "snapkv(budget=0.3, window=8)"), ("spec", "streaming(sinks=4, window=16)")]),
                          ("sim", [("threads", 1)])])
    out = os.path.join(wd, "run")
    ok, msg = kvref.run_kvsim(args.kvsim, ["run", ini, "--out", out])
    if ck.check(ok, "kvsim run replays the recorded file", msg):
        summary = kvref.read_summary(out)
        specs = [p["spec"] for p in summary["policies"]]
        ck.eq(len(specs), 3, "summary has full + 2 policies")
        full = summary["policies"][0]
        ck.close(full["attention_recall"]["mean"], 1.0, "full cache recall is 1 on the recorded trace", rel=1e-6)

    # Bad input: one line on stderr, status 2, no file left behind.
    def expect_error(what, argv, needle):
        bad = os.path.join(wd, "bad.h5")
        p = run_recorder("--tiny", ckpt, "--out", bad, *argv)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        ck.eq(p.returncode, 2, what + ": exit status 2")
        ck.check(len(lines) == 1 and needle in lines[0], what + ": one line naming the problem (%r)" % needle, p.stderr)
        leftovers = [x for x in os.listdir(wd) if x.startswith("bad.h5")]
        ck.check(not leftovers, what + ": no output left behind", leftovers)

    expect_error("missing layer index", ["--prompt-ids", ids_path, "--layers", "0,3"], "--layers: layer 3 is out of range [0, 3)")
    expect_error("prompt shorter than the window", ["--prompt-ids", ids_path, "--window", str(N_PROMPT + 1)],
                 "prompt has %d tokens, fewer than --window %d" % (N_PROMPT, N_PROMPT + 1))
    expect_error("bad layer list", ["--prompt-ids", ids_path, "--layers", "x"], "--layers: 'x'")
    expect_error("missing checkpoint", ["--prompt-ids", ids_path, "--tiny", os.path.join(wd, "nope")], "config.json: missing")
    try:
        import transformers  # noqa: F401
        have_transformers = True
    except ImportError:
        have_transformers = False
    if not have_transformers:
        bad = os.path.join(wd, "bad.h5")
        p = run_recorder("--hf", "some/model", "--prompt-ids", ids_path, "--out", bad)
        ck.check(p.returncode == 2 and "needs the transformers package" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
                 "--hf without transformers: status 2 and one clear line", p.stderr)
    ck.finish()


if __name__ == "__main__":
    main()
