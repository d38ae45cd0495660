#!/usr/bin/env python3
"""Extracts the linear-operator medians kvsim validates against from vidur's A100 profiles
(../shared/data/vidur-profiles-a100/, microsoft/vidur commit 7d47513, MIT) into the small CSV
tests/data/vidur_a100_linear_ops.csv. Run once; the output is committed with its provenance."""
import csv
import sys

TOKENS = {1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768}
OPS = ["attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj"]


def main(src_dir, out_path):
    with open(out_path, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["model", "tp", "tokens"] + [op + "_ms" for op in OPS])
        for model, name in (("llama-3.1-8b", "Meta-Llama-3-8B"), ("llama-3.1-70b", "Meta-Llama-3-70B")):
            rows = list(csv.DictReader(open("%s/%s_mlp.csv" % (src_dir, name))))
            rows = [r for r in rows if int(r["num_tokens"]) in TOKENS]
            rows.sort(key=lambda r: (int(r["num_tensor_parallel_workers"]), int(r["num_tokens"])))
            seen = set()
            for r in rows:
                key = (r["num_tensor_parallel_workers"], r["num_tokens"])
                if key in seen:  # some sizes were profiled twice; keep the first run
                    continue
                seen.add(key)
                w.writerow([model, r["num_tensor_parallel_workers"], r["num_tokens"]] +
                           [r["time_stats.%s.median" % op] for op in OPS])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vidur-profiles-a100",
         sys.argv[2] if len(sys.argv) > 2 else "tests/data/vidur_a100_linear_ops.csv")
