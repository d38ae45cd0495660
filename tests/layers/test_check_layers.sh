#!/usr/bin/env bash
# tools/check_layers.sh passes on this tree and fails on a tree with one upward include.
set -euo pipefail
source_dir=$1
bash "$source_dir/tools/check_layers.sh" "$source_dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/util" "$tmp/sim/replay" "$tmp/sim/serving"
printf '#include "util/a.h"\n' > "$tmp/util/a.cpp"
printf '#include "sim/replay/run.h"\n#include "util/a.h"\n' > "$tmp/sim/serving/ok.cpp"
bash "$source_dir/tools/check_layers.sh" "$tmp"
for upward in 'util/b.cpp:#include "sim/scenario.h"' 'sim/replay/c.cpp:#include "sim/serving/study.h"' \
              'sim/serving/d.cpp:#include "sim/sweep/run.h"'; do
  file=${upward%%:*}
  printf '%s\n' "${upward#*:}" > "$tmp/$file"
  if bash "$source_dir/tools/check_layers.sh" "$tmp" 2>/dev/null; then
    echo "test_check_layers: $file (${upward#*:}) was not refused" >&2; exit 1
  fi
  rm "$tmp/$file"
done
echo "test_check_layers: 3 upward includes refused, clean trees pass"
