#!/usr/bin/env python3
"""Records an attention trace (kvsim HDF5 format v1, ../shared/DESIGN.md §3) from a causal LM.

    record_trace.py (--hf MODEL_ID_OR_DIR | --tiny CHECKPOINT_DIR)
                    (--prompt-file TEXT | --prompt-ids IDS) --out TRACE.h5 [options]

What it does, in three passes over the model (torch.no_grad, batch 1):
  1. greedy generation of --generate m tokens after the n prompt tokens (with the KV cache);
  2. one forward over all n+m tokens with hooks on the traced layers' attention modules:
     forward hooks on self_attn.q_proj / k_proj / v_proj (or q_norm / k_norm where the model has
     them) capture the pre-RoPE projections; the recorder applies RoPE with the model's own
     inv_freq (and attention_scaling) -- rotate_half convention, dim i pairs with i + d/2, as
     kvsim and transformers' Llama do -- and, when self_attn's forward hook fires, the layer is
     complete: its keys [kv_heads, n+m, d], values, queries [q_heads, T_q, d] at query_positions
     are checked and written to the file and dropped from memory. Only one layer is ever held in
     host memory. A check (on by default) recomputes softmax(q k^T / sqrt(d)) v for two stored
     queries from the captured tensors and compares it with the model's real attention output
     (the input of o_proj): a model whose attention differs (other RoPE variant, scaling,
     sliding window) fails loudly instead of writing a wrong trace;
  3. optionally (--recon) KVzip's context-reconstruction pass (snu-mllab/KVzip model/wrapper.py
     self_task/scoring): after the prompt's KV cache, for each chunk of --recon-chunk-tokens of the
     context [--recon-sink-tokens, n) the model is fed "\\n\\nRepeat the previous context exactly."
     + suffix + the chunk (later chunks: "...starting with" + the previous chunk's last 8 ids), each
     pass on the prompt's cache alone. The post-RoPE queries of those repeat tokens go to
     layer_<L>/recon_queries [q_heads, T_r, d], T_r evenly subsampled to --recon-max-queries; the
     post-RoPE keys of every repeat token to layer_<L>/recon_keys [kv_heads, R, d]; each pass's
     (context begin, end, first and end row of its tokens in recon_keys) to layer_<L>/recon_passes
     [P, 4]; and each stored query's recon_keys row to layer_<L>/recon_query_rows [T_r] (trace
     format 1.1: what kvsim's kvzip scores each chunk with).

Stored query positions (sorted): the last --window prompt positions, every decode position
n..n+m-1 (or --decode-queries K of them, evenly spaced as kvsim's [sim] fidelity_queries = K picks
them), the last --window positions before every --chunk-tokens boundary (for chunked SnapKV), or
every prompt position with --all-prompt-queries (exact H2O/Compactor).

Errors (bad layer index, prompt shorter than the window, float16 overflow, ...) exit with status 2
and one line on stderr. The file is written to OUT.tmp.<pid> and renamed when complete.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

FORMAT = "kvsim-trace"
VERSION = 1
VERSION_MINOR = 1  # 1.1: recon_passes, recon_keys, recon_query_rows
RECON_FIRST = "\n\nRepeat the previous context exactly."
RECON_NEXT = "\n\nRepeat the part of the previous context exactly, starting with"
RECON_POSTFIX_TOKENS = 8  # KVzip's prev_postfix_size
FLOAT16_MAX = 65504.0


class RecordError(Exception):
    """Bad input or an unsupported model: reported as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="record_trace.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", metavar="MODEL", help="Hugging Face model id or directory (needs transformers)")
    src.add_argument("--tiny", metavar="DIR", help="checkpoint of tools/record/llama_tiny.py (config.json + pytorch_model.bin)")
    prompt = ap.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt-file", help="prompt text (UTF-8), tokenized by the model's tokenizer")
    prompt.add_argument("--prompt-ids", help="prompt token ids: whitespace/comma separated integers, or a .npy file")
    ap.add_argument("--prompt-tokens", type=int, default=0, help="use exactly the first N prompt tokens (0: all)")
    ap.add_argument("--out", required=True, help="trace file to write (.h5)")
    ap.add_argument("--generate", type=int, default=64, help="tokens m to generate greedily (default 64)")
    ap.add_argument("--window", type=int, default=64, help="last prompt positions whose queries are stored (default 64)")
    ap.add_argument("--decode-queries", type=int, default=0,
                    help="store only K evenly spaced decode queries (kvsim [sim] fidelity_queries = K); 0: all m")
    ap.add_argument("--chunk-tokens", type=int, default=0,
                    help="also store the last --window queries before every multiple of C (chunked prefill scoring)")
    ap.add_argument("--all-prompt-queries", action="store_true", help="store the query of every prompt position")
    ap.add_argument("--layers", default="all", help="traced layers: all, or e.g. 0,8,16 or 0-3 (default all)")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored K/V/Q type")
    ap.add_argument("--gzip", type=int, default=0, metavar="LEVEL", help="gzip level 1-9 (+ shuffle); 0: none")
    ap.add_argument("--kv-bits", type=int, default=16, help="root attribute kv_bits: bits per K/V element served (16)")
    ap.add_argument("--recon", action="store_true", help="record KVzip's context-reconstruction queries")
    ap.add_argument("--recon-max-queries", type=int, default=1024, help="cap on T_r (even subsampling; 0: no cap)")
    ap.add_argument("--recon-chunk-tokens", type=int, default=2000,
                    help="context chunk per repeat pass (KVzip self_task: 2000; kvpress: 2048)")
    ap.add_argument("--recon-sink-tokens", type=int, default=4,
                    help="leading prompt tokens not re-read (KVzip's system prompt; kvsim kvzip sinks=4)")
    ap.add_argument("--recon-suffix", default="\n",
                    help="text between the repeat instruction and the context (an instruct model's assistant header)")
    ap.add_argument("--request-id", default="0")
    ap.add_argument("--model-name", help="root attribute `model` (default: the model's name or directory)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--torch-dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                    help="--hf weights dtype (default: bfloat16 on GPU, float32 on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-verify", action="store_true", help="skip the attention-output check")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def parse_layers(text, num_layers):
    if text.strip() == "all":
        return list(range(num_layers))
    layers = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
        except ValueError:
            raise RecordError("--layers: '%s' is not a layer index or range (expected e.g. 0,8,16 or 0-3 or all)" % part)
    for layer in sorted(layers):
        if layer < 0 or layer >= num_layers:
            raise RecordError("--layers: layer %d is out of range [0, %d) (the model has %d layers)"
                              % (layer, num_layers, num_layers))
    return sorted(layers)


def read_prompt_ids(args, backend):
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise RecordError("--prompt-file %s: %s" % (args.prompt_file, e.strerror or e))
        ids = backend.encode(text)
    else:
        path = args.prompt_ids
        try:
            if path.endswith(".npy"):
                import numpy as np
                ids = [int(x) for x in np.load(path).reshape(-1)]
            else:
                with open(path) as f:
                    ids = [int(x) for x in f.read().replace(",", " ").split()]
        except (OSError, ValueError) as e:
            raise RecordError("--prompt-ids %s: %s" % (path, getattr(e, "strerror", None) or e))
        bad = [i for i in ids if i < 0 or i >= backend.vocab_size]
        if bad:
            raise RecordError("--prompt-ids %s: token id %d is out of range [0, vocab_size=%d)" % (path, bad[0], backend.vocab_size))
    if args.prompt_tokens:
        if len(ids) < args.prompt_tokens:
            raise RecordError("prompt has %d tokens, fewer than --prompt-tokens %d" % (len(ids), args.prompt_tokens))
        ids = ids[:args.prompt_tokens]
    return ids


def query_positions(n, m, args):
    """Sorted stored query positions (see the module docstring)."""
    w = args.window
    if w < 1:
        raise RecordError("--window must be >= 1, got %d" % w)
    if n < w:
        raise RecordError("prompt has %d tokens, fewer than --window %d (the stored prompt window)" % (n, w))
    positions = set(range(n - w, n))
    if args.chunk_tokens:
        if args.chunk_tokens < 1:
            raise RecordError("--chunk-tokens must be >= 1")
        for end in range(args.chunk_tokens, n, args.chunk_tokens):
            positions.update(range(max(0, end - w), end))
    if args.all_prompt_queries:
        positions.update(range(n))
    k = args.decode_queries
    if k < 0:
        raise RecordError("--decode-queries must be >= 0")
    if k and k < m:
        # The steps kvsim's evaluation_positions picks for [sim] fidelity_queries = k.
        steps = {m - 1} if k == 1 else {(i * (m - 1)) // (k - 1) for i in range(k)}
    else:
        steps = range(m)
    positions.update(n + s for s in steps)
    return sorted(positions)


# ---------------------------------------------------------------------------------------------
# Model front ends
# ---------------------------------------------------------------------------------------------

class Backend:
    """What the recorder needs from a model: the base decoder (returns last_hidden_state and
    past_key_values), lm_head, the attention modules per layer, RoPE inv_freq, and a tokenizer."""

    def __init__(self, model, name, encode, decode, device):
        import torch
        self.model = model
        self.base = model.model
        self.lm_head = model.lm_head
        self.config = model.config
        self.name = name
        self.encode = encode
        self.decode = decode
        self.device = device
        c = model.config
        self.num_layers = int(c.num_hidden_layers)
        self.num_q_heads = int(c.num_attention_heads)
        self.num_kv_heads = int(getattr(c, "num_key_value_heads", None) or self.num_q_heads)
        self.head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
        self.rope_theta = float(getattr(c, "rope_theta", 10000.0))
        self.vocab_size = int(c.vocab_size)
        self.attention = [layer.self_attn for layer in self.base.layers]
        if len(self.attention) != self.num_layers:
            raise RecordError("model has %d decoder layers but config.num_hidden_layers is %d"
                              % (len(self.attention), self.num_layers))
        rotary = getattr(self.base, "rotary_emb", None) or getattr(self.attention[0], "rotary_emb", None)
        if rotary is not None and getattr(rotary, "inv_freq", None) is not None:
            self.inv_freq = rotary.inv_freq.detach().to(device=device, dtype=torch.float32)
            self.attention_scaling = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)
        else:
            self.inv_freq = default_inv_freq(c, self.head_dim).to(device)
            self.attention_scaling = 1.0
        if self.inv_freq.numel() != self.head_dim // 2:
            raise RecordError("rotary inv_freq has %d entries; expected head_dim/2 = %d (partial RoPE is not supported)"
                              % (self.inv_freq.numel(), self.head_dim // 2))
        # The root attributes kvsim un-rotates queries and keys with (expected_attention, compactor)
        # must describe the RoPE the model applies: refuse a model whose rotary frequencies differ
        # from those its config's rope_theta and rope_scaling give.
        self.rope_scaling = kvsim_rope_scaling(c)
        expected = default_inv_freq(c, self.head_dim).to(self.inv_freq.device)
        err = float(((self.inv_freq.double() - expected.double()).abs() / expected.double()).max())
        if err > 1e-4:
            raise RecordError("the model's rotary inv_freq differs from its config's rope_theta/rope_scaling (relative "
                              "error %.3g); kvsim would rotate with the config's frequencies" % err)

    def root_attributes(self):
        c = self.config
        extra = {}
        for key in ("hidden_size", "intermediate_size", "vocab_size", "max_position_embeddings", "rms_norm_eps"):
            if getattr(c, key, None) is not None:
                extra["model_" + key] = getattr(c, key)
        scaling = getattr(c, "rope_scaling", None)
        if scaling:
            extra["model_rope_scaling"] = json.dumps(scaling, sort_keys=True)
        return extra


def rope_scaling_kind(config):
    """The config's rope_scaling type ("default" when it has none)."""
    scaling = getattr(config, "rope_scaling", None) or {}
    return scaling.get("rope_type", scaling.get("type", "default")) or "default"


def kvsim_rope_scaling(config):
    """The config's rope_scaling as kvsim's root attributes (../shared/DESIGN.md §3; absent: none):
    rope_scaling_type and its parameters under their config.json names. kvsim models none, linear and
    llama3; any other type is refused here, before the model runs, rather than written to a trace
    whose RoPE kvsim would get wrong."""
    import numpy as np
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = rope_scaling_kind(config)
    if kind == "default":
        return {}
    needs = {"linear": ("factor",),
             "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
    if kind not in needs:
        raise RecordError("rope_scaling type '%s' is not supported by kvsim's trace format (none, linear, llama3)" % kind)
    attrs = {"rope_scaling_type": kind}
    for key in needs[kind]:
        if scaling.get(key) is None:
            raise RecordError("rope_scaling of type '%s' has no '%s'" % (kind, key))
        value = scaling[key]
        attrs["rope_scaling_" + key] = np.int64(value) if key == "original_max_position_embeddings" else np.float64(value)
    return attrs


def default_inv_freq(config, head_dim):
    """inv_freq from the config (when the model exposes none, and to check the one it exposes):
    plain RoPE, linear scaling or Llama 3's scaling, as transformers' modeling_rope_utils.py."""
    import math
    import torch
    theta = float(getattr(config, "rope_theta", 10000.0))
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = rope_scaling_kind(config)
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "llama3":
        factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)
        mid = (wavelen <= old / lo) & (wavelen >= old / hi)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    elif kind != "default":
        raise RecordError("rope_scaling type '%s' is not supported without the model's rotary_emb.inv_freq" % kind)
    return inv.to(torch.float32)


def load_tiny(path, device):
    sys.path.insert(0, HERE)
    from llama_tiny import LlamaForCausalLM, load_tokenizer
    try:
        model = LlamaForCausalLM.from_pretrained(path)
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, KeyError) as e:
        raise RecordError("--tiny %s: %s" % (path, str(e).splitlines()[0]))
    model.to(device)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise RecordError("--tiny %s: the tokenizer has %d tokens but vocab_size is %d"
                          % (path, tokenizer.vocab_size, model.config.vocab_size))
    name = os.path.basename(os.path.normpath(path))
    return Backend(model, name, tokenizer.encode, tokenizer.decode, device)


def load_hf(name, device, torch_dtype):
    try:
        import transformers  # noqa: F401  (imported lazily: only this front end needs it)
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise RecordError("--hf needs the transformers package, which is not installed "
                          "(pip install transformers accelerate; or use --tiny CHECKPOINT)")
    import torch
    if torch_dtype == "auto":
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, torch_dtype)
    kwargs = {"torch_dtype": dtype}
    try:
        model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="sdpa", **kwargs)
    except (TypeError, ValueError):
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    model.to(device)
    model.eval()
    if not hasattr(model, "model") or not hasattr(model.model, "layers") or not hasattr(model, "lm_head"):
        raise RecordError("--hf %s: expected a decoder with model.layers[i].self_attn and lm_head (Llama-style)" % name)
    tokenizer = AutoTokenizer.from_pretrained(name)

    def encode(text):
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])

    backend = Backend(model, os.path.basename(os.path.normpath(getattr(model.config, "_name_or_path", "") or name)),
                      encode, tokenizer.decode, device)
    backend.encode_plain = lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return backend


