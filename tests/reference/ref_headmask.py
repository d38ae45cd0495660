"""Float64 numpy reference for kvsim's head-mask policies duoattention and prulong.

Written from mit-han-lab/duo-attention (duo_attn/utils.py load_attn_pattern, sparsify_attention_heads;
attn_patterns/*/config.json), NVIDIA/kvpress duo_attention_press.py, qqtang-code/PruLong
(modeling_flash_llama.py round_masks_for_sparsity, run_scripts/prulong_masksonly.sh) and
DESIGN.md §4, not from kvsim's C++:
  - every (layer, KV head) is a full head (keeps everything) or a streaming head, which at every
    eviction point keeps the positions < sinks and its `window` most recent entries;
  - with a mask file (one line per layer, one value in [0, 1] per KV head), the full heads are the
    highest values over the whole file: N - round(N x sparsity) of them for duoattention (kvpress
    streams the round(N x s) lowest), int(N x (1 - sparsity)) for prulong; ties: lower (layer, head);
  - without one, kvsim's documented proxy ranks each traced layer's heads by the attention mass the
    last `proxy_window` prompt queries pay outside [0, sinks) and their `window` most recent
    positions (causal softmax, averaged over the queries and the GQA group); the count rule over
    all layers x heads, spread evenly over the layers (floor((l+1)F/L) - floor(lF/L)), gives each
    layer's number of full heads;
  - defaults: duoattention sparsity 0.5, sinks 128, window 256; prulong 0.7, 128, 1024; both evict at
    every chunk and decode step.
"""
import math

import numpy as np

from kvref import EvictionBudget, parse_spec, passes, prefill_chunks, round_half_even

DEFAULTS = {"duoattention": (0.5, 128, 256), "prulong": (0.7, 128, 1024)}


class HeadMaskSpec:
    def __init__(self, spec):
        self.name, args = parse_spec(spec)
        s, sinks, window = DEFAULTS[self.name]
        self.sparsity = float(args.pop("sparsity", s))
        self.sinks = int(args.pop("sinks", sinks))
        self.window = int(args.pop("window", window))
        self.mask = args.pop("mask", None)
        self.proxy_window = int(args.pop("proxy_window", "32"))
        args.setdefault("prefill", "chunk")
        args["budget"] = "0.5"  # unused: EvictionBudget is only asked for the eviction points
        self.points = EvictionBudget(args, decode="step")
        assert not args, "reference does not model args %r" % args

    def full_count(self, heads):
        if self.name == "duoattention":
            return heads - round_half_even(heads * self.sparsity)
        return int(heads * (1 - self.sparsity))

    def layer_full_count(self, heads, num_layers, layer):
        total = self.full_count(heads * num_layers)
        return (layer + 1) * total // num_layers - layer * total // num_layers

    def evicts_after(self, is_prefill, index, num_chunks):
        return self.points.evicts_after(is_prefill, index, num_chunks)


def read_mask(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                rows.append([float(v) for v in line.replace(",", " ").split()])
    return np.array(rows)


def top_mask(values, count):
    """Boolean mask of the `count` highest values (flattened order breaks ties: lower first)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))
    out = np.zeros(len(flat), dtype=bool)
    out[order[:count]] = True
    return out.reshape(np.shape(values))


def proxy_scores(lay, observed, sinks, window):
    """[H] attention mass outside sinks + window of the causal queries at `observed` (float64)."""
    out = np.zeros(lay.hkv)
    for h in range(lay.hkv):
        total = 0.0
        for g in range(h * lay.G, (h + 1) * lay.G):
            for t in observed:
                q = lay.queries[g, lay.qpos_index[t]]
                logits = lay.keys[h, : t + 1] @ q / math.sqrt(lay.d)
                p = np.exp(logits - logits.max())
                p /= p.sum()
                total += p[min(sinks, t + 1): max(min(sinks, t + 1), t - window + 1)].sum()
        out[h] = total / (lay.G * len(observed))
    return out


def streaming_kept(spec, n, m, chunk):
    """Final kept positions of a streaming head (bool [n+m])."""
    chunks = prefill_chunks(n, chunk)
    resident = []
    for a, b, is_prefill in passes(n, m, chunk):
        resident += list(range(a, b))
        index = chunks.index((a, b)) if is_prefill else a - n
        if spec.evicts_after(is_prefill, index, len(chunks)):
            recent = resident[max(0, len(resident) - spec.window):]
            resident = sorted(set(t for t in resident if t < spec.sinks) | set(recent))
    kept = np.zeros(n + m, dtype=bool)
    kept[resident] = True
    return kept
