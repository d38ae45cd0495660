#!/usr/bin/env bash
# Fuzzes kvsim's input parsers with libFuzzer (issue 8): scenario INI files, policy specs,
# workload traces (Azure CSV, Mooncake JSONL, synthetic specs), HDF5 attention traces and hardware files.
#   bash tools/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (default 60 s, every target; CI runs it bounded)
#   e.g. bash tools/fuzz.sh 600 trace
# Builds build-fuzz/ with clang (-fsanitize=fuzzer,address,undefined), replays the regression
# inputs in fuzz/regressions/<target>/ (crashes found earlier), then fuzzes each target from a
# seed corpus made of the repository's own valid and malformed inputs. A crash fails the run and
# leaves its input in build-fuzz/crashes/<target>/: add it to fuzz/regressions/<target>/ once fixed.
# The trace target tolerates crashes, huge allocations and hangs inside libhdf5 itself: libhdf5 1.10
# trusts the size fields of a corrupt file (global heaps of variable-length strings, metadata cache
# entries), see tests/bad_inputs/run_bad_inputs.py and traces/hdf5_crash_guard.h. A report is
# blamed on the first stack frame that is not sanitizer, libFuzzer or C/C++ runtime code: inside
# libhdf5 it is the known libhdf5 weakness; anywhere else (kvsim's code) it fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift $(($# > 0 ? 1 : 0))
targets="${*:-scenario policy_spec workload trace hardware}"
build=build-fuzz
# clang and its libFuzzer runtime, from Debian's packages (as root; the rest comes from bootstrap.sh).
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq clang libclang-rt-dev >/dev/null
fi
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVSIM_FUZZ=ON -DKVSIM_NATIVE=OFF \
  -DKVSIM_BUILD_TESTS=OFF -DKVSIM_BUILD_BENCH=OFF ${KVSIM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target kvsim fuzz_scenario fuzz_policy_spec fuzz_workload fuzz_trace fuzz_hardware

# A small quarantine: libhdf5 frees large buffers on every corrupt file, and the default one (256
# MiB, more with big chunks) pushed the trace target over its RSS limit with 26 MB live.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=32"
export UBSAN_OPTIONS="print_stacktrace=1"
corpus="$build/corpus"
rm -rf "$corpus" "$build/crashes"
mkdir -p "$corpus"/{scenario,policy_spec,workload,trace,hardware} "$build"/crashes/{scenario,policy_spec,workload,trace,hardware}
# The bad-input cases are seeds too: byte-order marks, placements and swap tiers, bounds on
# threads, layers and rope_theta.
cp configs/scenarios/*.ini tests/bad_inputs/scenarios/*.ini "$corpus/scenario/"
cp configs/hardware/*.ini configs/hardware/attach/*.ini tests/bad_inputs/hardware/*.ini "$corpus/hardware/"
printf '\xef\xbb\xbf' | cat - configs/hardware/h100-sxm.ini >"$corpus/hardware/bom_h100-sxm.ini"
grep -h "^spec = " configs/scenarios/*.ini tests/bad_inputs/scenarios/*.ini | sed 's/^spec = //' | sort -u |
  awk -v dir="$corpus/policy_spec" '{ print > (dir "/spec" NR) }'
cp tests/data/azure_conv_sample.csv tests/data/mooncake_conversation_sample.jsonl "$corpus/workload/"
find tests/bad_inputs/workloads -type f ! -name '*.expect' -exec cp {} "$corpus/workload/" \;
# Seed traces of a tiny model: libFuzzer ignores inputs over 1 MiB, and a small file lets the
# mutations reach every attribute and dataset (a 1.7 MB Llama trace left it fuzzing the superblock).
"$build/tools/kvsim/kvsim" synth --model fuzz/seed_model.ini --prompt-tokens 24 --generated-tokens 2 \
  --query-window 4 --needles 1 --needle-tokens 2 --question-tokens 2 --recon-queries 4 --float16 \
  --out "$corpus/trace/tiny_f16.h5" >/dev/null
"$build/tools/kvsim/kvsim" synth --model fuzz/seed_model.ini --prompt-tokens 24 --generated-tokens 2 \
  --query-window 4 --needles 1 --needle-tokens 2 --question-tokens 2 --layers 1 --gzip 1 \
  --out "$corpus/trace/tiny_gzip.h5" >/dev/null

# The first frame of a sanitizer or libFuzzer report that is not runtime code: the sanitizers,
# libFuzzer, the C functions they intercept (linked into the fuzz binary: malloc, strdup, memcpy
# are plain C names there, while all of kvsim is namespaced C++), libc and libstdc++. Fuzz builds
# leave kvsim's libhdf5 crash guard off, so a fault gets such a report too.
blamed_frame() {
  awk '
    /^ +#[0-9]+ 0x/ {
      func_name = ""; module = ""
      if (match($0, / in [^ ]+/)) func_name = substr($0, RSTART + 4, RLENGTH - 4)
      if (match($0, /\((\/[^ )]*)\+0x[0-9a-f]+\)/)) module = substr($0, RSTART + 1, RLENGTH - 2)
      if (func_name ~ /^(_*(sanitizer|asan|ubsan|lsan|interceptor)|fuzzer::|operator$)/) next
      if (module ~ /\/fuzz_[a-z_]+\+/ && func_name != "" && func_name !~ /::/) next
      if (module ~ /\/(libc|libstdc\+\+|libgcc_s|libm)\.so/) next
      # The C++ wrapper of libhdf5 only forwards to the C library, or throws: an H5::Exception that escapes
      # kvsim ends in abort() under this frame, and is a kvsim bug.
      if (module ~ /\/libhdf5[a-z_]*_cpp\.so/) next
      # glibc symbolized from its debug info: a source path, no module (__memcpy_evex_unaligned_erms
      # string/../sysdeps/x86_64/...), or a reserved C name (__libc_start_call_main, __GI_raise).
      if ($0 ~ / in [^ ]+ (\.\.\/)*(sysdeps|nptl|csu|stdlib|string|signal|libio|malloc|elf)\//) next
      if (func_name ~ /^__/ && func_name !~ /::/) next
      print; exit
    }'
}

status=0
for target in $targets; do
  binary="$build/fuzz/fuzz_$target"
  regressions="fuzz/regressions/$target"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== fuzz_$target: replaying $regressions" >&2
    "$binary" "$regressions"/* >"$build/regressions_$target.log" 2>&1 || { echo "FAIL: a regression input crashes fuzz_$target (see $build/regressions_$target.log)" >&2; status=1; }
  fi
  echo "== fuzz_$target: ${seconds} s" >&2
  log="$build/fuzz_$target.log"
  if [ "$target" = trace ]; then
    # Run in process, restarting after each crash until the time is spent: the report then comes
    # from the process that crashed, with its whole stack (libhdf5 keeps state across files, so a
    # crash does not always replay from its input alone; fork mode keeps only one line of it).
    deadline=$((SECONDS + seconds)); run=0; known=0
    : >"$log"
    while [ $((deadline - SECONDS)) -gt 0 ] && [ $run -lt 500 ]; do
      run=$((run + 1))
      if "$binary" "$corpus/$target" -max_total_time=$((deadline - SECONDS)) -timeout=10 -rss_limit_mb=2048 \
          -artifact_prefix="$build/crashes/$target/" >"$log.run" 2>&1; then
        cat "$log.run" >>"$log"; break
      fi
      cat "$log.run" >>"$log"
      what=$(grep -m1 -oE 'SUMMARY: [A-Za-z]+: [A-Za-z-]+' "$log.run" | sed 's/^SUMMARY: //' || true)
      blamed=$(blamed_frame <"$log.run")
      if printf '%s\n' "$blamed" | grep -q 'libhdf5'; then
        echo "known: $what inside libhdf5:$(printf '%s\n' "$blamed" | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+//')" >&2
        known=$((known + 1))
      else
        echo "FAIL: fuzz_trace: $what outside libhdf5 (input in $build/crashes/$target/):" >&2
        grep -E 'ERROR|^ +#([0-9]|1[0-5]) ' "$log.run" | head -16 >&2
        status=1
      fi
    done
    echo "fuzz_trace: $known reports inside libhdf5 in $run fuzzing processes (tolerated: see above)" >&2
  else
    if ! "$binary" "$corpus/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$build/crashes/$target/" >"$log" 2>&1; then
      echo "FAIL: fuzz_$target found a crash:" >&2
      grep -E 'ERROR|SUMMARY|^ +#[0-5] ' "$log" | head -12 >&2
      status=1
    fi
  fi
  grep -E 'Done [0-9]+ runs' "$log" | tail -1 >&2 || true
done
exit $status
