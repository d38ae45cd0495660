#!/usr/bin/env bash
# Runs the benchmarks and writes bench/results.json (Google Benchmark's JSON, with GFLOP/s and
# passes/s counters). Build first: bash tools/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build/bench/kvsim_bench --benchmark_out=bench/results.json --benchmark_out_format=json "$@"
echo "wrote bench/results.json" >&2
