#!/usr/bin/env bash
# Fails on an include that runs upward through kvsim's layers (README "Layout"):
#   util <- traces <- policies;  traces <- hw;  policies, hw <- sim <- sim/replay <- sim/serving, sim/sweep <- tools
# Each folder may include its own headers and those of the folders below it, nothing else.
# Usage: tools/check_layers.sh [ROOT]   (ROOT: the source tree, default this checkout)
set -euo pipefail
root=${1:-"$(dirname "$0")/.."}
cd "$root"

# Folder -> the include prefixes its files may use. sim/ alone means the files directly in sim/.
declare -A allowed=(
  [util]="util"
  [traces]="util traces"
  [policies]="util traces policies"
  [hw]="util traces hw"
  [sim]="util traces policies hw sim"
  [sim/replay]="util traces policies hw sim sim/replay"
  [sim/serving]="util traces policies hw sim sim/replay sim/serving"
  [sim/sweep]="util traces policies hw sim sim/replay sim/sweep"
)

# The layer of an included path: its folder, sim's wings apart from the sim/ leaf.
layer_of() {
  case "$1" in
    sim/replay/*|sim/serving/*|sim/sweep/*) echo "${1%/*}" ;;
    */*) echo "${1%%/*}" ;;
    *) echo "" ;;
  esac
}

bad=0
checked=0
for folder in "${!allowed[@]}"; do
  [ -d "$folder" ] || continue
  for file in "$folder"/*.h "$folder"/*.cpp; do
    [ -e "$file" ] || continue
    checked=$((checked + 1))
    while IFS=: read -r line include; do
      layer=$(layer_of "$include")
      [ -n "$layer" ] || continue
      ok=0
      for a in ${allowed[$folder]}; do [ "$layer" = "$a" ] && ok=1; done
      if [ $ok = 0 ]; then
        echo "check_layers: $file:$line includes \"$include\": $folder may include only ${allowed[$folder]}" >&2
        bad=$((bad + 1))
      fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | sed -E 's/^([0-9]+):[^"]*"([^"]*)".*/\1:\2/')
  done
done
if [ $bad -gt 0 ]; then
  echo "check_layers: $bad upward include(s) in $checked files" >&2
  exit 1
fi
echo "check_layers: $checked files, every include runs downward"
