#!/bin/bash
# Submit a kvsim sweep to Slurm: an N-task job array (tools/cluster/sweep.slurm, one shard each)
# and a merge job that runs only if every shard succeeded (afterok), writing OUT/results.csv/.h5.
#   tools/cluster/submit.sh SWEEP.ini OUT N [extra sbatch options...]
# Shards and logs go to OUT.shards/ (shard-i/, logs/): kvsim merge wants OUT new or a sweep folder.
# Resubmitting the same command resumes: each shard skips the scenarios it already finished.
# Prints the merge job id on stdout. KVSIM overrides the kvsim binary (default: on PATH).
set -euo pipefail
if (($# < 3)); then
  echo "usage: $0 SWEEP.ini OUT N [sbatch options...]" >&2; exit 2
fi
sweep=$(realpath "$1"); out=$(realpath -m "$2"); n=$3; shift 3
[[ -f $sweep ]] || { echo "submit.sh: sweep file $sweep not found" >&2; exit 2; }
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: N must be a positive integer, got '$n'" >&2; exit 2; }
kvsim=$(realpath "${KVSIM:-$(command -v kvsim)}")
here=$(dirname "$(realpath "$0")")
work=$out.shards
mkdir -p "$work/logs"
array_id=$(sbatch --parsable "$@" --array="1-$n" --chdir="$work" --output="$work/logs/shard-%a.out" \
  --export="ALL,KVSIM=$kvsim,SWEEP=$sweep,OUT=$work,SHARDS=$n" "$here/sweep.slurm")
array_id=${array_id%%;*}
shards=()
for ((i = 1; i <= n; i++)); do shards+=("$work/shard-$i"); done
sbatch --parsable "$@" --job-name=kvsim-merge --dependency="afterok:$array_id" --chdir="$work" \
  --output="$work/logs/merge.out" --wrap="$(printf '%q ' "$kvsim" merge "${shards[@]}" --out "$out")"
