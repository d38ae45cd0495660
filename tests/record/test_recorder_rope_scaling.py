#!/usr/bin/env python3
"""RoPE scaling through the recorder and kvsim (issue 20 §1): a tiny Llama with Llama 3.1's kind of
rope_scaling (type llama3) is recorded with tools/record/record_trace.py --tiny, and this script checks

  - the trace header holds the scaling (rope_scaling_type and its parameters, config.json names);
  - `kvsim inspect` reads it back (its "rope scaling:" line) and `--rope-frequencies` prints the
    frequencies kvsim rotates with, which equal an independent numpy transliteration of Hugging Face
    transformers' src/transformers/modeling_rope_utils.py, function _compute_llama3_parameters
    (`llama3_inv_freq` below, float64 instead of torch float32);
  - the recorded post-RoPE keys and queries equal an independent numpy forward of the checkpoint
    rotated with those scaled frequencies, and not with plain theta^(-2i/d) (the test discriminates);
  - `kvsim run` replays the file with expected_attention (which un-rotates queries with them);
  - the Llama-3.1-8B preset (configs/models/llama-3.1-8b.ini) gives, through `kvsim synth` and
    `kvsim inspect`, the same transliteration's frequencies for head_dim 128, theta 500000, factor 8,
    low/high_freq_factor 1/4, original context 8192: 35 of 64 rotary pairs differ from plain RoPE;
  - a config whose rope_scaling kvsim does not model (yarn) is refused by the recorder.
Needs torch; without it this test FAILS (as tests/record/test_recorder.py does).
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORD = os.path.join(ROOT, "tools", "record")
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, HERE)
import kvref  # noqa: E402

# theta 100, head_dim 16: wavelengths 2 pi * 100^(i/8) = 6.3, 11.2, 19.9, 35.3, 62.8, 111.7, 198.7, 353.3
# tokens; with an original context of 128 and low/high_freq_factor 1/4, pairs 0-2 (< 32) keep their
# frequency, 3-5 (32..128) are blended and 6-7 (> 128) divided by 8: all three regimes occur.
SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 128}
CONFIG = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
              num_hidden_layers=2, vocab_size=256, rope_theta=100.0, rms_norm_eps=1e-5, max_position_embeddings=1024,
              rope_scaling=SCALING)
N_PROMPT, M_GEN, WINDOW = 160, 4, 8


def llama3_inv_freq(head_dim, base, factor, low_freq_factor, high_freq_factor, old_context_len):
    """Transliterated from transformers, src/transformers/modeling_rope_utils.py, _compute_llama3_parameters
    (after _compute_default_rope_parameters), in numpy float64."""
    inv_freq = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float64) / head_dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # wavelen < high_freq_wavelen: do nothing; wavelen > low_freq_wavelen: divide by factor
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # otherwise: interpolate between the two, using a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def inspect(kvsim, path):
    """-> (returncode, stdout, stderr) of `kvsim inspect PATH --rope-frequencies --quiet`."""
    p = subprocess.run([kvsim, "inspect", path, "--rope-frequencies", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def parse_inspect(out):
    """-> (the rope scaling line's text, [inv_freq per pair], [unscaled inv_freq per pair])."""
    scaling, freqs, plain = None, [], []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("rope scaling:"):
            scaling = line[len("rope scaling:"):].strip()
        if line.startswith("rope frequencies"):
            for row in lines[i + 1:]:
                parts = row.split()
                if len(parts) != 4 or not parts[0].isdigit():
                    break
                freqs.append(float(parts[1]))
                plain.append(float(parts[2]))
    return scaling, np.array(freqs), np.array(plain)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    ck = kvref.Checker("record.recorder_rope_scaling")
    try:
        import h5py
        import torch  # noqa: F401
    except ImportError as e:
        ck.check(False, "%s (install python3-torch and python3-h5py; tools/bootstrap.sh does)" % e)
        ck.finish()
    import test_recorder as rec  # the independent numpy Llama forward and helpers
    wd = args.workdir
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)

    want = llama3_inv_freq(16, 100.0, 8.0, 1.0, 4.0, 128)
    plain = 100.0 ** (-np.arange(0, 16, 2) / 16.0)
    ck.eq([int(x) for x in np.isclose(want, plain, rtol=1e-12, atol=0)], [1, 1, 1, 0, 0, 0, 0, 0],
          "tiny config: pairs 0-2 unscaled, 3-7 scaled")
    ck.check(np.allclose(want[6:], plain[6:] / 8, rtol=1e-12), "tiny config: pairs 6-7 divided by 8")

    ckpt, W = rec.make_checkpoint(wd, CONFIG, "ckpt-llama3")
    rng = np.random.default_rng(5)
    prompt = rng.integers(32, 127, size=N_PROMPT)
    ids_path = os.path.join(wd, "prompt_ids.txt")
    with open(ids_path, "w") as f:
        f.write(",".join(str(int(i)) for i in prompt))
    trace = os.path.join(wd, "rec-llama3.h5")
    p = rec.run_recorder("--tiny", ckpt, "--prompt-ids", ids_path, "--out", trace, "--generate", M_GEN,
                         "--window", WINDOW, "--layers", "0,1", "--dtype", "float32", "--threads", 1)
    if not ck.check(p.returncode == 0, "record_trace.py exits 0", p.stderr[-2000:]):
        ck.finish()

    # The header: rope_scaling_* attributes with the config's values and kvsim's types.
    with h5py.File(trace, "r") as f:
        a = f.attrs
        ck.eq(kvref.attr_str(a.get("rope_scaling_type", b"")), "llama3", "header rope_scaling_type")
        for key, value in (("factor", 8.0), ("low_freq_factor", 1.0), ("high_freq_factor", 4.0)):
            ck.eq(float(a.get("rope_scaling_" + key, np.nan)), value, "header rope_scaling_" + key)
        ck.eq(int(a.get("rope_scaling_original_max_position_embeddings", -1)), 128,
              "header rope_scaling_original_max_position_embeddings")
        ck.check(np.issubdtype(a["rope_scaling_original_max_position_embeddings"].dtype, np.integer),
                 "original_max_position_embeddings is an integer attribute")
        tokens = f["requests/0/tokens"][...]
        data = {L: {k: f["requests/0/layer_%d/%s" % (L, k)][...] for k in ("keys", "queries", "query_positions")}
                for L in (0, 1)}

    # kvsim reads it back and rotates with the transliteration's frequencies.
    rc, out, err = inspect(args.kvsim, trace)
    if ck.check(rc == 0, "kvsim inspect --rope-frequencies validates the recorded file", err):
        scaling, got, got_plain = parse_inspect(out)
        ck.eq(scaling, "llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 128): "
              "5 of 8 rotary pairs scaled", "kvsim inspect: rope scaling line")
        ck.eq(len(got), 8, "kvsim inspect: one frequency per rotary pair")
        if len(got) == 8:
            ck.check(np.allclose(got, want, rtol=1e-12, atol=0), "kvsim's scaled frequencies == numpy "
                     "_compute_llama3_parameters", np.c_[got, want].tolist())
            ck.check(np.allclose(got_plain, plain, rtol=1e-12, atol=0), "kvsim's unscaled frequencies == theta^(-2i/d)")

    # The recorded keys/queries are rotated with the scaled frequencies (and not the plain ones).
    layers, _ = rec.forward(W, CONFIG, tokens, inv=want)
    layers_plain, _ = rec.forward(W, CONFIG, tokens)
    for L in (0, 1):
        qpos = data[L]["query_positions"]
        ck.close(rec.rel_err(data[L]["keys"], layers[L]["keys"].transpose(1, 0, 2)), 0.0,
                 "layer %d post-RoPE keys == numpy with llama3 frequencies" % L, abs_=2e-5)
        ck.close(rec.rel_err(data[L]["queries"], layers[L]["queries"][qpos].transpose(1, 0, 2)), 0.0,
                 "layer %d post-RoPE queries == numpy with llama3 frequencies" % L, abs_=2e-5)
        ck.check(rec.rel_err(data[L]["keys"], layers_plain[L]["keys"].transpose(1, 0, 2)) > 1e-2,
                 "layer %d keys differ from plain-RoPE keys (the test discriminates)" % L)

    # kvsim replays it with a policy that un-rotates queries with the model's RoPE.
    ini = os.path.join(wd, "scenario.ini")
    kvref.write_ini(ini, [("workload", [("trace", trace)]),
                          ("policy", [("spec", "expected_attention(budget=0.3, sinks=2, future=16, stats_queries=8)")]),
                          ("sim", [("threads", 1)])])
    ok, msg = kvref.run_kvsim(args.kvsim, ["run", ini, "--out", os.path.join(wd, "run")])
    ck.check(ok, "kvsim run replays the llama3-scaled recording with expected_attention", msg)

    # The Llama-3.1-8B preset through kvsim synth: the transliteration at Llama 3.1's shape.
    synth = os.path.join(wd, "llama31-8b.h5")
    ok, msg = kvref.run_kvsim(args.kvsim, ["synth", "--model", "llama-3.1-8b", "--prompt-tokens", 64,
                                           "--layers", "0", "--out", synth], timeout=300)
    if ck.check(ok, "kvsim synth --model llama-3.1-8b", msg):
        rc, out, err = inspect(args.kvsim, synth)
        scaling, got, got_plain = parse_inspect(out)
        ck.eq(scaling, "llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings "
              "8192): 35 of 64 rotary pairs scaled", "llama-3.1-8b synth: rope scaling line")
        want8b = llama3_inv_freq(128, 500000.0, 8.0, 1.0, 4.0, 8192)
        ck.check(len(got) == 64 and np.allclose(got, want8b, rtol=1e-12, atol=0),
                 "llama-3.1-8b: kvsim's frequencies == numpy _compute_llama3_parameters")
        plain8b = 500000.0 ** (-np.arange(0, 128, 2) / 128.0)
        ck.eq(int((~np.isclose(want8b, plain8b, rtol=1e-12, atol=0)).sum()), 35,
              "llama-3.1-8b: 35 of 64 pairs differ from plain RoPE (numpy)")

    # A rope_scaling kvsim does not model is refused by the recorder, not written.
    sys.path.insert(0, RECORD)
    import record_trace
    for scaling, needle in (({"rope_type": "yarn", "factor": 4.0}, "'yarn' is not supported"),
                            ({"rope_type": "llama3", "factor": 8.0}, "has no 'low_freq_factor'")):
        try:
            record_trace.kvsim_rope_scaling(SimpleNamespace(rope_scaling=scaling))
            ck.check(False, "recorder refuses rope_scaling %r" % scaling)
        except record_trace.RecordError as e:
            ck.check(needle in str(e), "recorder refuses rope_scaling %r" % scaling, str(e))
    ck.eq(record_trace.kvsim_rope_scaling(SimpleNamespace(rope_scaling=None)), {}, "no rope_scaling: no attributes")
    ck.finish()


if __name__ == "__main__":
    main()
