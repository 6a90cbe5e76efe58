#!/usr/bin/env bash
# Runs a command on P MPI ranks of this machine, of a hostfile's machines, or of a Slurm
# allocation, with the settings contrast wants, and prints them before starting.
#
# Usage: launch/mpirun.sh [OPTIONS] COMMAND [ARGS...]
#
#   -np P, -n P        ranks (default: $RANKS, else one per socket with --bind socket, else 2)
#   --hostfile FILE    Open MPI hostfile ("node1 slots=32" per line) for several machines;
#                      inside a Slurm allocation mpirun takes the nodes from Slurm instead
#   --netns            on the hosts of launch/netns-cluster.sh (several hosts on this machine):
#                      its hostfile (or --hostfile naming some of them), its launcher agent
#                      instead of ssh, TCP on its subnet only
#   --bind MODE        core:   one rank per core, bound to it; OpenBLAS 1 thread per rank
#                      socket: one rank per socket, bound to it; OpenBLAS threads = cores per
#                              socket (from lscpu or /sys; set CORES_PER_SOCKET to override)
#                      none:   ranks unbound, OpenBLAS 1 thread per rank (the default)
#   --threads T        OpenBLAS / OpenMP threads per rank instead of the mode's default (with
#                      --bind core a rank is bound to T cores). contrast train takes its thread
#                      count from train.blas_threads: with T > 1 the script adds
#                      --set train.blas_threads=T to a contrast train command that sets none
#   --tcp              ranks talk over TCP only (--mca btl self,tcp) instead of the default:
#                      shared memory between ranks of one machine, the network between machines
#   --mca KEY VALUE    an Open MPI parameter, passed through (repeat as needed)
#   -x NAME[=VALUE]    also export NAME to the ranks (repeat as needed)
#   --mpi ARG          one extra argument for mpirun itself (repeat as needed)
#   --dry-run          print the settings and the mpirun command line on stdout; start nothing
#   -h, --help         this text
#
# The settings (ranks, hosts, binding, BLAS threads, transport, the mpirun command line) go to
# standard error before mpirun starts. --oversubscribe is added only when a run on this machine
# asks for more ranks than it has cores; Open MPI's root guard (OMPI_ALLOW_RUN_AS_ROOT*) is
# lifted only when running as root. Stop a run with Ctrl-C (SIGINT), SIGHUP, SIGTERM or SIGUSR1
# to this script: the ranks finish their step, write a checkpoint and exit 75; a second signal
# stops at once, without a checkpoint (docs/checkpoints.md). The script exits with mpirun's
# status; mpirun's "the job has been aborted ... Exit code" blocks about ranks that exited
# non-zero are left out, and a failed job ends with contrast's own last line (docs/launching.md).
# A contrast train run that ended abnormally (a rank killed, a crash, a stop at once) ends with
# a line, also appended to its train.log, saying how and the command that resumes it. An aborted
# job (the collective watchdog, a rank's error) whose mpirun has not ended CONTRAST_ABORT_GRACE
# seconds later (default 10: a host that no longer answers keeps mpirun waiting for minutes) has
# mpirun killed, and the ranks that never reported are named with their hosts. The rank
# lost is named with its host and pid ("rank 1 on node7 (pid 4242) was killed by signal 9"),
# also when it was lost during start-up, before the run directory existed. For that each rank
# writes markers in $CONTRAST_RANK_MARKERS (a temporary folder unless set; passed to the ranks
# with one more -x than the command line printed).
#
# Examples:
#   launch/mpirun.sh -np 2 .build/release/contrast train --config configs/fmnist-simclr.yaml
#   launch/mpirun.sh -np 4 --hostfile hosts --bind socket .build/release/contrast train --config X.yaml
#   launch/mpirun.sh -np 2 --tcp --dry-run .build/release/contrast bench step
set -euo pipefail

