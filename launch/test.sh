#!/usr/bin/env bash
# Setup, then build and run the whole test suite. Extra arguments go to `swift test` (e.g. --filter TrainingTests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

launch/setup.sh

# Tests launch mpirun, which refuses to run as root unless told it may.
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

swift build --build-tests
exec swift test "$@"
