#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests and for trying launch/slurm.sbatch
# without a cluster: Debian's slurm-wlm (22.05) with slurmctld and slurmd on 127.0.0.1, all
# state, logs and the configuration in one folder.
#
# Usage: launch/slurm-local.sh up|down|env|status
#
#   up      installs slurm-wlm when it is missing (as root: apt-get; otherwise it says what to
#           install), writes DIR/slurm.conf for this machine (its hostname, CPUs and memory as
#           `slurmd -C` reports them), starts slurmctld and slurmd and waits until the node is
#           idle. Prints the line `eval "$(launch/slurm-local.sh env)"` wants.
#   env     prints `export SLURM_CONF=DIR/slurm.conf`: Slurm's commands (sbatch, srun, squeue,
#           scontrol, scancel, sinfo) then talk to this cluster:
#               eval "$(launch/slurm-local.sh env)"; sbatch --nodes=1 launch/slurm.sbatch
#   status  says whether the daemons run and prints `sinfo`
#   down    cancels the cluster's jobs, stops both daemons (their pids, from DIR) and removes DIR
#
#   DIR is $CONTRAST_SLURM_DIR, else ${TMPDIR:-/tmp}/contrast-slurm. Two clusters can run at
#   once in two folders: each gets ports of its own (free ones, chosen at `up`).
#
# The configuration is for a test machine, not a cluster (docs/launching.md, "A Slurm cluster on
# this machine", lists what a real slurm.conf does differently):
#   AuthType=auth/none, CredType=cred/none  no munge: requests are not authenticated, so any
#                         local user could act as any other. Acceptable on one machine for tests;
#                         a real cluster uses auth/munge with a key shared by its nodes.
#   ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no cgroup.conf  containers (this
#                         one included) often cannot create cgroups; jobs are tracked by their
#                         process tree and not bound to CPUs (srun --cpu-bind prints "cluster
#                         configuration lacks support for cpu binding" and runs unbound).
#   AuthInfo=cred_expire=5, SchedulerParameters=sched_interval=2  a requeued job becomes
#                         eligible cred_expire + 1 s after the requeue (Slurm's default: 121 s)
#                         and the scheduler looks at the whole queue every 2 s (default 60 s), so
#                         a requeued job starts again within ~8 s: the tests' cycles take seconds.
#   TmpFS=DIR/tmp          srun's PMIx plugin keeps a folder per job step there, named by job id
#                         (/tmp/spmix_appdir_UID_JOB.STEP by default): every new cluster counts
#                         jobs from 1 again, so two clusters, or one after a killed one, would
#                         meet the other's folder and fail to launch the step.
#   SlurmctldDebug=debug2  the controller logs each of its time-limit checks ("Testing job time
#                         limits"), every 30 s: a job's --signal arrives at the first check at
#                         most 30 s before the time it asks for.
set -euo pipefail