me=launch/mpirun.sh
usage() { sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
fail() { echo "$me: $1" >&2; exit 2; }
need_value() { [[ $# -ge 2 ]] || fail "$1 needs a value (see $me --help)"; }

# The command as given, for the line that says how to resume a run that ended abnormally
# (launch/train.sh passes its own in CONTRAST_LAUNCH_COMMAND).
invocation=("$0" "$@")
ranks="" hostfile="" netns=0 bind=none threads="" tcp=0 dry_run=0 mca=() exports=() extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -np|-n) need_value "$@"; ranks="$2"; shift 2 ;;
        --hostfile) need_value "$@"; hostfile="$2"; shift 2 ;;
        --netns) netns=1; shift ;;
        --bind) need_value "$@"; bind="$2"; shift 2 ;;
        --bind=*) bind="${1#--bind=}"; shift ;;
        --threads) need_value "$@"; threads="$2"; shift 2 ;;
        --tcp) tcp=1; shift ;;
        --mca) [[ $# -ge 3 ]] || fail "--mca needs a key and a value"; mca+=(--mca "$2" "$3"); shift 3 ;;
        -x) need_value "$@"; exports+=(-x "$2"); shift 2 ;;
        --mpi) need_value "$@"; extra+=("$2"); shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) fail "unknown option $1 (see $me --help)" ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || fail "no command given; example: $me -np 2 .build/release/contrast train"
[[ -z $threads || $threads =~ ^[1-9][0-9]*$ ]] || fail "--threads expects a positive number, got '$threads'"
case "$bind" in core|socket|none) ;; *) fail "--bind expects core, socket or none, got '$bind'" ;; esac
# The netns cluster's hosts are reached through its agent, not ssh, and talk over its bridge
# only: the settings a real cluster needs too, with its own agent and subnet (docs/launching.md).
if (( netns )); then
    [[ -r /run/contrast-netns/hostfile ]] || fail "--netns: no netns cluster is up (/run/contrast-netns/hostfile missing); start one with launch/netns-cluster.sh up N"
    hostfile=${hostfile:-/run/contrast-netns/hostfile}
    tcp=1
    mca+=(--mca plm_rsh_agent "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns-agent.sh" --mca plm_rsh_no_tree_spawn 1
          --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24)
fi
[[ -z $hostfile || -r $hostfile ]] || fail "hostfile $hostfile is not readable"

# This machine's sockets and cores per socket: lscpu, else /sys, else one socket of nproc
# cores; SOCKETS / CORES_PER_SOCKET override. Cores are physical (Open MPI's slots), capped at
# nproc, which honours a cgroup or affinity limit.
lscpu_field() { LC_ALL=C lscpu 2>/dev/null | awk -F: -v k="$1" '$1 == k { gsub(/[ \t]/, "", $2); print $2; exit }'; }
sockets=${SOCKETS:-} cores_per_socket=${CORES_PER_SOCKET:-}
if [[ -z $sockets || -z $cores_per_socket ]] && command -v lscpu >/dev/null; then
    [[ -n $sockets ]] || sockets=$(lscpu_field "Socket(s)")
    [[ -n $cores_per_socket ]] || cores_per_socket=$(lscpu_field "Core(s) per socket")
fi
topology=/sys/devices/system/cpu
if ! [[ $sockets =~ ^[1-9][0-9]*$ && $cores_per_socket =~ ^[1-9][0-9]*$ ]] && [[ -r $topology/cpu0/topology/physical_package_id ]]; then
    sockets=$(cat "$topology"/cpu[0-9]*/topology/physical_package_id | sort -u | wc -l)
    cores=$(for cpu in "$topology"/cpu[0-9]*/topology; do echo "$(cat "$cpu/physical_package_id") $(cat "$cpu/core_id")"; done | sort -u | wc -l)
    cores_per_socket=$(( cores / sockets ))
fi
[[ $sockets =~ ^[1-9][0-9]*$ ]] || sockets=1
[[ $cores_per_socket =~ ^[1-9][0-9]*$ ]] || cores_per_socket=$(nproc)
cores=$(( sockets * cores_per_socket ))
(( cores <= $(nproc) )) || cores=$(nproc)

