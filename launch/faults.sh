#!/usr/bin/env bash
# Fault-injection suite: kills, stop signals, storage, data and launch faults against real
# `contrast train` jobs under launch/mpirun.sh, each trial checked and timed (docs/reliability.md).
#
# Usage: launch/faults.sh [OPTIONS]
#
#   (no option)        the short form (~1-2 min, called by launch/test.sh): a few trials per class
#   --full             the full form: >= 30 kills at P = 2 and P = 4, every checkpoint crash
#                      point, every stop signal route, every storage / data / launch fault,
#                      NaN gradients and losses, hangs caught by the collective watchdog
#   --bin PATH         the contrast binary (default: .build/release/contrast if present, else
#                      .build/debug/contrast; launch/test.sh passes the debug build it just made)
#   --out DIR          where results.tsv and the trials' run directories go
#                      (default: runs/faults/<UTC time>); trial directories are deleted when
#                      every trial passed, unless --keep
#   --seed N           seed of the random kill times and ranks (default: from the clock; printed)
#   --only REGEX       run only the trials whose name matches REGEX (e.g. --only 'kill|sigterm')
#   --list             print the trials of the chosen form and exit
#   --keep             keep the trial directories even when everything passed
#   -h, --help         this text
#
# Every trial appends one line to DIR/results.tsv (class, ranks, trial, outcome, seconds to
# detect, steps of work lost, detail); a table per fault class is printed at the end. Exit status
# 0 when every trial survived (skipped ones, with a printed reason, do not count), 1 otherwise.
#
# Adding a fault: write one function `trial_NAME ARGS...` that calls `record CLASS P NAME
# OUTCOME DETECT LOST DETAIL` once, and add "NAME ARGS" to the short and/or full list below.
# Helpers: job_start / job_wait (bounded, hang = FAIL), rank_pids, committed_step,
# reached_step, resume_matches_reference, clean_failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

me=launch/faults.sh
usage() { sed -n '2,/^set -uo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "$me: $1" >&2; exit 2; }

full=0 bin="" out="" seed="" only="" list=0 keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --full) full=1; shift ;;
        --bin) [[ $# -ge 2 ]] || die "--bin needs a path"; bin="$2"; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out="$2"; shift 2 ;;
        --seed) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--seed needs a number"; seed="$2"; shift 2 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a regular expression"; only="$2"; shift 2 ;;
        --list) list=1; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see $me --help)" ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# The workload: configs/smoke.yaml cut down so a run takes seconds. Global batch 16 (8 virtual
# shards x 2), 512 images = 32 steps per epoch; checkpoints every EVERY steps; no evaluation
# during training (one kNN at the end), no TensorBoard.
# ---------------------------------------------------------------------------------------------
global_batch=16
if (( full )); then steps=20 every=4; else steps=12 every=3; fi
detect_bound=60      # seconds from a fault to the job's exit before the trial FAILs as a hang
run_bound=300        # seconds for a whole undisturbed run (reference, resume)

# Trials: "FUNCTION ARGS". Names in results are FUNCTION-ARGS.
short_trials=(
    "kill_random 2"
    "crash_point 2 after-manifest-tmp 0"
    "crash_point 2 mid-shard-tmp 1"
    "stop_signal 2 sigterm-ranks"
    "storage checkpoint-garbage-manifest"
    "data corrupt-shard"
    "data fewer-than-batch"
    "launch config-mismatch"
    "launch world-size"
    "launch binary-mismatch"
    "nonfinite 2 nan-grad"
    "hang 2"
)
full_trials=()
for _ in $(seq 12); do full_trials+=("kill_random 2"); done
for _ in $(seq 8); do full_trials+=("kill_random 4"); done
for _ in $(seq 4); do full_trials+=("kill_random 2 disk"); done
for point in mid-shard-tmp after-shard-tmp after-shard-rename before-manifest after-manifest-tmp after-manifest-rename before-latest after-latest; do
    full_trials+=("crash_point 2 $point 0")
done
for point in mid-shard-tmp after-shard-tmp after-shard-rename; do full_trials+=("crash_point 2 $point 1"); done
full_trials+=("crash_point 4 mid-shard-tmp 3" "crash_point 4 before-manifest 2" "crash_point 4 after-manifest-tmp 0"
              "crash_point 2 after-manifest-tmp@first 0" "crash_point 2 mid-shard-tmp@last 1")
full_trials+=("stop_signal 2 sigterm-ranks" "stop_signal 2 sigterm-one-rank" "stop_signal 2 sigusr1-mpirun"
              "stop_signal 4 sigterm-ranks" "stop_signal 4 sigusr1-mpirun")
full_trials+=("storage disk-full" "storage read-only-run-dir" "storage checkpoint-corrupt-shard"
              "storage checkpoint-deleted-shard" "storage checkpoint-garbage-manifest")
full_trials+=("data corrupt-shard" "data truncated-shard" "data wrong-dimensions" "data manifest-shape"
              "data labels-out-of-range" "data empty" "data fewer-than-batch" "data spill-dir-full")
full_trials+=("nonfinite 2 nan-grad" "nonfinite 2 nan-loss" "nonfinite 4 nan-grad" "nonfinite 2 max-skipped" "hang 2" "hang 4" "hang 2 eval")
full_trials+=("launch config-mismatch" "launch world-size" "launch resume-other-world-size"
              "launch run-dir-under-a-file" "launch read-only-run-dir" "launch binary-mismatch")
full_trials+=("host link-down" "host kill-host" "host kill-ranks")
full_trials+=("host_setup binary-mismatch" "host_setup read-only-run-dir" "host_setup node-local-run-dir" "host_setup slow-link")

