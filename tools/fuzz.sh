#!/usr/bin/env bash
# Fuzzes kvsim's input parsers with libFuzzer (issue 8): scenario INI files, policy specs,
# workload traces (Azure CSV, Mooncake JSONL, synthetic specs) and HDF5 attention traces.
#   bash tools/fuzz.sh [SECONDS_PER_TARGET]      (default 60; CI runs it bounded)
# Builds build-fuzz/ with clang (-fsanitize=fuzzer,address,undefined), replays the regression
# inputs in fuzz/regressions/<target>/ (crashes found earlier), then fuzzes each target from a
# seed corpus made of the repository's own valid and malformed inputs. A crash fails the run and
# leaves its input in build-fuzz/crashes/<target>/: add it to fuzz/regressions/<target>/ once fixed.
# The trace target tolerates crashes inside libhdf5 itself (a known libhdf5 1.10 bug on corrupt
# global heaps, listed in tests/bad_inputs/run_bad_inputs.py); any other crash fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=build-fuzz
# clang and its libFuzzer runtime, from Debian's packages (as root; the rest comes from bootstrap.sh).
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq clang libclang-rt-dev >/dev/null
fi
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVSIM_FUZZ=ON -DKVSIM_NATIVE=OFF \
  -DKVSIM_BUILD_TESTS=OFF -DKVSIM_BUILD_BENCH=OFF ${KVSIM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target kvsim fuzz_scenario fuzz_policy_spec fuzz_workload fuzz_trace

export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1"
corpus="$build/corpus"
rm -rf "$corpus" "$build/crashes"
mkdir -p "$corpus"/{scenario,policy_spec,workload,trace} "$build"/crashes/{scenario,policy_spec,workload,trace}
cp configs/scenarios/*.ini tests/bad_inputs/scenarios/*.ini "$corpus/scenario/"
grep -h "^spec = " configs/scenarios/*.ini tests/bad_inputs/scenarios/*.ini | sed 's/^spec = //' | sort -u |
  awk -v dir="$corpus/policy_spec" '{ print > (dir "/spec" NR) }'
cp tests/data/azure_conv_sample.csv tests/data/mooncake_conversation_sample.jsonl "$corpus/workload/"
find tests/bad_inputs/workloads -type f ! -name '*.expect' -exec cp {} "$corpus/workload/" \;
"$build/tools/kvsim/kvsim" synth --model llama-3.1-8b --prompt-tokens 64 --generated-tokens 4 --layers 0 \
  --out "$corpus/trace/small.h5" >/dev/null

status=0
for target in scenario policy_spec workload trace; do
  binary="$build/fuzz/fuzz_$target"
  regressions="fuzz/regressions/$target"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== fuzz_$target: replaying $regressions" >&2
    "$binary" "$regressions"/* >"$build/regressions_$target.log" 2>&1 || { echo "FAIL: a regression input crashes fuzz_$target (see $build/regressions_$target.log)" >&2; status=1; }
  fi
  echo "== fuzz_$target: ${seconds} s" >&2
  log="$build/fuzz_$target.log"
  if [ "$target" = trace ]; then
    # Fork mode keeps going after a crash, so that crashes inside libhdf5 can be told apart.
    "$binary" "$corpus/$target" -max_total_time="$seconds" -fork=1 -ignore_crashes=1 -rss_limit_mb=2048 \
      -artifact_prefix="$build/crashes/$target/" >"$log" 2>&1 || true
    for crash in "$build/crashes/$target"/*; do
      [ -e "$crash" ] || continue
      report=$("$binary" "$crash" 2>&1 || true)
      # The first three frames of the report: all inside libhdf5 means the known libhdf5 bug.
      frames=$(printf '%s\n' "$report" | grep -E '^ +#[0-2] ' || true)
      if printf '%s\n' "$frames" | grep -qv 'libhdf5'; then
        echo "FAIL: fuzz_trace crash outside libhdf5: $crash" >&2
        printf '%s\n' "$report" | grep -E 'ERROR|^ +#[0-5] ' | head -8 >&2
        status=1
      else
        echo "known: libhdf5-internal crash ($crash)" >&2
      fi
    done
  else
    if ! "$binary" "$corpus/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$build/crashes/$target/" >"$log" 2>&1; then
      echo "FAIL: fuzz_$target found a crash:" >&2
      grep -E 'ERROR|SUMMARY|^ +#[0-5] ' "$log" | head -12 >&2
      status=1
    fi
  fi
  grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "$log" | tail -1 >&2 || true
done
exit $status