if [[ -z $ranks ]]; then
    ranks=${RANKS:-2}
    [[ -n ${RANKS:-} || $bind != socket ]] || ranks=$sockets
fi
[[ $ranks =~ ^[1-9][0-9]*$ ]] || fail "-np expects a positive number, got '$ranks'"

# Where the ranks run. Only on this machine alone can the script check counts against cores.
local_only=0
if [[ -n $hostfile ]]; then
    hosts="hostfile $hostfile: $(awk '{ sub(/#.*/, ""); gsub(/^[ \t]+|[ \t]+$/, "") } NF { printf "%s%s", sep, $0; sep = ", " }' "$hostfile")"
elif [[ -n ${SLURM_JOB_ID:-} ]]; then
    hosts="Slurm allocation $SLURM_JOB_ID: ${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-?}} (mpirun takes the nodes and slots from Slurm)"
else
    local_only=1
    hosts="this machine, $(uname -n): $sockets socket(s) x $cores_per_socket cores"
fi

args=(-np "$ranks")
case "$bind" in
    none)
        threads=${threads:-1}
        args+=(--bind-to none)
        binding="none: ranks unbound, the kernel places them" ;;
    core)
        threads=${threads:-1}
        if (( local_only && ranks * threads > cores )); then
            fail "--bind core: $ranks ranks x $threads threads need $(( ranks * threads )) cores, this machine has $cores; use --bind none to oversubscribe"
        fi
        if (( threads == 1 )); then
            args+=(--map-by core --bind-to core)
            binding="core: one rank per core, bound to it"
        else
            args+=(--map-by "slot:PE=$threads" --bind-to core)
            binding="core: each rank bound to $threads cores of its own"
        fi ;;
    socket)
        threads=${threads:-$cores_per_socket}
        if (( local_only && ranks > sockets )); then
            fail "--bind socket: $ranks ranks on $sockets socket(s); one rank per socket, so -np $sockets at most here"
        fi
        args+=(--map-by ppr:1:socket --bind-to socket)
        binding="socket: one rank per socket, bound to it" ;;
esac
oversubscribed=""
if (( local_only )) && [[ $bind == none ]] && (( ranks > cores )); then
    args+=(--oversubscribe)
    oversubscribed=" (oversubscribed: $ranks ranks on $cores cores)"
fi
args+=(-x "OPENBLAS_NUM_THREADS=$threads" -x "OMP_NUM_THREADS=$threads")
if (( tcp )); then
    args+=(--mca btl self,tcp)
    transport="TCP only (--mca btl self,tcp), also between ranks of one machine"
    # Ranks of this machine alone talk over loopback: Open MPI would otherwise open its TCP
    # connections on every other interface it finds (its default excludes only loopback), such
    # as the netns cluster's bridge, and a job hung for good when the test suite took that
    # bridge down while it ran.
    if (( local_only && ! netns )) && [[ " ${mca[*]-} " != *" btl_tcp_if_"* ]]; then
        args+=(--mca btl_tcp_if_include lo)
        transport="TCP only (--mca btl self,tcp), also between ranks of one machine, over loopback (btl_tcp_if_include lo)"
    fi
    (( ! netns )) || transport="TCP only (--mca btl self,tcp) on the netns cluster's bridge, 10.77.0.0/24"
else
    transport="Open MPI's default: shared memory (vader) between ranks of one machine, the network between machines"
fi
[[ -z $hostfile ]] || args+=(--hostfile "$hostfile")
args+=(${mca[@]+"${mca[@]}"} ${exports[@]+"${exports[@]}"} ${extra[@]+"${extra[@]}"})

# contrast train sets OpenBLAS's thread count from train.blas_threads (default 1), whatever the
# environment says: when the ranks are to use more threads, say so on its command line too.
command_args=("$@")
blas_note=""
if (( threads > 1 )) && [[ $(basename -- "$1") == contrast && ${2:-} == train && "$*" != *train.blas_threads* ]]; then
    command_args+=(--set "train.blas_threads=$threads")
    blas_note=" (added --set train.blas_threads=$threads to contrast train)"
