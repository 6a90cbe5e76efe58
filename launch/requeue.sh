# Functions for a batch script that trains until the scheduler's time limit and then requeues
# itself; sourced by launch/slurm.sbatch (and by the tests, which run it without Slurm):
#
#   source launch/requeue.sh
#   contrast_run_step srun ... contrast train ...     # runs the step, forwarding SIGUSR1 to it
#   contrast_requeue_if_interrupted $?                # exit 75 -> scontrol requeue
#
# Why the batch shell forwards the signal: `#SBATCH --signal=B:USR1@300` signals the batch shell
# only. A shell runs a trap only once its foreground command has ended, so the step runs in the
# background and the shell waits for it; the trap then sends SIGUSR1 to the step's launcher
# process. srun forwards the signals it receives (SIGUSR1 included) to every task of its step,
# and Open MPI's mpirun forwards SIGUSR1 to its ranks, so `kill -USR1 <launcher pid>` reaches
# every rank with either launcher. (`scancel --signal=USR1 --batch` would signal the batch shell
# again, not the ranks.) Each rank then finishes its step, writes a checkpoint and exits 75.
#
# Sourcing this file changes nothing but defines the functions below.

# Exit status of a trainer stopped by a signal after writing its checkpoint (EX_TEMPFAIL).
CONTRAST_INTERRUPTED_STATUS=75

# Runs COMMAND... in the background and waits for it; SIGUSR1 to this shell (also one that
# arrives while the step is starting) is forwarded to COMMAND, and ignored once it has ended.
# Returns COMMAND's exit status.
contrast_run_step() {
    _contrast_step_pid=""
    _contrast_signals=0
    trap '_contrast_forward_stop' USR1
    "$@" &
    _contrast_step_pid=$!
    # A signal that came before the pid was known is forwarded now.
    (( _contrast_signals == 0 )) || kill -USR1 "$_contrast_step_pid" 2>/dev/null || true
    local status seen
    while :; do
        seen=$_contrast_signals
        status=0
        wait "$_contrast_step_pid" || status=$?
        # A trapped signal ends `wait` early with a status above 128 and runs the trap; the step
        # is still running then, so wait again for its own status.
        if (( status > 128 && _contrast_signals != seen )); then continue; fi
        break
    done
    # The step is over: a late SIGUSR1 must not kill the shell before it decides on the requeue.
    trap '' USR1
    _contrast_step_pid=""
    return "$status"
}

_contrast_forward_stop() {
    _contrast_signals=$(( _contrast_signals + 1 ))
    echo "contrast: $(date '+%F %T') SIGUSR1 received: asking the training step to checkpoint and stop" >&2
    [[ -z $_contrast_step_pid ]] || kill -USR1 "$_contrast_step_pid" 2>/dev/null || true
}

# Decides what the job does after the step exited with STATUS, and returns the job's status:
# - 75 (stopped by the signal after writing a checkpoint): `scontrol requeue $SLURM_JOB_ID`;
#   the requeued job runs the same script, and `resume: auto` continues from that checkpoint.
#   Returns 0 once the requeue was accepted; 75 if it was refused or not possible (no
#   SLURM_JOB_ID, or CONTRAST_MAX_REQUEUES restarts reached: Slurm counts them in
#   SLURM_RESTART_COUNT), so the job ends visibly unfinished instead of looping forever.
# - anything else (0 finished, other failures): no requeue; returns STATUS.
contrast_requeue_if_interrupted() {
    local status=$1 restarts=${SLURM_RESTART_COUNT:-0} limit=${CONTRAST_MAX_REQUEUES:-20}
    if (( status != CONTRAST_INTERRUPTED_STATUS )); then
        if (( status == 0 )); then
            echo "contrast: training finished" >&2
        else
            echo "contrast: training failed with status $status; not requeued" >&2
        fi
        return "$status"
    fi
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        echo "contrast: stopped after a checkpoint (status 75), but not a Slurm job: start it again to resume" >&2
        return "$status"
    fi
    if (( restarts >= limit )); then
        echo "contrast: stopped after a checkpoint; already requeued $restarts times (CONTRAST_MAX_REQUEUES=$limit): not requeued" >&2
        return "$status"
    fi
    echo "contrast: stopped after a checkpoint; requeueing job $SLURM_JOB_ID (restart $(( restarts + 1 )))" >&2
    if scontrol requeue "$SLURM_JOB_ID"; then
        return 0
    fi
    echo "contrast: scontrol requeue $SLURM_JOB_ID failed; resubmit the job to resume" >&2
    return "$status"
}
