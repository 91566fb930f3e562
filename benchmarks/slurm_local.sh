#!/usr/bin/env bash
# A real scheduler for `python -m modgraph models --executor slurm`: start a single-node Slurm on this machine
# (munged, slurmctld and slurmd as root; no cgroups, no accounting), train the smoke plan through it into a
# fresh store under data/slurm/home/, check that a second run submits nothing, then stop the daemons it started.
# Needs root and the Debian packages slurm-wlm and munge (installed with apt-get when missing). `make test-slurm`.
# Everything it writes lies under data/slurm/ (configuration, state, daemon logs, the store, submitit's job files)
# except munge's key and socket, which the munge package keeps in /etc/munge and /run/munge.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
PROFILE=${PROFILE:-smoke}
BASE=$ROOT/data/slurm
HOME_DIR=$BASE/home
start=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "slurm_local.sh starts slurmctld and slurmd and needs root" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

rm -rf "$BASE"
mkdir -p "$BASE"/{state,spool,log} "$HOME_DIR"
for name in notebooks params _toc.yml; do ln -s "$ROOT/$name" "$HOME_DIR/$name"; done
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
export SLURM_CONF=$BASE/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=modgraph
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

started=()
stop() {
    scancel --user=root 2>/dev/null || true
    for name in "${started[@]}"; do
        pid=$(cat "$BASE/$name.pid" 2>/dev/null || true)
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
}
trap stop EXIT

if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key; chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    ln -sf /run/munge/munged.pid "$BASE/munged.pid"
    started+=(munged)
fi
slurmctld && started+=(slurmctld)
nice -n "${NICE:-0}" slurmd && started+=(slurmd)
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break
    sleep 1
done
sinfo
up=$(( $(date +%s) - start ))
echo "single-node Slurm up in ${up} s"

run_models() {
    MODGRAPH_HOME=$HOME_DIR PYTHONPATH=$ROOT/src "$PY" -m modgraph models --profile "$PROFILE" --executor slurm \
        --gpus-per-job 0 --cpus-per-job 1 --device cpu --timeout-min 60 --poll 2 2>>"$BASE/log/models.stderr"
}  # stderr: submitit's "Bypassing sacct error" warnings (no accounting here: a job shows as queued until done)
t0=$(date +%s)
run_models | tee "$BASE/first.log"
grep -q "job(s) in .*s: [0-9]* done$" "$BASE/first.log" || { echo "FAIL: a job failed (see above)" >&2; exit 1; }
first=$(( $(date +%s) - t0 ))
t0=$(date +%s)
run_models | tee "$BASE/second.log"
second=$(( $(date +%s) - t0 ))
grep -q "^0 of .* models to train" "$BASE/second.log" || { echo "FAIL: the second run still had models to train" >&2; exit 1; }
grep -q "^0 job(s) in .*: nothing to train" "$BASE/second.log" || { echo "FAIL: the second run submitted jobs" >&2; exit 1; }
MODGRAPH_HOME=$HOME_DIR PYTHONPATH=$ROOT/src "$PY" -m modgraph plan --profile "$PROFILE" | tail -1
echo "slurm_local.sh: OK; Slurm up ${up} s, first models run ${first} s, second ${second} s, total $(( $(date +%s) - start )) s"