# ---------------------------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------------------------

def rotate(x, positions, inv_freq, scaling):
    """RoPE (rotate_half: dim i pairs with i + d/2) of x [T, H, d] at positions [T], float32."""
    import torch
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    cos = torch.cat((freqs.cos(), freqs.cos()), dim=-1)[:, None, :] * scaling
    sin = torch.cat((freqs.sin(), freqs.sin()), dim=-1)[:, None, :] * scaling
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class Recorder:
    """Hooks on the traced layers' attention modules; a pass sets `mode` and what to keep."""

    def __init__(self, backend, layers):
        self.b = backend
        self.layers = layers
        self.mode = None          # None | "capture" | "recon"
        self.on_layer_done = None
        self.rows = None          # capture: query rows to keep; recon: rows of this pass to keep
        self.positions = None     # absolute positions of the tokens of the current pass
        self.verify_rows = None   # capture: rows of the attention output to keep for the check
        self.store = {}
        self.handles = []
        for layer in layers:
            attn = backend.attention[layer]
            q_mod = getattr(attn, "q_norm", None) or attn.q_proj
            k_mod = getattr(attn, "k_norm", None) or attn.k_proj
            for name, mod in (("q", q_mod), ("k", k_mod), ("v", attn.v_proj)):
                self.handles.append(mod.register_forward_hook(self._grab(layer, name)))
            self.handles.append(attn.o_proj.register_forward_pre_hook(self._grab_output(layer)))
            self.handles.append(attn.register_forward_hook(self._done(layer)))

    def remove(self):
        for h in self.handles:
            h.remove()

    def _heads(self, name):
        return self.b.num_q_heads if name == "q" else self.b.num_kv_heads

    def _grab(self, layer, name):
        def hook(module, inputs, output):
            if self.mode is None or (self.mode == "recon" and name == "v"):
                return
            out = output[0] if isinstance(output, tuple) else output
            if out.shape[0] != 1:
                raise RecordError("batch size must be 1")
            x = out.reshape(out.shape[1], self._heads(name), self.b.head_dim)
            if name == "q":
                x = x.index_select(0, self.rows)  # recon: every repeat token's key is kept
            self.store[(layer, name)] = x.detach().float()
        return hook

    def _grab_output(self, layer):
        def hook(module, inputs):
            if self.mode == "capture" and self.verify_rows is not None:
                x = inputs[0]
                self.store[(layer, "o")] = x.reshape(x.shape[1], -1).index_select(0, self.verify_rows).detach().float()
        return hook

    def _done(self, layer):
        def hook(module, inputs, output):
            if self.mode is None:
                return
            got = {name: self.store.pop((layer, name), None) for name in ("q", "k", "v", "o")}
            # The reconstruction pass rotates its own keys too (recon_keys), so it needs k as capture does.
            if got["q"] is None or got["k"] is None or (self.mode == "capture" and got["v"] is None):
                raise RecordError("layer %d: the q/k/v projection hooks did not fire (unsupported attention module %s)"
                                  % (layer, type(module).__name__))
            self.on_layer_done(layer, got)
        return hook


