#!/usr/bin/env bash
# Stop the test cluster of tests/slurm/start.sh: every daemon it started (slurmd, slurmctld,
# munged, found by their pid files in STM_LAB_SLURM_DIR), and the job processes still running
# under slurmd. Safe to run at any time, twice, or after a start that failed half-way.
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
DIR=${STM_LAB_SLURM_DIR:-/tmp/stm_lab_slurm}
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo -n "$@"; fi; }

# A pid file names a daemon of ours only if that process still runs the expected program.
ours() {  # ours PIDFILE NAME -> the pid, or nothing
    local pid
    pid=$(as_root cat "$1" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [[ $(as_root cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && echo "$pid"
}

stop() {  # stop PIDFILE NAME: SIGTERM, then SIGKILL after 10 s
    local pid
    pid=$(ours "$1" "$2")
    [[ -n $pid ]] || return 0
    as_root kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        as_root kill -0 "$pid" 2>/dev/null || { echo "stopped $2 ($pid)"; return 0; }
        sleep 0.1
    done
    as_root kill -KILL "$pid" 2>/dev/null
    echo "killed $2 ($pid)"
}

# Jobs first: their step daemons (slurmstepd) and everything under them, so no job outlives
# the cluster. slurmstepd re-parents to init, so it is found by its job's spool folder.
if [[ -d $DIR ]]; then
    for pid in $(pgrep -x slurmstepd 2>/dev/null); do
        if as_root grep -qs "$DIR" "/proc/$pid/environ" "/proc/$pid/cmdline" \
            || [[ $(as_root readlink "/proc/$pid/cwd" 2>/dev/null) == "$DIR"* ]]; then
            as_root pkill -KILL -P "$pid" 2>/dev/null
            as_root kill -KILL "$pid" 2>/dev/null && echo "killed slurmstepd ($pid)"
        fi
    done
fi
stop "$DIR/slurmd.pid" slurmd
stop "$DIR/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged
exit 0
