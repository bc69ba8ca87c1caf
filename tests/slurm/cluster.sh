#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 for the tests, in a folder of its own: munged with
# its own key and socket, slurmctld and slurmd on free ports, no accounting. Needs Debian's
# slurm-wlm and munge (tests/run.sh installs them when run as root) and root (slurmd starts
# jobs as their users).
#
#   tests/slurm/cluster.sh start DIR    # prints SLURM_CONF=DIR/slurm.conf once the node is idle
#   tests/slurm/cluster.sh stop DIR     # stops the daemons it started, by PID
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a folder for the cluster}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
    mkdir -p "$dir"/munge "$dir"/spool "$dir"/state "$dir"/log
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir"/munge
    head -c 1024 /dev/urandom > "$dir"/munge/munge.key
    chmod 400 "$dir"/munge/munge.key
    munged --foreground --force --key-file="$dir"/munge/munge.key \
        --socket="$dir"/munge/socket --pid-file="$dir"/munge/munged.pid \
        --log-file="$dir"/log/munged.log --seed-file="$dir"/munge/seed \
        >/dev/null 2>&1 &
    echo $! > "$dir"/munged.pid
    host=$(hostname -s)
    # What slurmd sees of this machine, less a margin, or the node drains.
    read -r cpus mem < <(slurmd -C | tr ' ' '\n' | awk -F= '/^CPUs=/{c=$2} /^RealMemory=/{m=$2} END{print c, m}')
    mem=$(( mem * 9 / 10 ))
    cat > "$dir"/slurm.conf <<CONF
ClusterName=medsynth-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid.daemon
SlurmdPidFile=$dir/slurmd.pid.daemon
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir"/slurm.conf
    slurmctld -D -f "$SLURM_CONF" >"$dir"/log/slurmctld.out 2>&1 &
    echo $! > "$dir"/slurmctld.pid
    slurmd -D -f "$SLURM_CONF" >"$dir"/log/slurmd.out 2>&1 &
    echo $! > "$dir"/slurmd.pid
    for _ in $(seq 1 100); do
        if [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]; then
            echo "SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 0.2
    done
    echo "cluster.sh: the node did not come up; logs in $dir/log" >&2
    tail -5 "$dir"/log/*.log "$dir"/log/*.out >&2 || true
    exit 1
    ;;
stop)
    for d in slurmd slurmctld munged; do
        if [ -f "$dir/$d.pid" ]; then
            kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
            rm -f "$dir/$d.pid"
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
