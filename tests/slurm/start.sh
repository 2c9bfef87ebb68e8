#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `slurm` (tests/test_slurm.py).
#
#   bash tests/slurm/start.sh      # installs munge + SLURM (Debian/Ubuntu packages) if missing
#   bash tests/slurm/stop.sh       # stops every daemon this script started
#
# munged, slurmctld and slurmd run as plain background daemons (no systemd, no cgroups:
# proctrack/linuxproc, task/none), for a node named localhost with 2 CPUs in one partition
# (`debug`), with job requeue allowed. Their config, state, sockets and logs live in one
# folder, STM_LAB_SLURM_DIR (default /tmp/stm_lab_slurm); the SLURM commands find the cluster
# through SLURM_CONF=$STM_LAB_SLURM_DIR/slurm.conf (the tests look there by themselves).
# The daemons run as root (slurmd must, to start jobs as their user): run this as root or
# with password-less sudo.
#
# Accounting: no slurmdbd (it needs a MariaDB server). Finished jobs are recorded by
# jobcomp/filetxt in $STM_LAB_SLURM_DIR/jobcomp.log (one line per job, array ids included),
# and slurmctld keeps finished jobs for `scontrol show job` for MinJobAge=600 s. `sacct` is
# therefore unavailable: submitit, which polls it, learns a job's end from its result file.
#
# Environment: STM_LAB_SLURM_DIR (the folder), STM_LAB_SLURM_PORT (slurmctld's port; slurmd
# uses the next one; default 6817), STM_LAB_SLURM_CPUS (default 2), STM_LAB_SLURM_WAIT
# (seconds to wait for the node to be idle; default 60).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
DIR=${STM_LAB_SLURM_DIR:-/tmp/stm_lab_slurm}
PORT=${STM_LAB_SLURM_PORT:-6817}
CPUS=${STM_LAB_SLURM_CPUS:-2}
WAIT=${STM_LAB_SLURM_WAIT:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo -n "$@"; fi; }
fail() {
    echo "tests/slurm/start.sh: $*" >&2
    for log in "$DIR"/log/*.log; do
        [[ -f $log ]] && { echo "--- $log (last lines)" >&2; as_root tail -n 15 "$log" >&2; }
    done
    STM_LAB_SLURM_DIR=$DIR bash "$HERE/stop.sh" >&2 || true
    exit 1
}

missing=()
for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || fail "${missing[*]} not found and no apt-get to install them: install munge and SLURM (slurmctld, slurmd, slurm-client) by hand"
    echo "installing munge and SLURM (missing: ${missing[*]})"
    as_root apt-get update -qq || fail "apt-get update failed"
    # The packages' own services are not started (no systemd here): only the daemons below run.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null || fail "apt-get install failed"
fi

# A cluster left over from an earlier start (same folder) is stopped first.
[[ -d $DIR ]] && STM_LAB_SLURM_DIR=$DIR bash "$HERE/stop.sh" >/dev/null 2>&1 || true
as_root rm -rf "$DIR"
as_root mkdir -p "$DIR"/{munge,state,spool,log}
# munged insists that everyone may traverse to its socket, and that its key is private.
as_root chmod 755 "$DIR" "$DIR/munge"

as_root dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
as_root chmod 600 "$DIR/munge/munge.key"
as_root munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" || fail "munged did not start"

MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
as_root tee "$DIR/slurm.conf" >/dev/null <<CONF
# Written by tests/slurm/start.sh: a one-node test cluster on localhost.
ClusterName=stmlab
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The node is what this file says, whatever the machine has (no DRAIN on a smaller machine).
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# Finished jobs stay visible to scontrol for 10 minutes (there is no accounting database).
MinJobAge=600
KillWait=30
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$DIR/slurm.conf

as_root env SLURM_CONF="$SLURM_CONF" slurmctld -i || fail "slurmctld did not start"
as_root env SLURM_CONF="$SLURM_CONF" slurmd -N localhost || fail "slurmd did not start"

state=""
for ((i = 0; i < WAIT * 2; i++)); do
    state=$(sinfo -h -N -n localhost -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.5
done
[[ $state == idle ]] || fail "the node is not idle after ${WAIT} s (state: '${state:-no answer}')"
echo "SLURM is up in $(($(date +%s) - T0)) s: node localhost idle, $CPUS CPUs, partition debug."
echo "For sinfo/squeue/sbatch in your shell: export SLURM_CONF=$SLURM_CONF"