me=launch/slurm-local.sh
usage() { sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
fail() { echo "$me: $1" >&2; exit 1; }

dir=${CONTRAST_SLURM_DIR:-${TMPDIR:-/tmp}/contrast-slurm}
conf=$dir/slurm.conf
export SLURM_CONF=$conf

# The daemon whose pid file is FILE, when it runs.
running_pid() {
    local pid
    [[ -r $1 ]] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# A TCP port nobody listens on, from 20000-29999, not in the list given.
free_port() {
    local port taken
    taken=$(ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' || true)
    for _ in {1..200}; do
        port=$(( 20000 + RANDOM % 10000 ))
        if ! grep -qx "$port" <<< "$taken" && [[ " $* " != *" $port "* ]] \
            && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"; return 0
        fi
    done
    fail "found no free TCP port in 20000-29999"
}

# Runs a daemon with no signal blocked or ignored: a test runner blocks SIGUSR1 and a
# non-interactive shell's background jobs ignore SIGINT, and slurmd's job steps would inherit
# both (a rank could not receive the stop signal). perl-base is part of every Debian system.
clean_signals() {
    perl -MPOSIX -e '$SIG{$_} = "DEFAULT" for qw(INT HUP TERM QUIT USR1 USR2); sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die "exec $ARGV[0]: $!\n"' "$@"
}

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && return 0
    if [[ $(id -u) -ne 0 ]]; then
        fail "Slurm is not installed; install it with: sudo apt-get install -y --no-install-recommends slurm-wlm"
    fi
    echo "$me: installing slurm-wlm (Debian's Slurm: slurmctld, slurmd, the client commands)" >&2
    # Debian's postinst scripts try to start the daemons with the system's configuration; a
    # container's policy-rc.d refuses, which is what we want: this script starts its own.
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >&2 \
        || fail "apt-get install slurm-wlm failed (see above)"
}

write_config() {
    local node user ctld_port slurmd_port hardware
    node=$(hostname -s)
    user=$(id -un)
    ctld_port=$(free_port)
    slurmd_port=$(free_port "$ctld_port")
    # slurmd -C prints this machine's node line: NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=..
    # CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
    hardware=$(slurmd -C 2>/dev/null | head -n 1)
    [[ $hardware == NodeName=* ]] || fail "slurmd -C did not describe this machine: '$hardware'"
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/tmp"
    cat > "$conf" <<EOF
# Written by $me up: a one-node cluster on this machine (docs/launching.md).
ClusterName=contrast
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
TmpFS=$dir/tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=debug2
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
JobRequeue=1
$hardware NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

log_tails() {
    local log
    for log in "$dir"/log/*.log; do
        [[ -r $log ]] || continue
        echo "--- last lines of $log:" >&2
        grep -v 'debug2:' "$log" | tail -n 8 >&2
    done
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n 1; }

up() {
    if ctld=$(running_pid "$dir/slurmctld.pid") && slurmd_pid=$(running_pid "$dir/slurmd.pid"); then
        echo "$me: already up in $dir (slurmctld $ctld, slurmd $slurmd_pid)" >&2
        echo "export SLURM_CONF=$(printf '%q' "$conf")"
        return 0
    fi
    [[ ! -e $dir ]] || stop_daemons quiet
    rm -rf "$dir"
    install_slurm
    write_config
    local state=""
    clean_signals slurmctld -f "$conf" -c >/dev/null 2>&1 || { log_tails; stop_daemons quiet; fail "slurmctld did not start (log above; the configuration is $conf)"; }
    clean_signals slurmd -f "$conf" -N "$(hostname -s)" >/dev/null 2>&1 || { log_tails; stop_daemons quiet; fail "slurmd did not start (log above; the configuration is $conf)"; }
    for _ in {1..150}; do
        state=$(node_state)
        [[ $state == idle ]] && break
        sleep 0.2
    done
    if [[ $state != idle ]]; then
        log_tails
        stop_daemons quiet
        fail "the node did not become idle within 30 s (state '${state:-none}'; log above)"
    fi
    echo "$me: up in $dir: node $(hostname -s) idle, $(sinfo -h -N -o '%c CPUs, %m MB'), slurmctld port $(sed -n 's/^SlurmctldPort=//p' "$conf")" >&2
    echo "export SLURM_CONF=$(printf '%q' "$conf")"
}

# Stops what runs of the cluster in DIR: its jobs, then both daemons by their pids.
stop_daemons() {
    local quiet=${1:-} pids=() pid jobs
    if [[ -r $conf ]] && running_pid "$dir/slurmctld.pid" >/dev/null; then
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086  # job ids are words
            scancel $jobs 2>/dev/null || true
            for _ in {1..100}; do [[ -z $(squeue -h -t R,CG -o %i 2>/dev/null) ]] && break; sleep 0.1; done
        fi
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    for name in slurmctld slurmd; do
        pid=$(running_pid "$dir/$name.pid") && pids+=("$pid")
    done
    (( ${#pids[@]} > 0 )) || return 0
    for _ in {1..100}; do
        local alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        (( ${#alive[@]} > 0 )) || return 0
        sleep 0.1
    done
    [[ -n $quiet ]] || echo "$me: a daemon did not stop within 10 s; killing ${pids[*]}" >&2
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

down() {
    if [[ ! -e $dir ]]; then
        echo "$me: no cluster in $dir" >&2
        return 0
    fi
    stop_daemons
    rm -rf "$dir"
    echo "$me: down; removed $dir" >&2
}

status() {
    local ctld slurmd_pid
    ctld=$(running_pid "$dir/slurmctld.pid") || ctld=""
    slurmd_pid=$(running_pid "$dir/slurmd.pid") || slurmd_pid=""
    if [[ -n $ctld && -n $slurmd_pid ]]; then
        echo "$me: up in $dir (slurmctld $ctld, slurmd $slurmd_pid)"
        sinfo
    else
        echo "$me: not up in $dir (slurmctld: ${ctld:-not running}, slurmd: ${slurmd_pid:-not running})"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) [[ -r $conf ]] || fail "no cluster in $dir: run $me up first"; echo "export SLURM_CONF=$(printf '%q' "$conf")" ;;
    status) status ;;
    -h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
