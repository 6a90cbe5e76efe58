#!/usr/bin/env bash
# Setup, release build, then the default job: the benchmark workload (configs/fmnist-simclr.yaml)
# on two MPI ranks of this machine. Extra arguments go to `contrast train`, e.g.
#   launch/train.sh --set train.epochs=1
# RANKS=4 launch/train.sh runs on four ranks (oversubscribed past the machine's cores);
# CONFIG=configs/fmnist-clip.yaml launch/train.sh trains another config.
set -euo pipefail
# The command as typed, which launch/mpirun.sh names when a run ends abnormally (to resume it).
CONTRAST_LAUNCH_COMMAND=$(printf '%q ' "$0" "$@"); export CONTRAST_LAUNCH_COMMAND="${CONTRAST_LAUNCH_COMMAND% }"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
launch/setup.sh
swift build -c release --product contrast
exec launch/mpirun.sh -np "${RANKS:-2}" .build/release/contrast train --config "${CONFIG:-configs/fmnist-simclr.yaml}" "$@"
