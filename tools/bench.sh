#!/usr/bin/env bash
# Runs kvsim's benchmarks and prints the report of issue 8 (build first: bash tools/bootstrap.sh):
#   1. build/bench/kvsim_bench (Google Benchmark)  -> bench/results.json
#   2. bench/torch_reference.py, same kernels in PyTorch on CPU -> bench/torch_results.json
#   2b. bench/numpy_reference.py, the window scoring in numpy + OpenBLAS -> bench/numpy_results.json
#   3. tools/bench_memory.py, peak RSS of a 128K-token, 32-layer run -> bench/memory.json
#   4. tools/bench_report.py: the table with the ratios to the SGEMM peak and to PyTorch -> bench/report.md
# Arguments go to kvsim_bench (e.g. --benchmark_filter=Window). KVSIM_BENCH_MEMORY_LAYERS=4 shortens
# step 3 (the full 32 layers take several minutes). Run it on an idle machine: the numbers are rates.
set -euo pipefail
cd "$(dirname "$0")/.."
python=/usr/bin/python3
"$python" -c "import torch, numpy" 2>/dev/null || { echo "bench.sh: $python lacks torch/numpy (python3-torch, python3-numpy)" >&2; exit 2; }
build/bench/kvsim_bench --benchmark_out=bench/results.json --benchmark_out_format=json "$@"
"$python" bench/torch_reference.py --out bench/torch_results.json
"$python" bench/numpy_reference.py --out bench/numpy_results.json
"$python" tools/bench_memory.py --kvsim build/tools/kvsim/kvsim --layers "${KVSIM_BENCH_MEMORY_LAYERS:-32}" \
  --out bench/memory.json || echo "bench.sh: the peak-RSS target is missed (bench/memory.json)" >&2
"$python" tools/bench_report.py --kvsim bench/results.json --torch bench/torch_results.json \
  --numpy bench/numpy_results.json --memory bench/memory.json \
  --out bench/report.md
