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

descendants() {  # descendants PID: every process below PID, deepest first
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}

# Jobs first: their step daemons (slurmstepd) and every process below them, so no job outlives
# the cluster. slurmstepd re-parents to init; ours carry this cluster's SLURM_CONF (from slurmd).
if [[ -d $DIR ]]; then
    steps=()
    for pid in $(pgrep -x slurmstepd 2>/dev/null); do
        as_root grep -qs "$DIR" "/proc/$pid/environ" && steps+=("$pid")
    done
    # The whole tree is listed before anything is killed: an orphan would re-parent to init.
    victims=()
    for pid in "${steps[@]}"; do
        victims+=($(descendants "$pid") "$pid")
    done
    for pid in "${victims[@]}"; do
        as_root kill -KILL "$pid" 2>/dev/null
    done
    ((${#steps[@]})) && echo "killed ${#steps[@]} job step(s): ${#victims[@]} processes"
fi
stop "$DIR/slurmd.pid" slurmd
stop "$DIR/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged
exit 0