if (( full )); then trials=("${full_trials[@]}"); else trials=("${short_trials[@]}"); fi
if [[ -n $only ]]; then
    chosen=()
    for trial in "${trials[@]}"; do [[ ${trial// /-} =~ $only ]] && chosen+=("$trial"); done
    trials=(${chosen[@]+"${chosen[@]}"})
fi
if (( list )); then printf '%s\n' "${trials[@]+"${trials[@]}"}" | sed 's/ /-/g'; exit 0; fi
(( ${#trials[@]} > 0 )) || die "no trial matches --only '$only'"

if [[ -z $bin ]]; then
    if [[ -x .build/release/contrast ]]; then bin=.build/release/contrast; else bin=.build/debug/contrast; fi
fi
[[ -x $bin ]] || die "no contrast binary at $bin: run swift build (or pass --bin PATH)"
[[ $bin == /* ]] || bin="$PWD/$bin"     # absolute: trials run it from wrapper scripts too
command -v mpirun >/dev/null || die "mpirun not found; run launch/setup.sh"
[[ -n $seed ]] || seed=$(( $(date +%s) % 100000 ))
RANDOM=$seed
[[ -n $out ]] || out="runs/faults/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out" || die "cannot create $out"
out=$(cd "$out" && pwd)
results="$out/results.tsv"
printf 'class\tranks\ttrial\toutcome\tdetect_s\tlost_steps\tdetail\n' > "$results"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mounts=()            # tmpfs mounts to undo on exit
netns_up=0          # a netns cluster of ours to take down on exit
cleanup() {
    local point
    for point in ${mounts[@]+"${mounts[@]}"}; do umount "$point" 2>/dev/null; done
    (( ! netns_up )) || launch/netns-cluster.sh down > /dev/null 2>&1
}
trap cleanup EXIT

echo "$me: $([[ $full == 1 ]] && echo full || echo short) form, ${#trials[@]} trials, binary $bin, seed $seed, results in $results"
echo "$me: workload: configs/smoke.yaml, global batch $global_batch, $steps steps, a checkpoint every $every; detection bound ${detect_bound}s"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
# A random number of seconds in [low, high), two decimals.
uniform() { awk -v r=$RANDOM -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + (b - a) * r / 32768 }'; }

failures=0
# record CLASS RANKS TRIAL OUTCOME(pass|FAIL|skip) DETECT_S LOST_STEPS DETAIL
record() {
    local detail=${7//$'\t'/ }
    detail=${detail//$'\n'/ | }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$detail" >> "$results"
    [[ $4 != FAIL ]] || failures=$(( failures + 1 ))
    printf '  %-5s %-44s %s\n' "$4" "$3 (P=$2)" "${detail:0:160}"
}

# The `contrast train` arguments of the workload at P ranks in RUN, plus extra --set KEY=VALUE.
train_args() {
    local ranks=$1 run=$2; shift 2
    local args=(train --config configs/smoke.yaml --set "run_dir=$run" --set "data.batch_per_rank=$(( global_batch / ranks ))"
                --set data.train_limit=512 --set data.test_limit=100 --set "train.max_steps=$steps"
                --set "checkpoint.every_steps=$every" --set eval.knn_every_epochs=0 --set monitor.tensorboard=false)
    local setting
    for setting in "$@"; do args+=(--set "$setting"); done
    printf '%s\n' "${args[@]}"
}

# job_start NAME RANKS [-x VAR=VALUE]... -- COMMAND...: starts COMMAND on RANKS ranks through
# launch/mpirun.sh in a session of its own, output in NAME.out / NAME.err. Sets JOB_PID (the
# script's pid, also the session id; mpirun and the ranks are below it), JOB_OUT, JOB_ERR, JOB_T0.
job_start() {
    local name=$1 ranks=$2; shift 2
    local launcher=()
    while [[ $# -gt 0 && $1 != -- ]]; do launcher+=("$1"); shift; done
    shift
    JOB_OUT="$name.out" JOB_ERR="$name.err" JOB_T0=$(now)
    setsid launch/mpirun.sh -np "$ranks" ${launcher[@]+"${launcher[@]}"} "$@" > "$JOB_OUT" 2> "$JOB_ERR" < /dev/null &
    JOB_PID=$!
}

# descendants PID: every process below PID. launch/mpirun.sh runs mpirun as its child in a session
# of its own (so it can turn Ctrl-C into signals mpirun forwards), so the ranks are grandchildren
# of the job, and not in its session.
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do echo "$child"; descendants "$child"; done
}

# rank_pids [TIMEOUT]: RANK_PIDS[r] = pid of rank r of the current job, waiting for them to start.
rank_pids() {
    local limit=${1:-60} start child rank host
    start=$(now)
    RANK_PIDS=()
    while kill -0 "$JOB_PID" 2>/dev/null; do
        # On the netns cluster Open MPI's daemons daemonize: the ranks are found by namespace.
        for child in $(descendants "$JOB_PID") $( (( netns_up )) && for host in $(ip netns list | awk '/^contrast-h/ { print $1 }'); do ip netns pids "$host"; done); do
            rank=$(tr '\0' '\n' 2>/dev/null < "/proc/$child/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
            [[ -n $rank ]] && RANK_PIDS[$rank]=$child
        done
        (( ${#RANK_PIDS[@]} >= JOB_RANKS )) && return 0
        awk -v a="$(now)" -v b="$start" -v l="$limit" 'BEGIN { exit !(a - b > l) }' && return 1
        sleep 0.05
    done
    return 1
}

# Ends every process of the job: its session and everything below it, by pid.
job_kill() {
    local pid
    for pid in $(descendants "$JOB_PID") $(ps -o pid= -s "$JOB_PID" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    kill -9 "$JOB_PID" 2>/dev/null
}

# job_wait BOUND: waits for the job at most BOUND seconds. Sets JOB_RC (124 and JOB_HUNG=1 when
# it had to be killed), JOB_END, and JOB_FIRST_EXIT: when the first of RANK_PIDS went away.
job_wait() {
    local bound=$1 deadline pid state
    deadline=$(awk -v a="$(now)" -v b="$bound" 'BEGIN { printf "%.6f", a + b }')
    JOB_HUNG=0 JOB_FIRST_EXIT=""
    while kill -0 "$JOB_PID" 2>/dev/null; do
        if [[ -z $JOB_FIRST_EXIT ]]; then
            for pid in ${RANK_PIDS[@]+"${RANK_PIDS[@]}"}; do
                state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)
                if [[ -z $state || $state == Z ]]; then JOB_FIRST_EXIT=$(now); break; fi
            done
        fi
        if awk -v a="$(now)" -v d="$deadline" 'BEGIN { exit !(a > d) }'; then
            job_kill
            JOB_HUNG=1
            break
        fi
        sleep 0.05
    done
    wait "$JOB_PID" 2>/dev/null
    JOB_RC=$?
    JOB_END=$(now)
    [[ -n $JOB_FIRST_EXIT ]] || JOB_FIRST_EXIT=$JOB_END
    (( JOB_HUNG == 0 )) || JOB_RC=124
}

# run_job NAME RANKS BOUND [-x ...] -- COMMAND...: start, find the ranks, wait.
run_job() {
    local name=$1 ranks=$2 bound=$3; shift 3
    JOB_RANKS=$ranks
    job_start "$name" "$ranks" "$@"
    rank_pids 30 || true
    job_wait "$bound"
}

# A crash report instead of an error message: Swift runtime traps, stack dumps, fatal signals.
stack_trace() {
    grep -hE 'Fatal error|Stack dump|[Bb]acktrace|Current stack trace|^ *#?[0-9]+ +0x[0-9a-f]{6,}|Segmentation fault|Illegal instruction|signal (4|6|7|8|11) \(|Trace/breakpoint trap|Program crashed|Assertion failed' "$@" 2>/dev/null | head -1
}

# The newest committed checkpoint's step in RUN (a directory with manifest.json), 0 if none.
committed_step() {
    local newest
    newest=$(ls -d "$1"/checkpoints/step-*/manifest.json 2>/dev/null | sort | tail -1)
    [[ -n $newest ]] || { echo 0; return; }
    newest=${newest%/manifest.json}
    echo $(( 10#${newest##*step-} ))
}

# The highest step any rank logged a step record for in RUN (0 if none).
reached_step() {
    cat "$1"/metrics/rank-*.jsonl 2>/dev/null | grep -o '"type":"step","time":[0-9.e+-]*,"step":[0-9]*' \
        | sed 's/.*"step"://' | sort -n | tail -1 | grep . || echo 0
}

# Every committed checkpoint in RUN passes `contrast checkpoint verify`; prints the first failure.
verify_all() {
    local directory
    for directory in "$1"/checkpoints/step-*; do
        [[ -f $directory/manifest.json ]] || continue
        "$bin" checkpoint verify "$directory" > /dev/null 2>&1 || { echo "checkpoint verify failed on $directory"; return 1; }
    done
}

# References: the undisturbed run at P ranks, run once per P; its weights.bin is the oracle.
declare -A reference_weights reference_seconds reference_training
reference() {
    local ranks=$1
    [[ -n ${reference_weights[$ranks]:-} ]] && return 0
    local dir="$out/reference-p$ranks"
    rm -rf "$dir"; mkdir -p "$dir"
    mapfile -t args < <(train_args "$ranks" "$dir/run")
    run_job "$dir/job" "$ranks" "$run_bound" -- "$bin" "${args[@]}"
    if [[ $JOB_RC != 0 || ! -f $dir/run/weights.bin ]]; then
        echo "$me: the reference run at P=$ranks failed (status $JOB_RC); see $dir/job.err" >&2
        tail -5 "$dir/job.err" >&2
        return 1
    fi
    reference_weights[$ranks]="$dir/run/weights.bin"
    reference_seconds[$ranks]=$(minus "$JOB_END" "$JOB_T0")
    # Seconds from the first step record to the last (each record carries its time).
    reference_training[$ranks]=$(grep -h '"type":"step"' "$dir/run/metrics/rank-0.jsonl" | sed 's/.*"time":\([0-9.]*\).*/\1/' \
        | awk 'NR == 1 { first = $1 } { last = $1 } END { printf "%.2f", last - first }')
    echo "  reference P=$ranks: $steps steps, ${reference_seconds[$ranks]} s in all, ${reference_training[$ranks]} s from the first step to the last"
}

# resume_matches_reference RUN RANKS NAME: `contrast train` again on RUN (resume: auto) must
# succeed and end with weights.bin bitwise equal to the reference's. Prints the problem if not.
# RESUME_LAUNCHER: extra options of launch/mpirun.sh for the resume (--netns: on the hosts).
RESUME_LAUNCHER=()
resume_matches_reference() {
    local run=$1 ranks=$2 name=$3; shift 3
    mapfile -t args < <(train_args "$ranks" "$run" "$@")
    run_job "$name" "$ranks" "$run_bound" ${RESUME_LAUNCHER[@]+"${RESUME_LAUNCHER[@]}"} -- "$bin" "${args[@]}"
    if (( JOB_HUNG )); then echo "resume hung (killed after ${run_bound}s)"; return 1; fi
    if [[ $JOB_RC != 0 ]]; then echo "resume exited $JOB_RC: $(grep -m1 -i error "$name.err")"; return 1; fi
    local trace; trace=$(stack_trace "$name.err" "$name.out")
    [[ -z $trace ]] || { echo "resume printed a stack trace: $trace"; return 1; }
    cmp -s "$run/weights.bin" "${reference_weights[$ranks]}" || { echo "resumed weights.bin differs from the reference"; return 1; }
}

# The first error line of job NAME.
failure_line() {
    { grep -hE 'error:' "$1.err" "$1.out"; grep -hE 'error|Error' "$1.err" "$1.out"; } 2>/dev/null | head -1 | cut -c1-220
}

# clean_failure NAME: the job failed as a user error should: non-zero, in time, no stack trace,
# an `error` line from contrast. Prints the problem, or nothing.
clean_failure() {
    local name=$1 trace
    FAILURE_LINE=$(failure_line "$name")
    if (( JOB_HUNG )); then echo "hang: still running after ${detect_bound}s"; return 1; fi
    if [[ $JOB_RC == 0 ]]; then echo "exit status 0 for a fault"; return 1; fi
    trace=$(stack_trace "$name.err" "$name.out")
    [[ -z $trace ]] || { echo "stack trace: $trace"; return 1; }
    [[ -n $FAILURE_LINE ]] || { echo "exit $JOB_RC without an error message"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Kills: one rank killed with SIGKILL at a random time, or at a checkpoint crash point.
# ---------------------------------------------------------------------------------------------
trial_count=0
next_dir() {
    trial_count=$(( trial_count + 1 ))
    TRIAL_DIR="$out/$(printf '%03d' "$trial_count")-$1"
    rm -rf "$TRIAL_DIR"; mkdir -p "$TRIAL_DIR"
    TRIAL_SETTINGS=()    # extra --set settings of the trial's runs, its resume included
}

# wait_first_step RUN: until a rank has logged a step, or the job ended.
wait_first_step() {
    local i=0
    while [[ $(reached_step "$1") == 0 ]] && kill -0 "$JOB_PID" 2>/dev/null && (( i < 1200 )); do sleep 0.05; i=$(( i + 1 )); done
}

# Where a run is, seen from outside: a checkpoint being written (a step directory without its
# manifest, or a .tmp file), before the first step, or training.
phase_of() {
    local run=$1 directory
    for directory in "$run"/checkpoints/step-*; do
        [[ -d $directory ]] || continue
        if [[ ! -f $directory/manifest.json ]] || ls "$directory" 2>/dev/null | grep -q '\.tmp$'; then echo checkpoint-write; return; fi
    done
    ls "$run"/checkpoints/*.tmp > /dev/null 2>&1 && { echo checkpoint-write; return; }
    [[ $(reached_step "$run") == 0 ]] && { echo startup; return; }
    [[ $(reached_step "$run") -ge $steps ]] && { echo after-last-step; return; }
    echo training
}

# running PID: the process exists and is not a zombie (kill -9 of a zombie succeeds and does nothing).
running() {
    local state
    state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [[ -n $state && $state != Z && $state != X ]]
}

# After a job killed by a fault: bounded exit, failing rank named, no stack trace, committed
# checkpoints verify, work lost within one checkpoint interval, resume equals the reference.
check_killed_job() {
    local class=$1 ranks=$2 name=$3 rank=$4 t_fault=$5 detail=$6
    local run="$TRIAL_DIR/run" detect lost reached committed problem="" trace
    detect=$(minus "$JOB_END" "$t_fault")
    reached=$(reached_step "$run") committed=$(committed_step "$run")
    lost=$(( reached > committed ? reached - committed : 0 ))
    trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
    if (( JOB_HUNG )); then problem="hang: job still running ${detect_bound}s after the fault"
    elif [[ $JOB_RC == 0 ]]; then problem="job exited 0 although rank $rank was killed"
    elif ! grep -qE "^launch/mpirun.sh: .*rank $rank on [^ ]+ " "$TRIAL_DIR/job.err"; then problem="no line of launch/mpirun.sh names rank $rank and its host"
    elif [[ -n $trace ]]; then problem="stack trace: $trace"
    elif (( lost > every )); then problem="lost $lost steps, more than the checkpoint interval $every"
    fi
    [[ -n $problem ]] || problem=$(verify_all "$run")
    # With data.hold: disk, the killed ranks' sample files must be gone with them.
    if [[ -z $problem && -d $TRIAL_DIR/spill ]] && [[ -n $(ls -A "$TRIAL_DIR/spill") ]]; then
        problem="files left in data.spill_dir: $(ls -A "$TRIAL_DIR/spill" | head -3 | tr '\n' ' ')"
    fi
    [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume" ${TRIAL_SETTINGS[@]+"${TRIAL_SETTINGS[@]}"})
    if [[ -z $problem ]]; then
        record "$class" "$ranks" "$name" pass "$detect" "$lost" "$detail; exit $JOB_RC; step $reached, committed $committed; resumed bit-exact"
    else
        record "$class" "$ranks" "$name" FAIL "$detect" "$lost" "$detail; $problem (in $TRIAL_DIR)"
    fi
}

# kill_random P [disk]: SIGKILL to a random rank at a random time: one trial in four during
# startup (loading data, building the model), the others between the first step and the end of
# training (a step, an all-reduce, a checkpoint write, the final evaluation). With `disk` the
# ranks keep their samples in data.spill_dir (data.hold: disk), which must be empty after the
# kill; the resume keeps them there too.
trial_kill_random() {
    local ranks=$1 name="kill-random${2:+-$2}" attempt delay rank phase t_kill
    reference "$ranks" || { record kill "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name-p$ranks"
    if [[ ${2:-} == disk ]]; then
        mkdir -p "$TRIAL_DIR/spill"
        TRIAL_SETTINGS=(data.hold=disk "data.spill_dir=$TRIAL_DIR/spill")
    fi
    local during_startup=$(( RANDOM % 4 == 0 )) high origin
    if (( during_startup )); then
        high=$(awk -v a="${reference_seconds[$ranks]}" -v b="${reference_training[$ranks]}" 'BEGIN { printf "%.2f", a - b }')
    else
        high=$(awk -v t="${reference_training[$ranks]}" 'BEGIN { printf "%.2f", 1.1 * t + 0.1 }')
    fi
    for attempt in 1 2 3; do
        mapfile -t args < <(train_args "$ranks" "$TRIAL_DIR/run" ${TRIAL_SETTINGS[@]+"${TRIAL_SETTINGS[@]}"})
        JOB_RANKS=$ranks
        job_start "$TRIAL_DIR/job" "$ranks" -- "$bin" "${args[@]}"
        rank_pids 30 || true
        origin=$JOB_T0
        if (( ! during_startup )); then wait_first_step "$TRIAL_DIR/run"; origin=$(now); fi
        delay=$(uniform 0 "$high")
        rank=$(( RANDOM % ranks ))
        awk -v t0="$origin" -v d="$delay" -v n="$(now)" 'BEGIN { s = t0 + d - n; if (s > 0) system("sleep " s) }'
        phase=$(phase_of "$TRIAL_DIR/run")
        t_kill=$(now)
        if [[ -n ${RANK_PIDS[$rank]:-} ]] && running "${RANK_PIDS[$rank]}" && kill -9 "${RANK_PIDS[$rank]}" 2>/dev/null; then
            job_wait "$detect_bound"
            if [[ $JOB_RC == 0 && $phase == after-last-step ]]; then
                # The rank had done its work and was exiting: a process in exit ignores SIGKILL.
                # A miss, not a survival: try again, earlier.
                high=$(awk -v d="$delay" 'BEGIN { printf "%.2f", d * 0.7 }')
                rm -rf "$TRIAL_DIR/run"
                continue
            fi
            check_killed_job kill "$ranks" "$name" "$rank" "$t_kill" "SIGKILL rank $rank $delay s after the $( (( during_startup )) && echo start || echo first step) ($phase)"
            return
        fi
        # The job had finished before the kill: try again, earlier.
        job_wait "$run_bound"
        high=$(awk -v d="$delay" 'BEGIN { printf "%.2f", d * 0.7 }')
        rm -rf "$TRIAL_DIR/run"
    done
    record kill "$ranks" "$name" FAIL "" "" "could not land a kill while the job ran (3 attempts; in $TRIAL_DIR)"
}

# crash_point P POINT[@first|@last] RANK: CONTRAST_CHECKPOINT_CRASH_AT kills RANK at POINT of the
# checkpoint in the middle of the run (or the first one, or the one at the end of training).
trial_crash_point() {
    local ranks=$1 spec=$2 rank=$3 point=${2%@*} at=$(( 2 * every ))
    [[ $spec == *@first ]] && at=$every
    [[ $spec == *@last ]] && at=$steps
    local name="crash-$point-rank$rank-step$at"
    reference "$ranks" || { record kill "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name-p$ranks"
    mapfile -t args < <(train_args "$ranks" "$TRIAL_DIR/run")
    run_job "$TRIAL_DIR/job" "$ranks" "$run_bound" -x "CONTRAST_CHECKPOINT_CRASH_AT=$point@rank=$rank@step=$at" -- "$bin" "${args[@]}"
    check_killed_job kill "$ranks" "$name" "$rank" "$JOB_FIRST_EXIT" "exit(9) on rank $rank at $point of step $at"
}

# ---------------------------------------------------------------------------------------------
# Stop signals: the job checkpoints, exits 75, loses no step, and resumes bit-exactly.
# ---------------------------------------------------------------------------------------------
interrupted_status=75   # Trainer.interruptedExitCode, docs/checkpoints.md

# stop_signal P sigterm-ranks|sigterm-one-rank|sigusr1-mpirun: once training is under way. Rank 0
# sleeps 100 ms a step (CONTRAST_SLOW_RANK, no effect on the numbers) so a fast build still
# leaves a window to signal in.
trial_stop_signal() {
    local ranks=$1 how=$2 name="stop-$2" attempt delay t_signal pid run
    reference "$ranks" || { record sigterm "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name-p$ranks"
    run="$TRIAL_DIR/run"
    for attempt in 1 2 3; do
        mapfile -t args < <(train_args "$ranks" "$run")
        JOB_RANKS=$ranks
        job_start "$TRIAL_DIR/job" "$ranks" -x CONTRAST_SLOW_RANK=0:100 -- "$bin" "${args[@]}"
        rank_pids 30 || true
        # The stop handler is installed once the trainer is built; signal after the first step.
        wait_first_step "$run"
        delay=$(uniform 0 "$(awk -v s="$steps" -v a="$attempt" 'BEGIN { printf "%.2f", 0.1 * s * 0.7 / (a * a) }')")
        sleep "$delay"
        (( $(reached_step "$run") < steps )) || { job_wait "$run_bound"; rm -rf "$run"; continue; }
        t_signal=$(now)
        case "$how" in
            sigterm-ranks) for pid in "${RANK_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done ;;
            sigterm-one-rank) kill -TERM "${RANK_PIDS[$(( RANDOM % ranks ))]}" 2>/dev/null ;;
            sigusr1-mpirun) kill -USR1 "$JOB_PID" 2>/dev/null ;;
        esac
        job_wait "$detect_bound"
        local detect reached committed problem="" trace
        detect=$(minus "$JOB_END" "$t_signal")
        reached=$(reached_step "$run") committed=$(committed_step "$run")
        trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
        if (( JOB_HUNG )); then problem="hang: job still running ${detect_bound}s after the signal"
        elif [[ $JOB_RC == 0 && $committed == "$steps" ]]; then
            job_wait 1; rm -rf "$run"; continue          # the run had finished its steps: again, earlier
        elif [[ $JOB_RC != "$interrupted_status" ]]; then problem="exit status $JOB_RC, expected $interrupted_status"
        elif [[ -n $trace ]]; then problem="stack trace: $trace"
        elif [[ $committed != "$reached" ]]; then problem="stopped at step $reached but the newest checkpoint is step $committed"
        elif ! grep -q 'stop requested' "$run/train.log"; then problem="train.log has no 'stop requested' checkpoint"
        fi
        [[ -n $problem ]] || problem=$(verify_all "$run")
        [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume")
        local lost=$(( reached - committed ))
        if [[ -z $problem ]]; then
            record sigterm "$ranks" "$name" pass "$detect" "$lost" "$how after step ~$reached; exit $JOB_RC; checkpoint step $committed; resumed bit-exact"
        else
            record sigterm "$ranks" "$name" FAIL "$detect" "$lost" "$how; $problem (in $TRIAL_DIR)"
        fi
        return
    done
    record sigterm "$ranks" "$name" FAIL "" "" "could not signal the job while it trained (3 attempts; in $TRIAL_DIR)"
}

# ---------------------------------------------------------------------------------------------
# In-process faults (CONTRAST_FAULT, docs/reliability.md): NaN in one rank's gradients or loss,
# a rank that hangs before a collective.
# ---------------------------------------------------------------------------------------------
# trial_nonfinite RANKS nan-grad|nan-loss|max-skipped
#   nan-grad / nan-loss: one rank's gradients / loss become NaN at step 3. The step must be skipped
#   on every rank alike (a `"skipped":true` step record), the run must finish with exit 0,
#   and its weights must equal those of a run where the other kind hit another rank at step 3.
#   max-skipped: NaN loss from step 3 on with train.max_skipped_steps 3: exit 65, nothing written.
trial_nonfinite() {
    local ranks=$1 how=$2 problem="" trace other
    next_dir "nonfinite-$how-p$ranks"
    local run="$TRIAL_DIR/run" last=$(( ranks - 1 ))
    case "$how" in
        nan-grad|nan-loss)
            mapfile -t args < <(train_args "$ranks" "$run")
            run_job "$TRIAL_DIR/job" "$ranks" "$run_bound" -x "CONTRAST_FAULT=$how@rank=$last@step=3" -- "$bin" "${args[@]}"
            local skips
            skips=$(cat "$run"/metrics/rank-*.jsonl 2>/dev/null | grep -c '"skipped":true')
            trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
            if (( JOB_HUNG )); then problem="hang"
            elif [[ $JOB_RC != 0 ]]; then problem="exit status $JOB_RC: $(failure_line "$TRIAL_DIR/job")"
            elif [[ -n $trace ]]; then problem="stack trace: $trace"
            elif (( skips < 1 )); then problem="no skipped step in the metrics"
            fi
            if [[ -z $problem ]]; then
                other=nan-loss; [[ $how == nan-loss ]] && other=nan-grad
                mapfile -t args < <(train_args "$ranks" "$TRIAL_DIR/twin")
                run_job "$TRIAL_DIR/twin" "$ranks" "$run_bound" -x "CONTRAST_FAULT=$other@rank=0@step=3" -- "$bin" "${args[@]}"
                cmp -s "$run/weights.bin" "$TRIAL_DIR/twin/weights.bin" \
                    || problem="weights differ from the run with $other on rank 0 at step 3"
            fi
            if [[ -z $problem ]]; then
                record nonfinite "$ranks" "$how" pass "" 1 "$how on rank $last at step 3: step skipped on every rank ($skips skip record(s)), same weights as $other on rank 0"
            else
                record nonfinite "$ranks" "$how" FAIL "" "" "$problem (in $TRIAL_DIR)"
            fi ;;
        max-skipped)
            mapfile -t args < <(train_args "$ranks" "$run" train.max_skipped_steps=3)
            run_job "$TRIAL_DIR/job" "$ranks" "$run_bound" -x "CONTRAST_FAULT=nan-loss@rank=0@step=3-$steps" -- "$bin" "${args[@]}"
            trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
            if (( JOB_HUNG )); then problem="hang"
            elif [[ $JOB_RC != 65 ]]; then problem="exit status $JOB_RC, expected 65"
            elif [[ -n $trace ]]; then problem="stack trace: $trace"
            elif ! grep -q 'max_skipped_steps' "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out" "$run/train.log" 2>/dev/null; then problem="no message naming train.max_skipped_steps"
            elif [[ -e $run/weights.bin ]]; then problem="weights.bin written after the stop"
            fi
            [[ -n $problem ]] || problem=$(verify_all "$run")
            if [[ -z $problem ]]; then
                record nonfinite "$ranks" "$how" pass "" "" "NaN loss from step 3: stopped after 3 skipped steps, exit 65, checkpoints intact"
            else
                record nonfinite "$ranks" "$how" FAIL "" "" "$problem (in $TRIAL_DIR)"
            fi ;;
    esac
}

# trial_hang RANKS [eval]: the last rank sleeps before a collective at step 3; with
# communication.watchdog_seconds 3 the others must name the collective and the job end (exit 69).
# eval: it sleeps as the first evaluation begins instead; the training limit (2 s) must not fire
# there, the evaluation limit (communication.eval_watchdog_seconds 5) must, saying "in evaluation".
trial_hang() {
    local ranks=$1 where=${2:-step} problem="" detect trace fault expected
    next_dir "hang-p$ranks${2:+-$2}"
    local run="$TRIAL_DIR/run" last=$(( ranks - 1 ))
    if [[ $where == eval ]]; then
        mapfile -t args < <(train_args "$ranks" "$run" communication.watchdog_seconds=2 communication.eval_watchdog_seconds=5)
        fault="hang-eval@rank=$last" expected='in evaluation; aborting the job (communication.eval_watchdog_seconds)'
    else
        mapfile -t args < <(train_args "$ranks" "$run" communication.watchdog_seconds=3)
        fault="hang@rank=$last@step=3" expected='aborting the job (communication.watchdog_seconds)'
    fi
    run_job "$TRIAL_DIR/job" "$ranks" "$detect_bound" -x "CONTRAST_FAULT=$fault" -- "$bin" "${args[@]}"
    detect=$(minus "$JOB_END" "$JOB_T0")
    trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
    if (( JOB_HUNG )); then problem="hang: the watchdog did not end the job within ${detect_bound}s"
    elif [[ $JOB_RC != 69 ]]; then problem="exit status $JOB_RC, expected 69"
    elif ! grep -q 'has not completed after' "$TRIAL_DIR/job.err"; then problem="no watchdog line naming the collective"
    elif ! grep 'has not completed after' "$TRIAL_DIR/job.err" | grep -qF "$expected"; then problem="the watchdog line does not end with: $expected"
    fi
    [[ -n $problem ]] || problem=$(verify_all "$run")
    if [[ -z $problem ]]; then
        record hang "$ranks" "hang${2:+-$2}" pass "$detect" "" "$(grep -m1 'has not completed after' "$TRIAL_DIR/job.err" | cut -c1-140)"
    else
        record hang "$ranks" "hang${2:+-$2}" FAIL "$detect" "" "$problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Host faults (root): 4 ranks on 2 hosts of launch/netns-cluster.sh, 2 to a host, talking TCP
# over the bridge; the fault strikes contrast-h2 at a random time in training.
#   link-down  its link is taken down (ip link set contrast-h2 down): the watchdog (5 s) of the
#              ranks on contrast-h1 fires, and since mpirun never hears back from contrast-h2,
#              launch/mpirun.sh ends it (CONTRAST_ABORT_GRACE 5 s) naming ranks 2, 3 on
#              contrast-h2. The run resumes on the remaining host, 2 ranks with the same global
#              batch: from the checkpoint on, its losses must follow the undisturbed P = 4 run's
#              (the same batches; only the summation order differs: 1e-3 relative).
#   kill-host  every process of contrast-h2 (its ranks and Open MPI's daemon) is killed at once,
#              as when a machine dies: mpirun must end the job naming contrast-h2, and the run
#              resumed on both hosts must end bitwise equal to the undisturbed run.
#   kill-ranks both ranks of contrast-h2 killed at once, its daemon left running (the
#              out-of-memory killer, a node's job cleanup): the same checks.
# ---------------------------------------------------------------------------------------------
# cluster_up HOSTS SLOTS: brings the hosts up; prints why not and fails when they cannot be made.
cluster_up() {
    [[ $(id -u) -eq 0 ]] || { echo "not root: cannot make network namespaces"; return 1; }
    command -v ip > /dev/null && command -v nsenter > /dev/null && command -v unshare > /dev/null \
        || { echo "ip, nsenter or unshare missing (iproute2, util-linux)"; return 1; }
    launch/netns-cluster.sh down > /dev/null 2>&1
    launch/netns-cluster.sh up "$1" --slots "$2" > "$TRIAL_DIR/cluster.log" 2>&1 \
        || { echo "launch/netns-cluster.sh up failed: $(tail -1 "$TRIAL_DIR/cluster.log")"; return 1; }
}
cluster_down() { launch/netns-cluster.sh down > /dev/null 2>&1; netns_up=0; exec 9>&-; }

# "STEP LOSS" per step of rank 0's metrics in RUN, from step FIRST on; of a step logged twice
# (done before a fault, lost, and done again by the resume) the later record.
step_losses() {
    sed -n 's/^{"type":"step",.*"step":\([0-9]*\),.*"loss":\([-0-9.e+]*\),.*/\1 \2/p' "$1/metrics/rank-0.jsonl" \
        | awk -v f="$2" '$1 >= f { loss[$1] = $2 } END { for (s in loss) print s, loss[s] }'
}

trial_host() {
    local fault=$1 ranks=4 name="host-$1" problem="" detect lost reached committed trace delay t_fault why
    reference "$ranks" || { record host "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name"
    # One netns cluster per machine at a time: the multi-host tests take the same lock.
    exec 9> /run/lock/contrast-netns.lock && flock 9
    netns_up=1      # here, not in cluster_up: that runs in a subshell
    why=$(cluster_up 2 2) || { cluster_down; record host "$ranks" "$name" skip "" "" "skipped: $why"; return; }
    local run="$TRIAL_DIR/run"
    mapfile -t args < <(train_args "$ranks" "$run" communication.watchdog_seconds=5)
    JOB_RANKS=$ranks
    # Rank 0 sleeps 0.2 s a step (CONTRAST_SLOW_RANK: no change to the numbers), so training
    # lasts about 4 s and the fault, 0.2 to 3 s after the first step, lands in it.
    CONTRAST_ABORT_GRACE=5 job_start "$TRIAL_DIR/job" "$ranks" --netns -x CONTRAST_SLOW_RANK=0:200 -- "$bin" "${args[@]}"
    rank_pids 60 || true
    wait_first_step "$run"
    delay=$(uniform 0.2 3)
    sleep "$delay"
    t_fault=$(now)
    case "$fault" in
        link-down) ip link set contrast-h2 down ;;
        kill-host) ip netns pids contrast-h2 | xargs -r kill -9 ;;
        kill-ranks) kill -9 ${RANK_PIDS[2]:-} ${RANK_PIDS[3]:-} 2>/dev/null ;;
    esac
    job_wait "$detect_bound"
    local fault_rc=$JOB_RC
    detect=$(minus "$JOB_END" "$t_fault")
    reached=$(reached_step "$run") committed=$(committed_step "$run")
    lost=$(( reached > committed ? reached - committed : 0 ))
    trace=$(stack_trace "$TRIAL_DIR/job.err" "$TRIAL_DIR/job.out")
    if (( JOB_HUNG )); then problem="hang: job still running ${detect_bound}s after the fault"
    elif [[ $fault_rc == 0 ]]; then problem="job exited 0 although contrast-h2 was cut off (fault at step $reached of $steps: too late?)"
    elif [[ $fault == link-down ]] && ! grep -q "ranks 2, 3 on contrast-h2 never reported" "$TRIAL_DIR/job.err"; then
        problem="stderr does not name ranks 2, 3 on contrast-h2: $(grep -m1 'launch/mpirun.sh: the job' "$TRIAL_DIR/job.err")"
    elif ! grep -q "contrast-h2" "$TRIAL_DIR/job.err"; then problem="stderr does not name contrast-h2"
    elif [[ -n $trace ]]; then problem="stack trace: $trace"
    elif (( lost > every )); then problem="lost $lost steps, more than the checkpoint interval $every"
    fi
    [[ -n $problem ]] || problem=$(verify_all "$run")
    local resumed=""
    if [[ -z $problem && $fault == link-down ]]; then
        # The remaining host alone, half the ranks, the same global batch.
        echo "contrast-h1 slots=2" > "$TRIAL_DIR/remaining-hosts"
        mapfile -t args < <(train_args 2 "$run" communication.watchdog_seconds=5)
        run_job "$TRIAL_DIR/resume" 2 "$run_bound" --netns --hostfile "$TRIAL_DIR/remaining-hosts" -- "$bin" "${args[@]}"
        if [[ $JOB_RC != 0 ]]; then problem="resume on contrast-h1 at P=2 exited $JOB_RC: $(failure_line "$TRIAL_DIR/resume")"
        else
            local first=$(( committed + 1 )) worst
            worst=$(join <(step_losses "$(dirname "${reference_weights[$ranks]}")" "$first" | sort -k1,1) \
                         <(step_losses "$run" "$first" | sort -k1,1) \
                    | sort -n | awk -v n=$(( steps - committed )) '{ d = ($2 - $3) / $2; if (d < 0) d = -d; if (c == 0) f = d; if (d > m) m = d; c++ }
                        END { if (c != n) { print "steps " c " of " n; exit 1 } printf "%.1e %.1e", f, m }') \
                || problem="the resumed run's steps do not line up with the reference's: $worst"
            # The first resumed step has the checkpoint's parameters and the same batch: only the
            # forward's rounding differs. Later steps drift with the bf16 all-reduce's rounding at
            # another P (a few 1e-3 in 20 steps), while one batch's loss differs from the next
            # one's by 5-30 %.
            [[ -n $problem ]] || awk -v f="${worst% *}" -v m="${worst#* }" 'BEGIN { exit !(f <= 1e-5 && m <= 2e-2) }' \
                || problem="the resumed run's losses differ from the reference's by ${worst% *} at its first step, ${worst#* } at most (limits 1e-5, 2e-2): not the same batches?"
            resumed="resumed at P=2 on contrast-h1 from step $committed, losses within ${worst% *} of the P=4 run's at the first step, ${worst#* } at most"
        fi
    elif [[ -z $problem ]]; then
        # The host is back (its processes are gone, its namespaces kept): resume on both.
        local remaining tries=0
        # Open MPI's daemon, where it survived, leaves once mpirun has ended the job.
        while remaining=$(ip netns pids contrast-h2 | wc -l); (( remaining > 0 && tries < 50 )); do sleep 0.1; tries=$(( tries + 1 )); done
        (( remaining == 0 )) || problem="$remaining processes left on contrast-h2"
        RESUME_LAUNCHER=(--netns)
        [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume")
        RESUME_LAUNCHER=()
        resumed="resumed on both hosts, bit-exact"
    fi
    cluster_down
    if [[ -z $problem ]]; then
        record host "$ranks" "$name" pass "$detect" "$lost" "fault at step $reached, exit $fault_rc; $(grep -m1 -o 'ranks 2, 3 on contrast-h2 never reported\|[^ ]* on node contrast-h2[^.]*\|lost communication with a remote daemon[^.]*' "$TRIAL_DIR/job.err"); $resumed"
    else
        record host "$ranks" "$name" FAIL "$detect" "$lost" "$problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# A host set up differently (root), on launch/netns-cluster.sh's hosts; a mount made in
# contrast-h2's own mount namespace is seen by that host alone.
#   binary-mismatch    2 hosts x 2 ranks; contrast-h2 has a copy of the binary whose build id
#                      differs in one bit bound over it: the job must end with one line naming
#                      ranks 2, 3 on contrast-h2 and their build id, and no run directory.
#   read-only-run-dir  2 hosts x 2 ranks; the folder holding run_dir is bound read-only on
#                      contrast-h2: one line naming ranks 2, 3 on contrast-h2, the checkpoint
#                      folder and "Read-only file system", and no run directory.
#   node-local-run-dir 2 hosts x 2 ranks; run_dir in each host's private scratch (the same path,
#                      a folder per host): one line naming ranks 2, 3 on contrast-h2 that do not
#                      see rank 0's file, and nothing made on either host.
#   slow-link          3 hosts x 1 rank; contrast-h2's link shaped to 20 Mbit/s both ways with tc's
#                      tbf: the run finishes and its start-up link probe warns of contrast-h2 and
#                      no other host. Time to detect: from the job's start to the warning.
# ---------------------------------------------------------------------------------------------
trial_host_setup() {
    local fault=$1 ranks=4 hosts=2 slots=2 name="host-$1" problem="" why detail="" expect=""
    [[ $fault != slow-link ]] || { ranks=3 hosts=3 slots=1; }
    next_dir "$name"
    exec 9> /run/lock/contrast-netns.lock && flock 9
    netns_up=1
    why=$(cluster_up "$hosts" "$slots") || { cluster_down; record host "$ranks" "$name" skip "" "" "skipped: $why"; return; }
    local run="$TRIAL_DIR/shared/run" extra=() mnt=/run/contrast-netns/h2.mnt
    mkdir -p "$TRIAL_DIR/shared"
    case "$fault" in
        binary-mismatch)
            local id
            id=$(readelf -n "$bin" 2>/dev/null | awk '/Build ID/ { print $3; exit }')
            if [[ -z $id ]] || ! command -v perl >/dev/null; then
                cluster_down; record host "$ranks" "$name" skip "" "" "readelf or perl missing, or the binary has no build id"; return
            fi
            perl -0777 -pe 'BEGIN { $id = pack("H*", shift) } s/\Q$id\E/substr($id, 0, -1) . chr(ord(substr($id, -1)) ^ 1)/e' \
                "$id" < "$bin" > "$TRIAL_DIR/contrast-other"
            chmod +x "$TRIAL_DIR/contrast-other"
            nsenter --mount="$mnt" mount --bind "$TRIAL_DIR/contrast-other" "$(readlink -f "$bin")" || problem="cannot bind the other build on contrast-h2"
            expect="ranks 2, 3 on contrast-h2 run build id" detail="contrast-h2 runs a binary whose build id differs in one bit" ;;
        read-only-run-dir)
            nsenter --mount="$mnt" sh -c "mount --bind '$TRIAL_DIR/shared' '$TRIAL_DIR/shared' && mount -o remount,bind,ro '$TRIAL_DIR/shared'" \
                || problem="cannot bind the folder read-only on contrast-h2"
            expect="ranks 2, 3 on contrast-h2 cannot write the checkpoint folder" detail="run_dir's folder read-only on contrast-h2 alone" ;;
        node-local-run-dir)
            run=${CONTRAST_NETNS_SCRATCH:-/tmp/contrast-netns}/local/run
            expect="ranks 2, 3 on contrast-h2 do not see the file rank 0 on contrast-h1 made in" detail="run_dir in each host's private scratch" ;;
        slow-link)
            tc qdisc replace dev contrast-h2 root tbf rate 20mbit burst 65536 latency 50ms \
                && ip netns exec contrast-h2 tc qdisc replace dev eth0 root tbf rate 20mbit burst 65536 latency 50ms \
                || problem="tc could not shape contrast-h2's link"
            extra=(monitor.link_probe_mb=1 data.batch_per_rank=8) detail="contrast-h2's link at 20 Mbit/s, 3 x 8 samples a step" ;;
    esac
    local detect=""
    if [[ -z $problem ]]; then
        mapfile -t args < <(train_args "$ranks" "$run" ${extra[@]+"${extra[@]}"})
        run_job "$TRIAL_DIR/job" "$ranks" "$run_bound" --netns -- "$bin" "${args[@]}"
        if [[ $fault == slow-link ]]; then
            local warning
            warning=$(grep -m1 'WARNING the network link of' "$run/train.log" 2>/dev/null)
            if (( JOB_HUNG )); then problem="hang: still running after ${run_bound}s"
            elif [[ $JOB_RC != 0 ]]; then problem="exit $JOB_RC: $(failure_line "$TRIAL_DIR/job")"
            elif [[ $warning != *"the network link of contrast-h2 is slow (rank 1 on contrast-h2): "* ]]; then problem="no warning names contrast-h2: ${warning:-none}"
            elif grep -q 'network link of contrast-h[13]' "$run/train.log"; then problem="another host was flagged: $(grep -m1 'network link of contrast-h[13]' "$run/train.log")"
            else
                # The warning's event record's time (Unix seconds, ms) from the job's start.
                local at
                at=$(grep -m1 '"type":"event".*the network link of contrast-h2' "$run/metrics/rank-0.jsonl" | sed -n 's/.*"time":\([0-9.e+]*\),.*/\1/p')
                [[ -z $at ]] || detect=$(minus "$at" "$JOB_T0")
                detail="$detail: $(grep -m1 -o 'contrast-h1 - contrast-h2 [0-9.]* [MG]b/s, contrast-h2 - contrast-h3 [0-9.]* [MG]b/s, contrast-h3 - contrast-h1 [0-9.]* [MG]b/s' "$run/train.log")"
            fi
        else
            problem=$(clean_failure "$TRIAL_DIR/job")
            FAILURE_LINE=$(failure_line "$TRIAL_DIR/job")
            detect=$(minus "$JOB_END" "$JOB_T0")
            [[ -n $problem ]] || grep -qF -- "$expect" "$TRIAL_DIR/job.err" || problem="the error does not say '$expect': $FAILURE_LINE"
            [[ -n $problem || ! -e $run ]] || problem="the run directory $run was created"
            local scratch=${CONTRAST_NETNS_SCRATCH:-/tmp/contrast-netns} host
            for host in 1 2; do
                [[ -n $problem || $fault != node-local-run-dir || -z $(ls -A "$scratch/h$host") ]] || problem="contrast-h$host's scratch is not empty"
            done
            detail="$detail: exit $JOB_RC: $FAILURE_LINE"
        fi
    fi
    cluster_down
    if [[ -z $problem ]]; then
        record host "$ranks" "$name" pass "$detect" 0 "$detail"
    else
        record host "$ranks" "$name" FAIL "$detect" "" "$detail: $problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Storage faults.
# ---------------------------------------------------------------------------------------------
# mount_tmpfs DIR KILOBYTES: a small file system (root only). Prints why not, and fails, if not.
mount_tmpfs() {
    [[ $(id -u) -eq 0 ]] || { echo "not root: cannot mount a tmpfs"; return 1; }
    mkdir -p "$1"
    mount -t tmpfs -o "size=${2}k" tmpfs "$1" 2>/dev/null || { echo "mount -t tmpfs failed (no CAP_SYS_ADMIN?)"; return 1; }
    mounts+=("$1")
}

# wait_for FILE SECONDS: until FILE exists or the job ends.
wait_for() {
    local file=$1 limit=$(( $2 * 20 )) i=0
    while [[ ! -e $file ]] && kill -0 "$JOB_PID" 2>/dev/null && (( i < limit )); do sleep 0.05; i=$(( i + 1 )); done
    [[ -e $file ]]
}

step_name() { printf 'step-%09d' "$1"; }

trial_storage() {
    case "$1" in
        disk-full) storage_disk_full ;;
        read-only-run-dir) storage_read_only ;;
        checkpoint-*) storage_damaged_checkpoint "${1#checkpoint-}" ;;
        *) record storage 2 "$1" FAIL "" "" "unknown storage fault" ;;
    esac
}

# The file system fills up after the first checkpoint committed: the next checkpoint fails with a
# clear error, the job stops, the committed checkpoints verify; with space again, resume is exact.
storage_disk_full() {
    local ranks=2 name=disk-full why
    reference "$ranks" || { record storage "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name"
    why=$(mount_tmpfs "$TRIAL_DIR/fs" 16384) || { record storage "$ranks" "$name" skip "" "" "skipped: $why"; return; }
    local run="$TRIAL_DIR/fs/run" t_fault
    mapfile -t args < <(train_args "$ranks" "$run")
    JOB_RANKS=$ranks
    # Rank 0 sleeps 100 ms a step (no effect on the numbers): a release build runs all the steps
    # in well under a second, and could finish before the disk fills.
    job_start "$TRIAL_DIR/job" "$ranks" -x CONTRAST_SLOW_RANK=0:100 -- "$bin" "${args[@]}"
    rank_pids 30 || true
    wait_for "$run/checkpoints/$(step_name "$every")/manifest.json" 120
    dd if=/dev/zero of="$TRIAL_DIR/fs/filler" bs=64k 2>/dev/null
    t_fault=$(now)
    job_wait "$detect_bound"
    local problem="" committed reached
    committed=$(committed_step "$run") reached=$(reached_step "$run")
    if (( JOB_HUNG )); then problem="hang: job still running ${detect_bound}s after the disk filled"
    elif [[ $JOB_RC == 0 ]]; then problem="exit status 0 with a full disk"
    else problem=$(clean_failure "$TRIAL_DIR/job")
    fi
    FAILURE_LINE=$(failure_line "$TRIAL_DIR/job")
    [[ -n $problem ]] || grep -q 'No space left on device' "$TRIAL_DIR/job.err" || problem="no 'No space left on device' in the error: $FAILURE_LINE"
    (( committed >= every )) || problem="${problem:+$problem; }no committed checkpoint left"
    # The failed save deletes its directory: a step-N/ without a manifest looks like a checkpoint.
    local partial
    for partial in "$run"/checkpoints/step-*; do
        [[ -d $partial && ! -f $partial/manifest.json ]] && problem="${problem:+$problem; }$(basename "$partial") left without a manifest"
    done
    [[ -n $problem ]] || problem=$(verify_all "$run")
    rm -f "$TRIAL_DIR/fs/filler"
    [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume")
    local lost=$(( reached > committed ? reached - committed : 0 ))
    if [[ -z $problem ]]; then
        record storage "$ranks" "$name" pass "$(minus "$JOB_END" "$t_fault")" "$lost" "16 MiB tmpfs filled after step $every: $FAILURE_LINE; checkpoints intact; resumed bit-exact after freeing space"
    else
        record storage "$ranks" "$name" FAIL "$(minus "$JOB_END" "$t_fault")" "$lost" "$problem (in $TRIAL_DIR)"
    fi
    umount "$TRIAL_DIR/fs" 2>/dev/null
}

# A run stopped half-way (rank 0 exits right after a checkpoint commits), its run directory made
# read-only, then continued: a clear error, the checkpoints intact; writable again, resume is exact.
storage_read_only() {
    local ranks=2 name=read-only-run-dir why run how
    reference "$ranks" || { record storage "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name"
    if [[ $(id -u) -eq 0 ]]; then
        why=$(mount_tmpfs "$TRIAL_DIR/fs" 65536) || { record storage "$ranks" "$name" skip "" "" "skipped: $why"; return; }
        run="$TRIAL_DIR/fs/run" how="tmpfs remounted read-only"
    else
        run="$TRIAL_DIR/run" how="chmod -R a-w"
    fi
    mapfile -t args < <(train_args "$ranks" "$run")
    local half=$(( 2 * every ))
    run_job "$TRIAL_DIR/first" "$ranks" "$run_bound" -x "CONTRAST_CHECKPOINT_CRASH_AT=after-latest@rank=0@step=$half" -- "$bin" "${args[@]}"
    if [[ $(committed_step "$run") != "$half" ]]; then
        record storage "$ranks" "$name" FAIL "" "" "setup: no checkpoint at step $half (in $TRIAL_DIR)"; return
    fi
    if [[ $(id -u) -eq 0 ]]; then mount -o remount,ro "$TRIAL_DIR/fs"; else chmod -R a-w "$run"; fi
    run_job "$TRIAL_DIR/job" "$ranks" "$detect_bound" -- "$bin" "${args[@]}"
    local problem detect
    detect=$(minus "$JOB_END" "$JOB_T0")
    problem=$(clean_failure "$TRIAL_DIR/job")
    FAILURE_LINE=$(failure_line "$TRIAL_DIR/job")
    if [[ $(id -u) -eq 0 ]]; then mount -o remount,rw "$TRIAL_DIR/fs"; else chmod -R u+w "$run"; fi
    [[ -n $problem ]] || problem=$(verify_all "$run")
    [[ -n $problem ]] || [[ $(committed_step "$run") == "$half" ]] || problem="newest checkpoint changed"
    [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume")
    if [[ -z $problem ]]; then
        record storage "$ranks" "$name" pass "$detect" 0 "$how: exit $JOB_RC: $FAILURE_LINE; checkpoints intact; resumed bit-exact once writable"
    else
        record storage "$ranks" "$name" FAIL "$detect" "" "$how: $problem (in $TRIAL_DIR)"
    fi
    [[ $(id -u) -ne 0 ]] || umount "$TRIAL_DIR/fs" 2>/dev/null
}

# While the run goes on, the newest checkpoint is damaged (a shard corrupted or deleted, or the
# manifest replaced by garbage); the job is then killed writing the next one. `checkpoint verify`
# must name the damage in one line, and resume must fall back to the one before and end exact.
storage_damaged_checkpoint() {
    local damage=$1 ranks=2 name="checkpoint-$1"
    reference "$ranks" || { record storage "$ranks" "$name" FAIL "" "" "no reference run"; return; }
    next_dir "$name"
    local run="$TRIAL_DIR/run" target=$(( 2 * every )) crash=$(( 3 * every ))
    local directory="$run/checkpoints/$(step_name "$target")" victim
    mapfile -t args < <(train_args "$ranks" "$run")
    JOB_RANKS=$ranks
    job_start "$TRIAL_DIR/job" "$ranks" -x "CONTRAST_CHECKPOINT_CRASH_AT=mid-shard-tmp@rank=1@step=$crash" -- "$bin" "${args[@]}"
    rank_pids 30 || true
    wait_for "$directory/manifest.json" 120
    local during=yes
    kill -0 "$JOB_PID" 2>/dev/null || during=no
    case "$damage" in
        corrupt-shard) victim="$directory/shard-1-of-$ranks.bin"
                       printf 'garbage!' | dd of="$victim" bs=1 seek=$(( $(stat -c %s "$victim") / 2 )) conv=notrunc 2>/dev/null ;;
        deleted-shard) victim="$directory/shard-1-of-$ranks.bin"; rm -f "$victim" ;;
        # Staged outside the checkpoint directory: commit removes files there that the manifest
        # does not name, and may still be doing so when manifest.json appears.
        garbage-manifest) victim="$directory/manifest.json"
                          head -c 700 /dev/urandom > "$TRIAL_DIR/garbage-manifest" && mv "$TRIAL_DIR/garbage-manifest" "$victim" ;;
    esac
    job_wait "$run_bound"
    local problem="" verify_out verify_status
    verify_out=$("$bin" checkpoint verify "$directory" 2>&1); verify_status=$?
    if [[ $(committed_step "$run") != "$target" && $damage != garbage-manifest ]]; then problem="setup: step $target is not the newest checkpoint"
    elif (( verify_status == 0 )); then problem="checkpoint verify passed a damaged checkpoint"
    elif [[ -n $(stack_trace <(echo "$verify_out")) ]]; then problem="checkpoint verify printed a stack trace"
    elif (( $(grep -c . <<< "$verify_out") != 1 )); then problem="checkpoint verify printed $(grep -c . <<< "$verify_out") lines, not one"
    elif ! grep -q "${victim##*/}" <<< "$verify_out"; then problem="checkpoint verify does not name ${victim##*/}: $verify_out"
    fi
    [[ -n $problem ]] || "$bin" checkpoint verify "$run/checkpoints/$(step_name $every)" > /dev/null 2>&1 || problem="the checkpoint before is damaged too"
    [[ -n $problem ]] || problem=$(resume_matches_reference "$run" "$ranks" "$TRIAL_DIR/resume")
    [[ -n $problem ]] || grep -qiE "damaged|falling back|fall back|skipp|cannot|invalid" "$run/train.log" || problem="resume did not say it passed over the damaged checkpoint"
    local lost=$(( crash - every ))
    if [[ -z $problem ]]; then
        record storage "$ranks" "$name" pass "" "$lost" "$damage in step $target (job still running: $during): verify says '${verify_out:0:120}'; resumed from step $every bit-exact"
    else
        record storage "$ranks" "$name" FAIL "" "$lost" "$damage: $problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Data faults: a prepared data set (docs/data-format.md) damaged or inconsistent. Each must stop
# the run before any step with a clear error and leave no run directory behind.
# ---------------------------------------------------------------------------------------------
good_data=""
prepared_data() {
    [[ -n $good_data ]] && return 0
    good_data="$out/data-good"
    rm -rf "$good_data"
    "$bin" prepare fashion-mnist --out "$good_data" --shards 8 --limit 512 > "$out/data-good.log" 2>&1 \
        || { echo "$me: contrast prepare failed: $(tail -1 "$out/data-good.log")" >&2; good_data=""; return 1; }
}

# write_npy FILE DTYPE SHAPE VALUES_EXPRESSION: a .npy (format 1.0) with python3's standard library.
write_npy() {
    python3 - "$@" <<'EOF'
import struct, sys
path, dtype, shape = sys.argv[1], sys.argv[2], tuple(int(s) for s in sys.argv[3].split(",") if s)
values = eval(sys.argv[4])
count = 1
for s in shape: count *= s
codes = {"|u1": "B", "<i8": "q", "<f4": "f"}
body = struct.pack("<%d%s" % (count, codes[dtype]), *[values(i) for i in range(count)])
shape_text = "(%s)" % (", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape_text)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body)
EOF
}

# prepare_npy DIR SAMPLES HEIGHT WIDTH LABEL_EXPRESSION SHARDS: a data set from generated arrays.
prepare_npy() {
    local dir=$1 n=$2 h=$3 w=$4 labels=$5 shards=$6
    mkdir -p "$dir.src"
    write_npy "$dir.src/x.npy" '|u1' "$n,$h,$w" 'lambda i: (i * 7) % 251' || return 1
    write_npy "$dir.src/y.npy" '<i8' "$n" "$labels" || return 1
    "$bin" prepare npy --features "$dir.src/x.npy" --labels "$dir.src/y.npy" --out "$dir" --shards "$shards" > "$dir.log" 2>&1
}

trial_data() {
    local fault=$1 ranks=2 data="" detail="" extra=() expect
    next_dir "data-$fault"
    # What the error must mention, so that a trial cannot pass by failing for another reason.
    case "$fault" in
        corrupt-shard|truncated-shard) expect="shard-00003.bin" ;;
        manifest-shape) expect="shard 0" ;;
        wrong-dimensions) expect="27, 27" ;;
        labels-out-of-range) expect="label" ;;
        empty) expect="dataset.json" ;;
        fewer-than-batch) expect="12 samples" ;;
        spill-dir-full) expect="No space left on device" ;;
    esac
    # A prepare that refuses the input is the clear error this trial looks for.
    local prepare_refused=""
    case "$fault" in
        corrupt-shard|truncated-shard|manifest-shape|empty)
            prepared_data || { record data "$ranks" "$fault" FAIL "" "" "could not prepare the data set"; return; }
            data="$TRIAL_DIR/data"; cp -r "$good_data" "$data"
            local shard="$data/train/shard-00003.bin"
            case "$fault" in
                corrupt-shard) printf '\xff\xff\xff\xff' | dd of="$shard" bs=1 seek=$(( $(stat -c %s "$shard") / 2 )) conv=notrunc 2>/dev/null
                               detail="4 bytes overwritten in train/shard-00003.bin" ;;
                truncated-shard) truncate -s $(( $(stat -c %s "$shard") / 2 )) "$shard"; detail="train/shard-00003.bin cut to half" ;;
                manifest-shape) python3 - "$data/train/dataset.json" <<'EOF'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
