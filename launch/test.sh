#!/usr/bin/env bash
# Setup, then build and run the whole test suite, then the short form of the fault-injection
# suite (launch/faults.sh, ~1-2 min; docs/reliability.md) on the debug build. Extra arguments go
# to `swift test` (e.g. --filter TrainingTests) and skip the fault suite; FAULTS=0 skips it too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

launch/setup.sh

# Tests launch mpirun, which refuses to run as root unless told it may.
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

swift build --build-tests
swift test "$@"
if [[ $# -eq 0 && ${FAULTS:-1} != 0 ]]; then
    launch/faults.sh --bin "$(swift build --show-bin-path)/contrast"
fi
