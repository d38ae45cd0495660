"""DuoAttention's gate values -> full-head mask, as the original does it.

Source: mit-han-lab/duo-attention, commit fe93c314ae87306ef6629dc16713250b4718ffe7,
duo_attn/utils.py: load_attn_pattern (np.loadtxt + np.clip) and sparsify_attention_heads, copied
verbatim below (MIT License, Copyright (c) 2024 MIT HAN Lab, configs/head_maps/LICENSE-duo-attention);
eval/LongBench/pred.py calls seed_everything(42) (np.random.seed(42)) before it, which
`duo_full_heads` reproduces. Not derived from kvsim's C++ (traces/duo_sparsify.cpp).
"""
import numpy as np


def load_gates(path):
    """load_attn_pattern's reading of full_attention_heads.tsv ('#' lines are loadtxt comments)."""
    full_attention_heads = np.loadtxt(path, dtype=float, delimiter="\t")
    return np.clip(full_attention_heads, 0, 1)


# ---- verbatim from duo_attn/utils.py ------------------------------------------------------------
def sparsify_attention_heads(full_attention_heads, threshold=None, sparsity=None):
    # add a very small random noise to full_attention_heads to break ties
    full_attention_heads += np.random.uniform(0, 1e-6, full_attention_heads.shape)

    if sparsity is not None:
        # ignore the threshold and use the sparsity
        # set the sparsity small values to 0 and others to 1
        threshold = np.quantile(full_attention_heads, sparsity)
    else:
        assert threshold is not None, "Either threshold or sparsity must be provided"

    if sparsity >= 1:
        # all heads are pruned
        threshold = 2
    if sparsity <= 0:
        # no heads are pruned
        threshold = -1

    full_attention_heads = (full_attention_heads >= threshold).astype(float)
    sparsity = 1 - np.mean(full_attention_heads)
    return full_attention_heads, sparsity
# ---- end of the verbatim copy -------------------------------------------------------------------


def duo_full_heads(gates, sparsity, seed=42):
    """bool [layers, kv_heads]: the full heads of the evaluation scripts' call."""
    np.random.seed(seed)
    mask, _ = sparsify_attention_heads(np.array(gates, dtype=float, copy=True), None, sparsity=sparsity)
    return mask.astype(bool)