manifest["features"]["shape"] = [28, 29]
json.dump(manifest, open(path, "w"), indent=2)
EOF
                                detail="dataset.json says features [28, 29], the shards hold [28, 28]" ;;
                empty) python3 - "$data/train/dataset.json" <<'EOF'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
manifest["sample_count"] = 0
manifest["shards"] = []
json.dump(manifest, open(path, "w"), indent=2)
EOF
                       detail="train/dataset.json with 0 samples and no shards" ;;
            esac ;;
        wrong-dimensions)
            prepared_data || { record data "$ranks" "$fault" FAIL "" "" "could not prepare the data set"; return; }
            data="$TRIAL_DIR/data"; mkdir -p "$data"; cp -r "$good_data/train" "$data/train"
            prepare_npy "$data/test" 64 27 27 'lambda i: i % 10' 4 || prepare_refused="$data/test.log"
            detail="train split [28, 28] images, test split [27, 27]" ;;
        labels-out-of-range)
            data="$TRIAL_DIR/data"; mkdir -p "$data"
            prepare_npy "$data/train" 512 28 28 'lambda i: [-1, 3, 7, 1 << 40][i % 4]' 8 || prepare_refused="$data/train.log"
            [[ -n $prepare_refused ]] || prepare_npy "$data/test" 64 28 28 'lambda i: [-5, 2, 9, 1 << 40][i % 4]' 4 || prepare_refused="$data/test.log"
            extra=(loss.kind=supcon)
            detail="labels -1 and 2^40 (supcon, kNN evaluation)" ;;
        fewer-than-batch)
            data="$TRIAL_DIR/data"; mkdir -p "$data"
            prepare_npy "$data/train" 12 28 28 'lambda i: i % 10' 4 || prepare_refused="$data/train.log"
            extra=(data.virtual_shards=4)
            detail="12 samples, global batch $global_batch" ;;
        spill-dir-full)
            # data.hold: disk into a 1 MiB tmpfs already full: the samples cannot be written.
            prepared_data || { record data "$ranks" "$fault" FAIL "" "" "could not prepare the data set"; return; }
            data="$good_data"
            local why
            why=$(mount_tmpfs "$TRIAL_DIR/spill" 1024) || { record data "$ranks" "$fault" skip "" "" "skipped: $why"; return; }
            dd if=/dev/zero of="$TRIAL_DIR/spill/filler" bs=64k 2>/dev/null
            extra=(data.hold=disk "data.spill_dir=$TRIAL_DIR/spill")
            detail="data.hold: disk, data.spill_dir a full 1 MiB tmpfs" ;;
        *) record data "$ranks" "$fault" FAIL "" "" "unknown data fault"; return ;;
    esac
    if [[ -n $prepare_refused ]]; then
        # `contrast prepare` refused the input: the same standard (clear one-line error) applies.
        local line trace
        line=$(grep -m1 -i error "$prepare_refused" | cut -c1-200) trace=$(stack_trace "$prepare_refused")
        if [[ -n $trace ]]; then record data "$ranks" "$fault" FAIL "" "" "$detail; prepare crashed: $trace (in $TRIAL_DIR)"
        elif [[ -z $line ]]; then record data "$ranks" "$fault" FAIL "" "" "$detail; prepare failed without an error line (in $TRIAL_DIR)"
        else record data "$ranks" "$fault" pass "" 0 "$detail; contrast prepare refuses: $line"
        fi
        return
    fi
    local run="$TRIAL_DIR/run"
    mapfile -t args < <(train_args "$ranks" "$run" data.dataset=prepared "data.path=$data" data.train_limit=0 ${extra[@]+"${extra[@]}"})
    run_job "$TRIAL_DIR/job" "$ranks" "$detect_bound" -- "$bin" "${args[@]}"
    local problem
    problem=$(clean_failure "$TRIAL_DIR/job")
    FAILURE_LINE=$(failure_line "$TRIAL_DIR/job")
    [[ -n $problem ]] || grep -qF -- "$expect" "$TRIAL_DIR/job.err" || problem="the error does not mention '$expect': $FAILURE_LINE"
    [[ -n $problem || ! -e $run ]] || problem="the run directory $run was created"
    if [[ $fault == spill-dir-full ]]; then
        [[ -n $problem ]] || grep -qF "data.spill_dir" "$TRIAL_DIR/job.err" || problem="the error does not name data.spill_dir: $FAILURE_LINE"
        umount "$TRIAL_DIR/spill" 2>/dev/null  # mount_tmpfs ran in a subshell: the exit trap does not know it
    fi
    if [[ -z $problem ]]; then
        record data "$ranks" "$fault" pass "$(minus "$JOB_END" "$JOB_T0")" 0 "$detail: exit $JOB_RC: $FAILURE_LINE"
    else
        record data "$ranks" "$fault" FAIL "$(minus "$JOB_END" "$JOB_T0")" "" "$detail: $problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Launch faults: inconsistent ranks, a world size the config cannot use, an unwritable run dir.