def greedy_generate(backend, prompt_ids, m, log):
    """m greedy tokens after the prompt (KV cache), token ids as a list."""
    import torch
    b = backend
    ids = torch.tensor([prompt_ids], device=b.device)
    out = b.base(input_ids=ids, use_cache=True)
    past = out.past_key_values
    generated = []
    for step in range(m):
        logits = b.lm_head(out.last_hidden_state[:, -1, :]).float()
        token = int(torch.argmax(logits, dim=-1)[0])
        generated.append(token)
        if step + 1 == m:
            break
        out = b.base(input_ids=torch.tensor([[token]], device=b.device), past_key_values=past, use_cache=True)
        past = out.past_key_values
    log("generated %d tokens" % len(generated))
    return generated


def crop_cache(past, n):
    """The prompt's KV cache (first n positions) from a cache that grew past it."""
    if hasattr(past, "crop"):
        past.crop(n)
        return past
    return tuple((k[:, :, :n], v[:, :, :n]) + tuple(rest) for k, v, *rest in past)


def cache_length(past):
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    return int(past[0][0].shape[2])


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

class TraceWriter:
    def __init__(self, path, args, backend, layers, n, m, tokens, positions):
        import h5py
        import numpy as np
        self.np = np
        self.path = path
        self.temp = "%s.tmp.%d" % (path, os.getpid())
        self.args = args
        self.dtype = np.float16 if args.dtype == "float16" else np.float32
        self.file = h5py.File(self.temp, "w", track_order=True)
        f = self.file
        f.attrs["format"] = FORMAT
        f.attrs["version"] = np.int64(VERSION)
        f.attrs["version_minor"] = np.int64(VERSION_MINOR)
        f.attrs["model"] = args.model_name or backend.name
        f.attrs["num_layers"] = np.int64(backend.num_layers)
        f.attrs["num_q_heads"] = np.int64(backend.num_q_heads)
        f.attrs["num_kv_heads"] = np.int64(backend.num_kv_heads)
        f.attrs["head_dim"] = np.int64(backend.head_dim)
        f.attrs["rope_theta"] = np.float64(backend.rope_theta)
        for key, value in backend.rope_scaling.items():
            f.attrs[key] = value
        f.attrs["kv_bits"] = np.int64(args.kv_bits)
        f.attrs["source"] = "recorded"
        f.attrs["traced_layers"] = np.asarray(layers, dtype=np.int64)
        f.attrs["recorder"] = "kvsim tools/record/record_trace.py"
        for key, value in backend.root_attributes().items():
            f.attrs[key] = value
        req = f.create_group("requests", track_order=True).create_group(args.request_id)
        req.attrs["prompt_tokens"] = np.int64(n)
        req.attrs["generated_tokens"] = np.int64(m)
        req.attrs["generation"] = "greedy"
        req.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))
        self.request = req
        self.positions = np.asarray(positions, dtype=np.int64)
        self.groups = {layer: req.create_group("layer_%d" % layer) for layer in layers}

    def _dataset(self, group, name, shape):
        kw = {}
        if shape[0] * shape[1] * shape[2] > 0:
            kw["chunks"] = (1, min(shape[1], 4096), shape[2])
            if self.args.gzip:
                kw.update(compression="gzip", compression_opts=self.args.gzip, shuffle=True)
        return group.create_dataset(name, shape=shape, dtype=self.dtype, **kw)

    def _convert(self, array, where):
        np = self.np
        if not np.all(np.isfinite(array)):
            raise RecordError("%s: non-finite value captured (model overflow?)" % where)
        if self.dtype == np.float16 and np.abs(array).max(initial=0.0) > FLOAT16_MAX:
            raise RecordError("%s: value %.4g is beyond float16 range; record with --dtype float32"
                              % (where, float(np.abs(array).max())))
        return array.astype(self.dtype)

    def write_layer(self, layer, keys, values, queries):
        """keys/values [kv_heads, n+m, d], queries [q_heads, T_q, d] (numpy float32)."""
        g = self.groups[layer]
        where = "/requests/%s/layer_%d" % (self.args.request_id, layer)
        for name, array in (("keys", keys), ("values", values), ("queries", queries)):
            self._dataset(g, name, array.shape)[...] = self._convert(array, where + "/" + name)
        g.create_dataset("query_positions", data=self.positions)

    def close(self):
        self.file.close()
        os.replace(self.temp, self.path)

    def abort(self):
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - best effort; the file is being discarded
            pass
        try:
            os.remove(self.temp)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# The passes