fi

if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"

# A word as the shell reads it back: unchanged when it is plain, else in single quotes.
quote() {
    local word out=()
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then out+=("$word"); else out+=("'${word//\'/\'\\\'\'}'"); fi
    done
    echo "${out[*]}"
}

settings() {
    echo "$me: effective settings"
    echo "  ranks:        $ranks$oversubscribed"
    echo "  hosts:        $hosts"
    echo "  binding:      $binding"
    echo "  BLAS threads: $threads per rank (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS)$blas_note"
    echo "  transport:    $transport"
    [[ $(id -u) -ne 0 ]] || echo "  as root:      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
    echo "  command:      $(quote mpirun "${args[@]}" "${command_args[@]}")"
}

if (( dry_run )); then
    settings
    exit 0
fi
command -v mpirun >/dev/null || { echo "$me: mpirun not found; run launch/setup.sh (Debian package openmpi-bin)" >&2; exit 1; }
settings >&2

# Open MPI 4.1's mpirun answers SIGINT, SIGHUP and SIGTERM by sending the ranks SIGCONT, SIGTERM
# a second later and SIGKILL a second after that (odls_base_sigkill_timeout), then exits 1: too
# soon for a rank to finish its step and write a checkpoint. It forwards SIGUSR1 and SIGUSR2,
# which contrast takes as "finish the step, checkpoint, exit 75". So mpirun runs in a session of
# its own, where a terminal's Ctrl-C or hangup does not reach it, and this script passes the
# first SIGINT or SIGHUP on as SIGUSR2 (contrast's "interrupted by the user": a second signal
# then ends it at once) and the first SIGTERM or SIGUSR1 as SIGUSR1; a second signal of any
# kind is passed on as SIGINT, which ends the job at once (the ranks get SIGTERM from mpirun).
set +e
stops=0 stopped_at_once=0 mpirun_pid="" first=""
stop() {
    stops=$(( stops + 1 ))
    [[ -n $mpirun_pid ]] || { first=${first:-$3}; return 0; }
    if (( stops == 1 )); then
        echo "$me: $1: asking the ranks to finish their step, write a checkpoint and stop (send it again to stop at once)" >&2
        kill "-$3" "$mpirun_pid" 2>/dev/null
    else
        echo "$me: $1, a second stop signal: stopping at once, without a checkpoint" >&2
        stopped_at_once=$2
        kill -INT "$mpirun_pid" 2>/dev/null
    fi
}
trap 'stop SIGINT 130 USR2' INT
trap 'stop SIGHUP 129 USR2' HUP
trap 'stop SIGTERM 143 USR1' TERM
trap 'stop SIGUSR1 138 USR1' USR1
# When a rank exits non-zero, mpirun ends with blocks of its own text ("Primary job terminated
# normally, but 1 process returned a non-zero exit code. Per user-direction, the job has been
# aborted.", "mpirun detected that one or more processes exited with non-zero status ... Exit
# code: 75") that bury contrast's message. contrast exits non-zero on every rank only for a
# reason it has printed (a stop: 75; a config error: 1; see docs/launching.md), and this script
# exits with the same status, so those two blocks are dropped from mpirun's standard error;
# every other block (MPI_ABORT, a rank killed by a signal, too few slots) is kept. What is
# shown is also copied to a file as it passes, and contrast's own last line is printed again
# after mpirun's when mpirun had the last word (below). The copies ignore the stop signals, so
# a Ctrl-C cannot break mpirun's pipes.
drop_exit_status_blocks() {
    local line inside=0 block=()
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^-{20,}$ ]]; then
            if (( inside )); then
                block+=("$line"); inside=0
                [[ "${block[*]}" == *"returned a non-zero exit code"* || "${block[*]}" == *"exited with non-zero status"* ]] \
                    || printf '%s\n' "${block[@]}"
                block=()
            else
                inside=1; block=("$line")
            fi
        elif (( inside )); then
            block+=("$line")
        else
            printf '%s\n' "$line"
        fi
    done
    (( ${#block[@]} == 0 )) || printf '%s\n' "${block[@]}"
}
capture=$(mktemp "${TMPDIR:-/tmp}/contrast-mpirun.XXXXXX")
# Each rank of contrast writes its start, exit and signal markers in this folder (RankMarkers:
# Sources/Distributed/RankMarkers.swift), so a rank lost before its run directory exists, or one
# Open MPI's text does not name, is named below with its host and pid. A folder of our own
# under TMPDIR is seen by this machine's ranks; a caller whose ranks run on several machines
# may set CONTRAST_RANK_MARKERS to a folder all of them see (its old markers are removed).
if [[ -n ${CONTRAST_RANK_MARKERS:-} ]]; then
    markers=$CONTRAST_RANK_MARKERS own_markers=0
    mkdir -p "$markers" && rm -f "$markers"/rank-*.start "$markers"/rank-*.exit "$markers"/rank-*.signalled
else
    markers=$(mktemp -d "${TMPDIR:-/tmp}/contrast-ranks.XXXXXX") own_markers=1
fi
export CONTRAST_RANK_MARKERS=$markers
trap 'rm -f "$capture" "$capture.abandoned"; (( own_markers == 0 )) || rm -rf "$markers"' EXIT
exec 3> >(trap '' INT HUP TERM USR1 USR2; exec tee -a "$capture"); out_copy=$!
exec 4> >(trap '' INT HUP TERM USR1 USR2; drop_exit_status_blocks | tee -a "$capture" >&2); err_copy=$!
# setsid does not fork here (a background job of a script is no process group leader), so
# $! is mpirun's own pid.
setsid mpirun "${args[@]}" -x CONTRAST_RANK_MARKERS "${command_args[@]}" >&3 2>&4 &
mpirun_pid=$!
# A signal that came before the pid was known is acted on now.
if (( stops == 1 )); then
    kill "-$first" "$mpirun_pid" 2>/dev/null
elif (( stops > 1 )); then
    stopped_at_once=130; kill -INT "$mpirun_pid" 2>/dev/null
fi
# An aborted job (MPI_Abort: the collective watchdog, a rank's error) ends when mpirun has heard
# from every node's daemon that its ranks are gone. A node that no longer answers (its link down,
# the machine dead) never says so, and mpirun waits for TCP to give up, many minutes. So once the
# abort has come through, mpirun gets CONTRAST_ABORT_GRACE seconds (default 10) to end, and is
# then killed; the ranks that did not report the stuck collective are named below. The watcher
# reads only what was appended to the capture since it last looked.
grace=${CONTRAST_ABORT_GRACE:-10}
[[ $grace =~ ^[0-9]+$ ]] || fail "CONTRAST_ABORT_GRACE expects whole seconds, got '$grace'"
abandoned="$capture.abandoned"
(
    trap '' INT HUP TERM USR1 USR2
    offset=0 seen_at=""
    # Until mpirun has exited (a zombie counts as exited: it is our child, reaped by `wait` below).
    while [[ -r /proc/$mpirun_pid/stat && $(sed -e 's/^.*) //' "/proc/$mpirun_pid/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]; do
        if [[ -z $seen_at ]]; then
            size=$(stat -c %s "$capture" 2>/dev/null || echo 0)
            if (( size > offset )) && tail -c "+$(( offset + 1 ))" "$capture" | head -c "$(( size - offset ))" \
                    | grep -q -e 'MPI_ABORT was invoked' -e '; aborting the job ('; then
                seen_at=$SECONDS
            fi
            offset=$size
        elif (( SECONDS - seen_at >= grace )); then
            echo "$grace" > "$abandoned"
            kill -KILL "$mpirun_pid" 2>/dev/null
            break
        fi
        sleep 0.5
    done
) &
watcher=$!
while :; do
    seen=$stops
    wait "$mpirun_pid" 2>/dev/null; status=$?
    # A trapped signal ends `wait` early with a status above 128 and runs its trap; mpirun is
    # still running then, so wait again for its own status.
    if (( status > 128 && stops != seen )); then continue; fi
    break
done
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
exec 3>&- 4>&-
# The copies end once mpirun's last words are through them; bash's `wait` does not know every
# process substitution, so poll them too (for at most 5 s).
for copy in "$out_copy" "$err_copy"; do
    wait "$copy" 2>/dev/null
    for _ in {1..100}; do kill -0 "$copy" 2>/dev/null || break; sleep 0.05; done
done
# contrast's last line: the last "contrast: ..." line (its errors and stop lines) outside Open
# MPI's blocks (framed by lines of 20 dashes or more, spelt out: mawk knows no {20,}); printed
# again when mpirun had the last word (an MPI_ABORT block after a failing rank's message, say).
if (( status != 0 )); then
    own=$(awk '/^--------------------+$/ { inside = !inside; next } !inside && /^contrast: / { last = $0 } END { print last }' "$capture")
    if [[ -n $own && $own != "$(tail -n 1 "$capture")" ]]; then echo "$own" >&2; fi
fi
# mpirun killed by the watcher above: exit with the code the job was aborted with, and name
# the ranks whose stuck-collective or error line never arrived, with their hosts (from rank 0's
# world line in train.log): the ranks on a host that went away cannot reach mpirun.
silent=""
if [[ -f $abandoned ]]; then
    code=$(sed -n 's/^with errorcode \([0-9]*\)\.$/\1/p' "$capture" | head -n 1)
    status=${code:-1}
    reported=" $(sed -n 's/^contrast: rank \([0-9]*\) \(of [0-9]* \)\{0,1\}on [^:]*: .*/\1/p' "$capture" | sort -nu | tr '\n' ' ')"
    run_dir=$(sed -n 's/^run directory: //p' "$capture" | tail -n 1)
    world=$(sed -n 's/^[^ ]* world: //p' "${run_dir:-/nonexistent}/train.log" 2>/dev/null | tail -n 1)
    silent=$(echo "$world" | tr ',' '\n' | awk -v reported="$reported" '
        match($0, /rank [0-9]+ on [^ ]+/) {
            split(substr($0, RSTART, RLENGTH), w, " ")
            if (index(reported, " " w[2] " ") == 0) { ranks[w[4]] = ranks[w[4]] (ranks[w[4]] == "" ? "" : ", ") w[2]; if (!(w[4] in seen)) { seen[w[4]] = 1; order[++n] = w[4] } }
        }
        END { for (i = 1; i <= n; i++) printf "%s%s %s on %s", (i > 1 ? "; " : ""), (index(ranks[order[i]], ",") ? "ranks" : "rank"), ranks[order[i]], order[i] }')
    if [[ -n $silent ]]; then
        echo "$me: the job was aborted, but mpirun had not ended $grace s later: $silent never reported, so that host or its network link is the likely cause; mpirun was killed (CONTRAST_ABORT_GRACE sets the wait)" >&2
    else
        echo "$me: the job was aborted, but mpirun had not ended $grace s later (a node no longer answers?); mpirun was killed (CONTRAST_ABORT_GRACE sets the wait)" >&2
    fi
fi

# The ranks the job lost, one "rank R on HOST (pid P) ..." per line: those whose start marker has
# neither an exit marker (it ended through exit: finished, stopped, or an error it printed) nor a
# signal marker (mpirun's SIGTERM to the other ranks once one is lost; a user's stop signal).
# The signal that ended one comes from Open MPI's "process rank R with PID P on node H exited on
# signal S (NAME)" when that names the same rank; a rank it names otherwise (one that died
# before writing its marker or while exiting, or on a machine that cannot see the folder) is
# named from that line.
lost_ranks() {
    local rank words host pid named_rank="" named_host="" named_signal="" named_name="" found=0
    read -r named_rank named_host named_signal named_name < <(sed -n \
        's/.*process rank \([0-9]*\) with PID .* on node \([^ ]*\) exited on signal \([0-9]*\) (\([^)]*\)).*/\1 \2 \3 \4/p' "$capture" | head -n 1) || true
    for (( rank = 0; rank < ranks; rank++ )); do
        [[ -f $markers/rank-$rank.start && ! -e $markers/rank-$rank.exit && ! -e $markers/rank-$rank.signalled ]] || continue
        read -r -a words < "$markers/rank-$rank.start" || true
        host=${words[3]:-?} pid=${words[5]:-?}
        if [[ $rank == "$named_rank" ]]; then
            echo "rank $rank on $host (pid $pid) was killed by signal $named_signal ($named_name)"; found=1
        else
            echo "rank $rank on $host (pid $pid) ended abruptly (killed, crashed, or ended by the kernel's out-of-memory killer)"
        fi
    done
    if [[ -n $named_rank && $found == 0 ]]; then
        echo "rank $named_rank on $named_host was killed by signal $named_signal ($named_name)"
    fi
}

# Ranks without a start marker, when this machine's ranks have markers and they are all here (on
# several machines only a folder all of them see, given in CONTRAST_RANK_MARKERS, says so).
unstarted_ranks() {
    local rank missing=()
    [[ -n $(ls "$markers" 2>/dev/null) ]] && (( local_only || ! own_markers )) || return 0
    for (( rank = 0; rank < ranks; rank++ )); do
        [[ -f $markers/rank-$rank.start ]] || missing+=("$rank")
    done
    (( ${#missing[@]} == 0 )) || echo "rank(s) ${missing[*]} had not started contrast"
}

# A run that did not end on its own terms (a rank killed by a signal, a crash, the watchdog, an
# error, a stop at once) leaves a train.log that just stops: say how it ended and how to resume,
# on the terminal and as the log's last line. contrast's own endings say it themselves: 0
# (finished), 75 (stopped with a checkpoint: "run the same command to resume") and 65 (skipped
# steps: resuming unchanged would skip again). rank 0 prints "run directory: PATH" once the run
# is set up; before that there is no run to resume, but a rank lost then is named all the same.
if (( status != 0 && status != 75 && status != 65 || stopped_at_once != 0 )); then
    run_dir=$(sed -n 's/^run directory: //p' "$capture" | tail -n 1)
    lost=$(lost_ranks | paste -sd ';' | sed 's/;/; /g')
    [[ -n $lost ]] || lost=$(unstarted_ranks)
    if [[ -z $run_dir && -n $lost ]] && (( stopped_at_once == 0 )); then
        ending="$me: the job ended during start-up, before its run directory was set up: $lost; to start it again, run the same command: ${CONTRAST_LAUNCH_COMMAND:-$(quote "${invocation[@]}")}"
        echo "$ending" >&2
    fi
    if [[ -n $run_dir ]]; then
        lost_node=$(sed -n 's/^ *Remote daemon: .* on node \([^ ]*\)$/\1/p' "$capture" | head -n 1)
        if (( stopped_at_once )); then how="was stopped at once by a second stop signal, without a checkpoint"
        elif [[ -n $silent ]]; then how="was aborted and $silent never reported (host or link down?)"
        elif [[ -n $lost_node ]]; then how="ended: mpirun lost its daemon on $lost_node (the host died or its link dropped)${lost:+: $lost}"
        elif [[ -n $lost ]]; then how="ended: $lost"
        else how="ended with exit status $status"; fi
        newest=$(ls -d "$run_dir"/checkpoints/step-*/manifest.json 2>/dev/null | sort | tail -n 1)
        if [[ -n $newest ]]; then from="resume from checkpoint ${newest%/manifest.json}"
        else from="start it again (no checkpoint yet)"; fi
        ending="$me: the run $how; to $from, run the same command: ${CONTRAST_LAUNCH_COMMAND:-$(quote "${invocation[@]}")}"
        echo "$ending" >&2
        [[ ! -f $run_dir/train.log ]] || echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $ending" >> "$run_dir/train.log"
    fi
fi
(( stopped_at_once == 0 )) || exit "$stopped_at_once"
exit "$status"
