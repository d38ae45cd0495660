"""A Llama-architecture causal LM in plain torch (no transformers), for kvsim's recorder and tests.

It reads the same config.json keys as Hugging Face's LlamaConfig (hidden_size, num_attention_heads,
num_key_value_heads, head_dim (default hidden_size / num_attention_heads), intermediate_size,
num_hidden_layers, rope_theta, vocab_size, rms_norm_eps, attention_bias, tie_word_embeddings) and
uses the same module and weight names (model.embed_tokens, model.layers.N.self_attn.q_proj, ...,
model.layers.N.mlp.gate_proj, model.norm, lm_head), so a checkpoint directory written by
`save_pretrained` (config.json + pytorch_model.bin) loads in transformers' LlamaForCausalLM too,
and tools/record/record_trace.py captures it through exactly the hooks it uses on a real model:
forward hooks on self_attn.{q,k,v}_proj (pre-RoPE projections) and on self_attn (layer done).

Conventions follow transformers' modeling_llama: RMSNorm computed in float32, RoPE with
inv_freq = rope_theta^(-2i/d) (rescaled by a rope_scaling of type linear or llama3, as
transformers' modeling_rope_utils.py does) applied "rotate_half" style (dim i pairs with dim i + d/2), GQA
where query head h reads KV head h // (num_attention_heads / num_key_value_heads), SwiGLU MLP
down(silu(gate(x)) * up(x)), pre-norm residual blocks.

Tokenizers of the tiny models kvsim trains (tokenizer.json in the checkpoint; none: bytes):
`ByteTokenizer` (token id = UTF-8 byte, vocab 256) and `WordTokenizer` (the 256 bytes plus the
most frequent words of the training text, each with its leading space, as single tokens; other
words fall back to bytes). Whole-word tokens make induction learnable in minutes: a byte such as
"e" recurs everywhere, so matching the previous byte says little about where a passage repeats.
"""
import collections
import json
import math
import os
import re
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
TOKENIZER_NAME = "tokenizer.json"


class LlamaConfig:
    """The Llama config keys the model reads; unknown keys are kept (to_dict round-trips them)."""

    REQUIRED = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers", "vocab_size")

    def __init__(self, **kw):
        missing = [k for k in self.REQUIRED if k not in kw]
        if missing:
            raise ValueError("config is missing %s" % ", ".join(missing))
        self.extra = dict(kw)
        self.hidden_size = int(kw["hidden_size"])
        self.num_attention_heads = int(kw["num_attention_heads"])
        self.num_key_value_heads = int(kw.get("num_key_value_heads") or self.num_attention_heads)
        self.head_dim = int(kw.get("head_dim") or self.hidden_size // self.num_attention_heads)
        self.intermediate_size = int(kw["intermediate_size"])
        self.num_hidden_layers = int(kw["num_hidden_layers"])
        self.rope_theta = float(kw.get("rope_theta", 10000.0))
        self.vocab_size = int(kw["vocab_size"])
        self.rms_norm_eps = float(kw.get("rms_norm_eps", 1e-6))
        self.attention_bias = bool(kw.get("attention_bias", False))
        self.tie_word_embeddings = bool(kw.get("tie_word_embeddings", False))
        self.rope_scaling = kw.get("rope_scaling")
        if self.rope_scaling not in (None, {}) and self.rope_scaling_type() not in ("default", "linear", "llama3"):
            raise ValueError("llama_tiny implements plain, linear and llama3 RoPE only; rope_scaling %r is not supported"
                             % (self.rope_scaling,))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)"
                             % (self.num_attention_heads, self.num_key_value_heads))
        if self.head_dim % 2:
            raise ValueError("head_dim must be even (RoPE rotates pairs), got %d" % self.head_dim)

    def rope_scaling_type(self):
        r = self.rope_scaling or {}
        return r.get("rope_type", r.get("type", "default")) or "default"

    def to_dict(self):
        d = dict(self.extra)
        d.update(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=self.hidden_size,
                 num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                 head_dim=self.head_dim, intermediate_size=self.intermediate_size,
                 num_hidden_layers=self.num_hidden_layers, rope_theta=self.rope_theta, vocab_size=self.vocab_size,
                 rms_norm_eps=self.rms_norm_eps, attention_bias=self.attention_bias,
                 tie_word_embeddings=self.tie_word_embeddings, hidden_act="silu")
        return d

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            return cls(**json.load(f))


