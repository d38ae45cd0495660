#!/usr/bin/env bash
# Runs every scenario in configs/scenarios/ and the smoke sweep with two kvsim binaries and compares
# their outputs byte for byte: the check that a refactoring changed no result (issue 16).
# Usage: tools/compare_outputs.sh OLD_KVSIM NEW_KVSIM [WORKDIR] [SCENARIO.ini ...]
# Outputs of OLD are kept in WORKDIR/old and reused when present (delete them to rerun). HDF5 files
# are compared with h5diff when installed (their headers carry object times), the rest with cmp.
# KVSIM_COMPARE_OLD_ONLY=1 only produces OLD's outputs (e.g. while NEW is still building).
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2")
work=${3:-/tmp/kvsim-compare}
shift $(( $# >= 3 ? 3 : $# ))
cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(configs/scenarios/*.ini configs/sweeps/smoke.ini)

run_all() {  # binary outdir
  local bin=$1 out=$2
  mkdir -p "$out"
  for s in "${scenarios[@]}"; do
    local name; name=$(basename "$s" .ini)
    [ -e "$out/$name.done" ] && continue
    rm -rf "$out/$name"
    if [[ $s == configs/sweeps/* ]]; then
      "$bin" sweep "$s" --out "$out/$name" --quiet
    else
      "$bin" run "$s" --out "$out/$name" --quiet > "$out/$name.table"
    fi
    touch "$out/$name.done"
  done
}
run_all "$old" "$work/old"
[ "${KVSIM_COMPARE_OLD_ONLY:-0}" = 1 ] && exit 0
rm -rf "$work/new"
run_all "$new" "$work/new"

status=0
while IFS= read -r -d '' file; do
  rel=${file#"$work/old/"}
  other="$work/new/$rel"
  [[ $rel == *.done ]] && continue
  if [ ! -e "$other" ]; then echo "compare_outputs: missing in new: $rel"; status=1; continue; fi
  if [[ $rel == *.h5 ]] && command -v h5diff >/dev/null; then
    h5diff -q "$file" "$other" >/dev/null || { echo "compare_outputs: differs: $rel"; status=1; }
  elif ! cmp -s "$file" "$other"; then
    echo "compare_outputs: differs: $rel"; status=1
  fi
done < <(find "$work/old" -type f -print0 | sort -z)
while IFS= read -r -d '' file; do
  rel=${file#"$work/new/"}
  [ -e "$work/old/$rel" ] || { echo "compare_outputs: only in new: $rel"; status=1; }
done < <(find "$work/new" -type f -print0 | sort -z)
[ $status = 0 ] && echo "compare_outputs: ${#scenarios[@]} scenario files, every output identical"
exit $status
