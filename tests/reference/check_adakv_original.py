#!/usr/bin/python3
"""One-off check (not run by ctest: it needs the authors' file): ref_adakv.py's transliteration
against FFY0/AdaKV's own AdaptiveSnapKVCluster.update_kv_gqa, run with torch on the CPU.

    git --git-dir=<FFY0/AdaKV clone>/.git show efe4e2e:adaptive_snapkv/monkeypatch/snapkv_utils.py > /tmp/snapkv_utils.py
    /usr/bin/python3 tests/reference/check_adakv_original.py /tmp/snapkv_utils.py

Random GQA layers (2-8 KV heads, groups 1-4, 80-300 tokens, windows 4-32, kernels 1-7, both
poolings, floor_alpha 0-1), float32 tensors. The file's `attn_score.sort(...)` calls are patched to
stable=True: torch's default CPU sort orders exact ties (max pooling makes plateaus) arbitrarily,
while kvsim and the reference put the lower position first. flash_attn and transformers are
stubbed (the compression path does not use them). Exits 1 on any difference in per-head lengths
or kept positions.
"""
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_adakv  # noqa: E402


def load_original(path):
    sys.modules["flash_attn"] = types.SimpleNamespace(flash_attn_func=None)
    cache_utils = types.ModuleType("transformers.cache_utils")
    cache_utils.Cache = cache_utils.DynamicCache = type("Cache", (), {})
    transformers = types.ModuleType("transformers")
    transformers.cache_utils = cache_utils
    sys.modules.update({"transformers": transformers, "transformers.cache_utils": cache_utils})
    source = open(path).read()
    patched = source.replace("attn_score.sort(dim=-1,descending=True)", "attn_score.sort(dim=-1,descending=True,stable=True)")
    assert patched != source, "the sort call to patch was not found"
    module = types.ModuleType("snapkv_utils")
    exec(compile(patched, path, "exec"), module.__dict__)
    return module


def kept_positions(out, keys_h, start, length):
    """Positions of the rows out[start:start+length] in keys_h (random keys are distinct)."""
    return sorted(int(np.argmin(np.abs(keys_h - r).sum(1))) for r in out[start:start + length])


def main():
    original = load_original(sys.argv[1])
    rng = np.random.default_rng(0)
    trials = mismatches = 0
    while trials < 60:
        hkv, group, d = int(rng.choice([2, 4, 8])), int(rng.choice([1, 2, 4])), 8
        L, w, kernel = int(rng.integers(80, 300)), int(rng.choice([4, 8, 32])), int(rng.choice([1, 3, 7]))
        C, alpha = int(rng.integers(w + 1, L)), float(rng.choice([0.0, 0.2, 0.3, 0.5, 0.7, 1.0]))
        pooling = str(rng.choice(["maxpool", "avgpool"]))
        keys = (rng.normal(size=(hkv, L, d)) * 2).astype(np.float32)
        queries = (rng.normal(size=(hkv * group, L, d)) * 2).astype(np.float32)
        cluster = original.AdaptiveSnapKVCluster(window_size=w, kernel_size=kernel, pooling=pooling, base_capacity=C,
                                                 floor_alpha=alpha, skip=0, normalize=None, layer_idx=0,
                                                 num_hidden_layers=1, gqa_support=True, num_key_value_groups=group,
                                                 gqa_func="mean")
        k = torch.tensor(keys[None])
        out, _ = cluster.update_kv_gqa(k, torch.tensor(queries[None]), k.clone())
        B, floor = ref_adakv.init_capacities(C, w, alpha)
        scores = [ref_adakv.calcul_attn_sore(keys[h].astype(np.float64), queries[h * group:(h + 1) * group, -w:, :]
                                             .astype(np.float64), kernel, pooling) for h in range(hkv)]
        caps, order = ref_adakv.head_adaptive_capacity(scores, B, alpha, floor)
        lens, start, same = cluster.head_lens.tolist(), 0, True
        same = lens == [int(c) + w for c in caps]
        for h in range(hkv):
            if not same:
                break
            want = sorted([int(i) for i in order[h][:caps[h]]] + list(range(L - w, L)))
            same = kept_positions(out.numpy(), keys[h], start, lens[h]) == want
            start += lens[h]
        trials += 1
        if not same:
            mismatches += 1
            print("differs: hkv %d group %d L %d w %d kernel %d C %d alpha %g %s" % (hkv, group, L, w, kernel, C, alpha,
                                                                                  pooling))
    print("%d trials, %d differ" % (trials, mismatches))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