# ---------------------------------------------------------------------------------------------
# Sets the caller's `command` to $TRIAL_DIR/wrapper.sh, a launcher whose one line is $1 (the
# rank is in OMPI_COMM_WORLD_RANK, the arguments in "$@"), with the trial's train arguments for
# the caller's `ranks` and `run`.
wrapped_command() {
    printf '#!/usr/bin/env bash\n%s\n' "$1" > "$TRIAL_DIR/wrapper.sh"
    chmod +x "$TRIAL_DIR/wrapper.sh"
    mapfile -t args < <(train_args "$ranks" "$run")
    command=("$TRIAL_DIR/wrapper.sh" "${args[@]}")
}

trial_launch() {
    local fault=$1 ranks=2 detail="" launcher=() command=() why
    next_dir "launch-$fault"
    local run="$TRIAL_DIR/run" expect=""
    case "$fault" in
        config-mismatch)
            # Every rank gets the same command line; a wrapper adds a rank-dependent --set.
            wrapped_command "exec \"$bin\" \"\$@\" --set optimizer.lr=0.00\$(( OMPI_COMM_WORLD_RANK + 1 ))"
            expect="different configs" detail="rank r adds --set optimizer.lr=0.00(r+1)" ;;
        binary-mismatch)
            # The last rank runs a copy of the binary whose build id (the linker's hash) differs by one bit.
            local id
            id=$(readelf -n "$bin" 2>/dev/null | awk '/Build ID/ { print $3; exit }')
            if [[ -z $id ]] || ! command -v perl >/dev/null; then
                record launch "$ranks" "$fault" skip "" "" "readelf or perl missing, or the binary has no build id"; return
            fi
            perl -0777 -pe 'BEGIN { $id = pack("H*", shift) } s/\Q$id\E/substr($id, 0, 19) . chr(ord(substr($id, 19, 1)) ^ 1)/e' \
                "$id" < "$bin" > "$TRIAL_DIR/contrast-other"
            chmod +x "$TRIAL_DIR/contrast-other"
            wrapped_command "if (( OMPI_COMM_WORLD_RANK == $(( ranks - 1 )) )); then exec \"$TRIAL_DIR/contrast-other\" \"\$@\"; else exec \"$bin\" \"\$@\"; fi"
            expect="different builds" detail="rank 1 runs a binary whose build id differs in one bit" ;;
        world-size)
            ranks=3
            mapfile -t args < <(train_args 2 "$run" data.batch_per_rank=6)
            command=("$bin" "${args[@]}")
            detail="batch_per_rank 6 x 3 ranks = 18, not a multiple of the 8 virtual shards" ;;
        resume-other-world-size)
            mapfile -t args < <(train_args 2 "$run")
            run_job "$TRIAL_DIR/first" 2 "$run_bound" -x "CONTRAST_CHECKPOINT_CRASH_AT=after-latest@rank=0@step=$every" -- "$bin" "${args[@]}"
            [[ $(committed_step "$run") == "$every" ]] || { record launch 4 "$fault" FAIL "" "" "setup: no checkpoint (in $TRIAL_DIR)"; return; }
            ranks=4
            command=("$bin" "${args[@]}")      # batch_per_rank of P = 2 at P = 4: global batch doubles
            detail="a P=2 checkpoint resumed at P=4 with P=2's batch_per_rank" ;;
        run-dir-under-a-file)
            echo "not a directory" > "$TRIAL_DIR/file"
            run="$TRIAL_DIR/file/run"
            mapfile -t args < <(train_args "$ranks" "$run")
            command=("$bin" "${args[@]}")
            detail="run_dir below a regular file" ;;
        read-only-run-dir)
            if [[ $(id -u) -eq 0 ]]; then
                why=$(mount_tmpfs "$TRIAL_DIR/fs" 1024) || { record launch "$ranks" "$fault" skip "" "" "skipped: $why"; return; }
                mount -o remount,ro "$TRIAL_DIR/fs"
                run="$TRIAL_DIR/fs/run" detail="run_dir on a read-only tmpfs"
            else
                mkdir -p "$TRIAL_DIR/ro"; chmod a-w "$TRIAL_DIR/ro"
                run="$TRIAL_DIR/ro/run" detail="run_dir in a directory without write permission"
            fi
            mapfile -t args < <(train_args "$ranks" "$run")
            command=("$bin" "${args[@]}") ;;
        *) record launch "$ranks" "$fault" FAIL "" "" "unknown launch fault"; return ;;
    esac
    local before=""
    checkpoint_files() { (cd "$run/checkpoints" && find . -type f | sort | xargs md5sum | md5sum); }
    [[ $fault != resume-other-world-size ]] || before=$(checkpoint_files)
    run_job "$TRIAL_DIR/job" "$ranks" "$detect_bound" -- "${command[@]}"
    local problem
    problem=$(clean_failure "$TRIAL_DIR/job")
    FAILURE_LINE=$(failure_line "$TRIAL_DIR/job")
    [[ -n $problem || -z $expect ]] || grep -q "$expect" "$TRIAL_DIR/job.err" || problem="error does not say '$expect': $FAILURE_LINE"
    if [[ -z $problem ]]; then
        if [[ $fault == resume-other-world-size ]]; then
            [[ $(checkpoint_files) == "$before" ]] || problem="the checkpoints changed"
            [[ -n $problem ]] || problem=$(verify_all "$run")
        elif [[ -e $run ]]; then
            problem="the run directory $run was created"
        fi
    fi
    if [[ $fault == read-only-run-dir ]]; then
        if [[ $(id -u) -eq 0 ]]; then umount "$TRIAL_DIR/fs" 2>/dev/null; else chmod u+w "$TRIAL_DIR/ro"; fi
    fi
    if [[ -z $problem ]]; then
        record launch "$ranks" "$fault" pass "$(minus "$JOB_END" "$JOB_T0")" 0 "$detail: exit $JOB_RC: $FAILURE_LINE"
    else
        record launch "$ranks" "$fault" FAIL "$(minus "$JOB_END" "$JOB_T0")" "" "$detail: $problem (in $TRIAL_DIR)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Run the trials, then the table.