def rope_inv_freq(head_dim, theta):
    """inv_freq[i] = theta^(-2i/d), i < d/2, as transformers' default rotary embedding (float32)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def scaled_rope_inv_freq(config):
    """inv_freq with the config's rope_scaling, as transformers' modeling_rope_utils.py computes it
    (float32): _compute_linear_scaling_rope_parameters divides every frequency by `factor`;
    _compute_llama3_parameters keeps wavelengths below original_max_position_embeddings /
    high_freq_factor, divides those above original_max_position_embeddings / low_freq_factor by
    `factor`, and blends those between with smooth = (original / wavelength - low) / (high - low)."""
    inv_freq = rope_inv_freq(config.head_dim, config.rope_theta)
    kind = config.rope_scaling_type()
    r = config.rope_scaling or {}
    if kind == "linear":
        return inv_freq / r["factor"]
    if kind != "llama3":
        return inv_freq
    factor, low, high = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    old_context = r["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_context / high) * ~(wavelen > old_context / low)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, positions, inv_freq):
    """x [..., T, d] rotated to `positions` [T] (rotate_half convention: dim i pairs with i + d/2)."""
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :].to(torch.float32)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    return x * cos + rotate_half(x) * sin


class LlamaRMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class LlamaRotaryEmbedding(nn.Module):
    """Holds inv_freq (a buffer, like transformers' model.rotary_emb) so the recorder can read it."""

    def __init__(self, config):
        super().__init__()
        self.register_buffer("inv_freq", scaled_rope_inv_freq(config), persistent=False)
        self.attention_scaling = 1.0


class LlamaAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, x, positions, inv_freq, past=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        present = (k, v)
        s = k.shape[2]
        g = self.num_key_value_groups
        # GQA: query head h reads KV head h // g (transformers' repeat_kv). The g query heads of a
        # KV head are stacked along the rows, [b, kv_heads, g*t, d], so K and V are not copied.
        q = (q * (1.0 / math.sqrt(self.head_dim))).reshape(b, self.num_key_value_heads, g * t, self.head_dim)
        scores = torch.matmul(q, k.transpose(2, 3))
        # Causal: query i (absolute position s - t + i) sees keys 0..s - t + i.
        blocked = torch.ones(t, s, dtype=torch.bool, device=x.device).triu(diagonal=s - t + 1)
        bias = torch.zeros(t, s, dtype=scores.dtype, device=x.device).masked_fill(blocked, float("-inf"))
        scores = scores + bias.repeat(g, 1)
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).reshape(b, self.num_heads, t, self.head_dim)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(out), present


class LlamaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, positions, inv_freq, past=None):
        h, present = self.self_attn(self.input_layernorm(x), positions, inv_freq, past)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, present


class LlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)

    def forward(self, input_ids, past_key_values=None, use_cache=False, **_):
        """Returns last_hidden_state [B, T, hidden] and, with use_cache, past_key_values: one (k, v)
        per layer, post-RoPE, [B, kv_heads, S, d] (the same layout as transformers' legacy cache)."""
        start = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        t = input_ids.shape[1]
        positions = torch.arange(start, start + t, device=input_ids.device)
        x = self.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, positions, self.rotary_emb.inv_freq,
                               None if past_key_values is None else past_key_values[i])
            if use_cache:
                presents.append(present)
        return SimpleNamespace(last_hidden_state=self.norm(x), past_key_values=tuple(presents) if use_cache else None)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, past_key_values=None, use_cache=False, **_):
        out = self.model(input_ids, past_key_values=past_key_values, use_cache=use_cache)
        return SimpleNamespace(logits=self.lm_head(out.last_hidden_state), past_key_values=out.past_key_values)

    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.config.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        state = {k: v.detach().clone().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        torch.save(state, os.path.join(directory, WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory):
        """Loads config.json and pytorch_model.bin (a state dict with HF Llama weight names)."""
        config_path = os.path.join(directory, CONFIG_NAME)
        weights_path = os.path.join(directory, WEIGHTS_NAME)
        for p in (config_path, weights_path):
            if not os.path.isfile(p):
                raise FileNotFoundError("%s: missing (expected a checkpoint directory with %s and %s)"
                                        % (p, CONFIG_NAME, WEIGHTS_NAME))
        model = cls(LlamaConfig.from_json_file(config_path))
        state = torch.load(weights_path, map_location="cpu")
        if model.config.tie_word_embeddings:
            state.setdefault("lm_head.weight", state.get("model.embed_tokens.weight"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.endswith("rotary_emb.inv_freq")]
        if missing or unexpected:
            raise ValueError("%s: weights do not match the config (missing %s, unexpected %s)"
                             % (weights_path, missing[:4], unexpected[:4]))
        model.eval()
        return model


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255."""

    vocab_size = 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(int(i) & 0xFF for i in ids).decode("utf-8", errors="replace")

    def save(self, directory):
        with open(os.path.join(directory, TOKENIZER_NAME), "w") as f:
            json.dump({"type": "kvsim-bytes"}, f)
            f.write("\n")


class WordTokenizer(ByteTokenizer):
    """Bytes (ids 0..255) plus whole words (ids 256..): a piece is a word with its optional leading
    space (` ?[A-Za-z]+`) or any single other byte; a piece in the word list is one token, any
    other piece is its bytes."""

    PIECE = re.compile(rb" ?[A-Za-z]+|[\s\S]")

    def __init__(self, words):
        self.words = [w.encode("utf-8") if isinstance(w, str) else w for w in words]
        self.index = {w: 256 + i for i, w in enumerate(self.words)}
        self.vocab_size = 256 + len(self.words)

    @classmethod
    def build(cls, text, vocab_size):
        """The vocab_size - 256 most frequent multi-byte pieces of `text` (ties by first appearance)."""
        counts = collections.Counter(p for p in cls.PIECE.findall(text.encode("utf-8")) if len(p) > 1)
        return cls([w for w, _ in counts.most_common(max(0, vocab_size - 256))])

    def encode(self, text):
        ids = []
        for piece in self.PIECE.findall(text.encode("utf-8")):
            token = self.index.get(piece)
            if token is None:
                ids.extend(piece)
            else:
                ids.append(token)
        return ids

    def decode(self, ids):
        return b"".join(bytes([i]) if i < 256 else self.words[i - 256] for i in (int(x) for x in ids)).decode(
            "utf-8", errors="replace")

    def save(self, directory):
        with open(os.path.join(directory, TOKENIZER_NAME), "w") as f:
            json.dump({"type": "kvsim-words", "words": [w.decode("utf-8") for w in self.words]}, f)
            f.write("\n")


def load_tokenizer(directory):
    """The checkpoint's tokenizer.json (kvsim-bytes or kvsim-words); bytes when there is none."""
    path = os.path.join(directory, TOKENIZER_NAME)
    if not os.path.isfile(path):
        return ByteTokenizer()
    with open(path) as f:
        spec = json.load(f)
    if spec.get("type") == "kvsim-words":
        return WordTokenizer(spec["words"])
    if spec.get("type") == "kvsim-bytes":
        return ByteTokenizer()
    raise ValueError("%s: unknown tokenizer type %r" % (path, spec.get("type")))