# ---------------------------------------------------------------------------------------------

def attention_reference(q, keys, values, t, group):
    """softmax(q k^T / sqrt(d)) v for one stored query row q [Hq, d] at position t, keys/values
    [Hkv, T, d] (GQA: q head h reads KV head h // group), float64 numpy; returns [Hq * d]."""
    import numpy as np
    d = q.shape[-1]
    out = []
    for h in range(q.shape[0]):
        k = keys[h // group, :t + 1].astype(np.float64)
        logits = k @ q[h].astype(np.float64) / np.sqrt(d)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out.append(p @ values[h // group, :t + 1].astype(np.float64))
    return np.concatenate(out)


def capture_pass(backend, recorder, writer, all_ids, positions, verify, log):
    import numpy as np
    import torch
    b = backend
    total = len(all_ids)
    dev = b.device
    rows = torch.tensor(positions, device=dev)
    # Verification rows: the last stored prompt query and the last stored query.
    n = writer.request.attrs["prompt_tokens"]
    prompt_rows = [i for i, p in enumerate(positions) if p < n]
    check_rows = sorted({prompt_rows[-1], len(positions) - 1}) if verify else []
    recorder.rows = rows
    recorder.verify_rows = torch.tensor([positions[i] for i in check_rows], device=dev) if check_rows else None
    key_positions = torch.arange(total, device=dev)
    group = b.num_q_heads // b.num_kv_heads
    tol = 2e-3 if next(b.model.parameters()).dtype == torch.float32 else 6e-2

    def done(layer, got):
        q = rotate(got["q"], rows, b.inv_freq, b.attention_scaling)
        k = rotate(got["k"], key_positions, b.inv_freq, b.attention_scaling)
        keys = k.permute(1, 0, 2).contiguous().cpu().numpy()
        values = got["v"].permute(1, 0, 2).contiguous().cpu().numpy()
        queries = q.permute(1, 0, 2).contiguous().cpu().numpy()
        if check_rows:
            actual = got["o"].cpu().numpy().astype(np.float64)
            for j, row in enumerate(check_rows):
                want = attention_reference(queries[:, row, :], keys, values, positions[row], group)
                err = np.linalg.norm(want - actual[j]) / max(np.linalg.norm(actual[j]), 1e-30)
                if not err <= tol:
                    raise RecordError(
                        "layer %d: attention recomputed from the captured post-RoPE q/k and v differs from the "
                        "model's attention output at position %d (relative error %.3g > %.0e): this model's attention "
                        "is not plain Llama-style RoPE attention (use --no-verify to record anyway)"
                        % (layer, positions[row], err, tol))
        writer.write_layer(layer, keys, values, queries)
        log("layer %d: keys %s, queries %s written" % (layer, keys.shape, queries.shape))

    recorder.on_layer_done = done
    recorder.mode = "capture"
    try:
        with torch.no_grad():
            b.base(input_ids=torch.tensor([all_ids], device=dev), use_cache=False)
    finally:
        recorder.mode = None


def recon_plan(backend, prompt_ids, args):
    """KVzip's repeat passes: a list of (context begin, end, repeat ids) per context chunk."""
    encode = getattr(backend, "encode_plain", backend.encode)
    suffix = encode(args.recon_suffix) if args.recon_suffix else []
    first = encode(RECON_FIRST)
    nxt = encode(RECON_NEXT)
    chunk = args.recon_chunk_tokens
    if chunk < 1:
        raise RecordError("--recon-chunk-tokens must be >= 1")
    n = len(prompt_ids)
    sink = args.recon_sink_tokens
    if sink < 0 or sink >= n:
        raise RecordError("--recon-sink-tokens must be in [0, prompt tokens = %d), got %d" % (n, sink))
    plan = []
    for begin in range(sink, n, chunk):
        end = min(n, begin + chunk)
        if begin == sink:
            head = first
        else:
            head = nxt + list(prompt_ids[max(sink, begin - RECON_POSTFIX_TOKENS):begin])
        plan.append((begin, end, head + suffix + list(prompt_ids[begin:end])))
    return plan


def recon_pass(backend, recorder, writer, prompt_ids, args, log):
    import numpy as np
    import torch
    b = backend
    dev = b.device
    plan = recon_plan(b, prompt_ids, args)
    total = sum(len(ids) for _, _, ids in plan)
    cap = args.recon_max_queries
    if cap < 0:
        raise RecordError("--recon-max-queries must be >= 0")
    keep = np.arange(total) if not cap or cap >= total else np.unique(np.round(np.linspace(0, total - 1, cap)).astype(np.int64))
    rows_total = len(keep)
    datasets = {layer: writer._dataset(writer.groups[layer], "recon_queries", (b.num_q_heads, rows_total, b.head_dim))
                for layer in recorder.layers}
    key_sets = {layer: writer._dataset(writer.groups[layer], "recon_keys", (b.num_kv_heads, total, b.head_dim))
                for layer in recorder.layers}
    n = len(prompt_ids)
    with torch.no_grad():
        past = b.base(input_ids=torch.tensor([prompt_ids], device=dev), use_cache=True).past_key_values
    passes = []
    offset = 0   # index of this pass's first token among all repeat tokens (its first recon_keys row)
    written = 0  # recon_queries rows written so far
    for begin, end, ids in plan:
        mine = keep[(keep >= offset) & (keep < offset + len(ids))] - offset
        row_begin = written
        local = torch.tensor(mine, device=dev, dtype=torch.long)
        recorder.rows = local
        qpos = local + n  # the repeat pass follows the prompt's n cached positions
        kpos = torch.arange(len(ids), device=dev) + n

        def done(layer, got, row_begin=row_begin, qpos=qpos, kpos=kpos, offset=offset):
            where = "/requests/%s/layer_%d/" % (args.request_id, layer)
            q = rotate(got["q"], qpos, b.inv_freq, b.attention_scaling)
            arr = q.permute(1, 0, 2).contiguous().cpu().numpy()
            if arr.shape[1]:  # a pass may hold none of the subsampled queries
                datasets[layer][:, row_begin:row_begin + arr.shape[1], :] = writer._convert(arr, where + "recon_queries")
            k = rotate(got["k"], kpos, b.inv_freq, b.attention_scaling)
            arr = k.permute(1, 0, 2).contiguous().cpu().numpy()
            key_sets[layer][:, offset:offset + arr.shape[1], :] = writer._convert(arr, where + "recon_keys")

        recorder.on_layer_done = done
        recorder.mode = "recon"
        try:
            with torch.no_grad():
                out = b.base(input_ids=torch.tensor([ids], device=dev), past_key_values=past, use_cache=True)
        finally:
            recorder.mode = None
        past = crop_cache(out.past_key_values, n)
        if cache_length(past) != n:
            raise RecordError("could not restore the prompt's KV cache after a repeat pass")
        written += len(mine)
        passes.append([begin, end, offset, offset + len(ids)])
        offset += len(ids)
    for layer in recorder.layers:
        g = writer.groups[layer]
        g.create_dataset("recon_passes", data=np.asarray(passes, dtype=np.int64))
        g.create_dataset("recon_query_rows", data=np.asarray(keep, dtype=np.int64))
    writer.request.attrs["recon_prompt"] = RECON_FIRST
    writer.request.attrs["recon_repeat_tokens"] = np.int64(total)
    log("recon: %d repeat tokens in %d pass(es), %d queries stored" % (total, len(plan), rows_total))


def record(args):
    t0 = time.time()

    def log(msg):
        if not args.quiet:
            print("record_trace: %s (%.1fs)" % (msg, time.time() - t0), file=sys.stderr, flush=True)

    if args.generate < 0:
        raise RecordError("--generate must be >= 0, got %d" % args.generate)
    if args.gzip < 0 or args.gzip > 9:
        raise RecordError("--gzip level %d is out of range; expected 0 (none) to 9" % args.gzip)
    if args.kv_bits not in (2, 4, 8, 16, 32):
        raise RecordError("--kv-bits must be one of 2, 4, 8, 16, 32")
    if "/" in args.request_id or args.request_id in ("", "."):
        raise RecordError("--request-id '%s' cannot name an HDF5 group" % args.request_id)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise RecordError("--out %s: directory %s does not exist" % (args.out, out_dir))
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        raise RecordError("%s (install python3-torch, python3-numpy, python3-h5py; tools/bootstrap.sh does)" % e)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    backend = load_tiny(args.tiny, device) if args.tiny else load_hf(args.hf, device, args.torch_dtype)
    layers = parse_layers(args.layers, backend.num_layers)
    prompt_ids = read_prompt_ids(args, backend)
    n, m = len(prompt_ids), args.generate
    positions = query_positions(n, m, args)
    log("model %s: %d layers, %d q / %d kv heads, head_dim %d; prompt %d tokens, generating %d"
        % (backend.name, backend.num_layers, backend.num_q_heads, backend.num_kv_heads, backend.head_dim, n, m))

    with torch.no_grad():
        generated = greedy_generate(backend, prompt_ids, m, log) if m else []
    all_ids = list(prompt_ids) + generated
    writer = TraceWriter(args.out, args, backend, layers, n, m, all_ids, positions)
    recorder = Recorder(backend, layers)
    try:
        capture_pass(backend, recorder, writer, all_ids, positions, not args.no_verify, log)
        if args.recon:
            recon_pass(backend, recorder, writer, prompt_ids, args, log)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        recorder.remove()
    log("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))
    return generated


def main(argv=None):
    args = parse_args(argv)
    try:
        record(args)
    except RecordError as e:
        print("record_trace.py: %s" % e, file=sys.stderr)
        return 2
    except (OSError, RuntimeError, ValueError) as e:
        print("record_trace.py: %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
