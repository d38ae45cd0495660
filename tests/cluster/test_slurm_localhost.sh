#!/bin/bash
# Brings up a one-node Slurm (munge + slurmctld + slurmd) on localhost, runs the smoke sweep as a
# 3-task job array plus dependent merge via tools/cluster/submit.sh, and checks the merged
# results.csv is byte-identical to a local unsharded run. Fails, with one reason, when Slurm
# cannot be started: a cluster test that silently passes proves nothing.
#   test_slurm_localhost.sh KVSIM REPO_ROOT
set -uo pipefail
kvsim=$(realpath "$1"); root=$(realpath "$2")
fail() { echo "cluster.slurm_localhost FAILED: $*" >&2; exit 1; }
((EUID == 0)) || fail "must run as root (it starts munged, slurmctld and slurmd)"
for b in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$b" >/dev/null ||
    fail "$b not found: install Debian packages slurm-wlm munge (tools/bootstrap.sh)"
done

tmp=$(mktemp -d /tmp/kvsim-slurm.XXXXXX); chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for f in "$tmp"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.5; rm -rf "$tmp"
}
trap cleanup EXIT

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
port_base=$((20000 + RANDOM % 20000))  # avoid clashing with a real Slurm or a parallel run

# munge: own key, socket and state in tmp so no system config is touched.
mkdir -p "$tmp/munge" "$tmp/spool" "$tmp/state" "$tmp/log"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$tmp/munge"; chmod 400 "$tmp/munge/munge.key"
sock="$tmp/munge/munge.socket"
munged --force --key-file="$tmp/munge/munge.key" --socket="$sock" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/seed" \
  || fail "munged did not start: $(tail -2 "$tmp/log/munged.log" 2>/dev/null)"

cat > "$tmp/slurm.conf" <<CONF
ClusterName=kvsimtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
AuthType=auth/munge
AuthInfo=socket=$sock
CryptoType=crypto/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
NodeName=$host NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$tmp/slurm.conf"

slurmctld -i -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 ||
  fail "slurmctld did not start: $(tail -3 "$tmp/log/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" >"$tmp/log/slurmd.out" 2>&1 ||
  fail "slurmd did not start: $(tail -3 "$tmp/log/slurmd.log" 2>/dev/null)"

# Wait (bounded) for the node to register as idle.
for ((t = 0; t < 30; t++)); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -1)
  [[ $state == idle* || $state == mix* ]] && break
  sleep 1
done
[[ $state == idle* || $state == mix* ]] ||
  fail "node $host never became idle (state '${state:-none}'): $(tail -3 "$tmp/log/slurmctld.log")"

out="$tmp/cluster"
merge_id=$(KVSIM="$kvsim" "$root/tools/cluster/submit.sh" "$root/configs/sweeps/smoke.ini" "$out" 3) ||
  fail "submit.sh failed"
# Local reference while the cluster works.
"$kvsim" sweep "$root/configs/sweeps/smoke.ini" --out "$tmp/local" --quiet -j 1 ||
  fail "local kvsim sweep failed"

for ((t = 0; t < 75; t++)); do
  squeue -h 2>/dev/null | grep -q . || break
  sleep 1
done
squeue -h | grep -q . && fail "jobs still queued after 75 s: $(squeue -h)"
[[ -f $out/results.csv ]] || fail "merge job $merge_id wrote no results.csv; logs: $(tail -n3 "$out".shards/logs/*.out 2>/dev/null)"
cmp "$out/results.csv" "$tmp/local/results.csv" || fail "cluster results.csv differs from the local run"
for i in 1 2 3; do
  [[ -d $out.shards/shard-$i/scenarios ]] || fail "shard $i wrote no scenarios"
done
echo "cluster.slurm_localhost: 3 shards + merge on $host == local run ($(wc -l <"$out/results.csv") lines)"
