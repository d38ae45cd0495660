#!/usr/bin/env bash
# Runs clang-tidy (Debian's clang-tidy, the checks in .clang-tidy) over kvsim's own sources and
# fails on any finding (issue 8). Tests, benchmarks and fuzz targets are not checked: gtest and
# benchmark macros expand to code kvsim does not own.
#   bash tools/tidy.sh [FILE_REGEX]     (default: every .cpp under util traces policies sim (and its wings) hw tools/kvsim)
# Uses a configure-only clang build folder (build-tidy/) for its compile_commands.json, so that
# GCC-only flags of the main build do not reach clang.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-tidy >/dev/null || ! command -v clang++ >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq clang clang-tidy >/dev/null
fi
runner=$(command -v run-clang-tidy || command -v run-clang-tidy-14 || true)
[ -n "$runner" ] || { echo "tidy.sh: run-clang-tidy not found (Debian package clang-tidy)" >&2; exit 2; }
build=build-tidy
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVSIM_NATIVE=OFF \
  -DKVSIM_BUILD_TESTS=OFF -DKVSIM_BUILD_BENCH=OFF >/dev/null
regex="${1:-/(util|traces|policies|sim|sim/replay|sim/serving|sim/sweep|hw|tools/kvsim)/[^/]*\.cpp$}"
log="$build/tidy.log"
# run-clang-tidy exits non-zero when a check reports (WarningsAsErrors in .clang-tidy).
if "$runner" -quiet -p "$build" -j "$(nproc)" "$regex" >"$log" 2>&1; then
  echo "tidy: no findings ($(grep -c '^clang-tidy' "$log" || true) files)" >&2
else
  grep -E 'error:|warning:' "$log" | grep -v 'warnings generated' | sort -u | head -50 >&2
  echo "tidy: findings above (full log: $log)" >&2
  exit 1
fi
