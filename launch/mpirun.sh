#!/usr/bin/env bash
# Runs a command on P MPI ranks of this machine (or of a hostfile's machines) with the
# settings contrast wants: one OpenBLAS thread per rank unless told otherwise, no binding
# that would squeeze several BLAS threads onto one core, oversubscription when asked for
# more ranks than cores, and Open MPI's root guard lifted only when running as root.
#
#   launch/mpirun.sh [-np P] [--hostfile FILE] [--threads T] [--tcp] [--mpi ARG]... COMMAND [ARGS...]
#
#   -np P            ranks (default 2)
#   --hostfile FILE  Open MPI hostfile for several machines
#   --threads T      OpenBLAS threads per rank (default 1); also pass --set train.blas_threads=T
#   --tcp            TCP between ranks instead of shared memory (--mca btl self,tcp)
#   --mpi ARG        one extra argument for mpirun itself (repeat as needed)
#
# Example: launch/mpirun.sh -np 2 .build/release/contrast train --config configs/fmnist-simclr.yaml
set -euo pipefail

ranks=2 hostfile="" threads=1 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -np|-n) ranks="$2"; shift 2 ;;
        --hostfile) hostfile="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --tcp) extra+=(--mca btl self,tcp); shift ;;
        --mpi) extra+=("$2"); shift 2 ;;
        --) shift; break ;;
        -*) echo "launch/mpirun.sh: unknown option $1 (see the comment at the top of this script)" >&2; exit 2 ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || { echo "launch/mpirun.sh: no command given; example: launch/mpirun.sh -np 2 .build/release/contrast train" >&2; exit 2; }
[[ $ranks =~ ^[1-9][0-9]*$ ]] || { echo "launch/mpirun.sh: -np expects a positive number, got '$ranks'" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "launch/mpirun.sh: mpirun not found; run launch/setup.sh (Debian package openmpi-bin)" >&2; exit 1; }

args=(-np "$ranks" --bind-to none -x OPENBLAS_NUM_THREADS="$threads" -x OMP_NUM_THREADS="$threads")
if [[ -n $hostfile ]]; then
    args+=(--hostfile "$hostfile")
elif (( ranks > $(nproc) )); then
    args+=(--oversubscribe)
fi
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
exec mpirun "${args[@]}" "${extra[@]}" "$@"