# ---------------------------------------------------------------------------------------------
started=$(now)
for trial in "${trials[@]}"; do
    read -r function arguments <<< "$trial"
    # shellcheck disable=SC2086
    "trial_$function" $arguments
done

echo
echo "$me: $(( $(wc -l < "$results") - 1 )) trials in $(minus "$(now)" "$started") s (seed $seed); results in $results"
awk -F'\t' '
    NR == 1 { next }
    {
        c = $1
        if (!(c in trials)) { order[++n] = c; trials[c] = 0; survived[c] = 0; skipped[c] = 0; lost[c] = -1; times[c] = "" }
        if ($4 == "skip") { skipped[c]++; next }
        trials[c]++
        if ($4 == "pass") survived[c]++
        if ($6 != "" && $6 + 0 > lost[c]) lost[c] = $6 + 0
        if ($5 != "") times[c] = times[c] " " $5
    }
    END {
        printf "%-10s %7s %9s %8s %16s %12s %12s\n", "class", "trials", "survived", "skipped", "work lost (max)", "detect med", "detect max"
        for (i = 1; i <= n; i++) {
            c = order[i]
            m = split(substr(times[c], 2), t, " ")
            for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (t[b] + 0 < t[a] + 0) { x = t[a]; t[a] = t[b]; t[b] = x }
            med = m == 0 ? "-" : sprintf("%.2f s", m % 2 ? t[(m + 1) / 2] : (t[m / 2] + t[m / 2 + 1]) / 2)
            max = m == 0 ? "-" : sprintf("%.2f s", t[m])
            printf "%-10s %7d %9d %8d %16s %12s %12s\n", c, trials[c], survived[c], skipped[c], lost[c] < 0 ? "-" : lost[c] " steps", med, max
        }
    }' "$results" | tee "$out/summary.txt"

if (( failures > 0 )); then
    echo "$me: $failures trial(s) FAILED; their directories are kept under $out"
    exit 1
fi
if (( ! keep )); then
    find "$out" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
fi
echo "$me: every trial survived"
