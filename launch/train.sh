#!/usr/bin/env bash
# Setup, release build, then train the benchmark workload (configs/fmnist-simclr.yaml).
# Extra arguments go to `contrast train`, e.g. launch/train.sh --set train.epochs=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

launch/setup.sh
swift build -c release --product contrast

# One process for now; multi-rank training will run this under `mpirun -np 2`.
exec .build/release/contrast train --config configs/fmnist-simclr.yaml "$@"
