#!/usr/bin/env bash
# Setup, then build and run the whole test suite; then the numeric tests again on the code paths
# an AVX-512 machine does not take (oneDNN held to AVX2, OpenBLAS to its Haswell kernels, the C
# kernels to their AVX2 and then their portable bodies; ~30 s; docs/reliability.md, "Every x86-64
# CPU"); then the short form of the fault-injection suite (launch/faults.sh, ~1-2 min) on the
# debug build. Extra arguments go to `swift test` (e.g. --filter TrainingTests) and skip the
# passes after it; ISA_PASSES=0 skips the instruction-set passes, FAULTS=0 the fault suite.
# Tests that verify an output with Python packages Debian lacks (the ONNX export: onnx and
# onnxruntime; prepare images: Pillow; prepare webdataset: webdataset; views: torchvision) use the virtual environment launch/verify-python.sh makes (.venv-verify, ~10-30 s
# the first time, instant after), through CONTRAST_VERIFY_PYTHON; without network they skip, and
# a line after the tests counts how many of them ran and skipped. The Slurm tests
# (Tests/TrainingTests/SlurmClusterTests.swift) bring up a one-node Slurm cluster with
# launch/slurm-local.sh (installing Debian's slurm-wlm when root and it is missing) and skip only
# where its daemons cannot start; a second line counts them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

launch/setup.sh
CONTRAST_VERIFY_PYTHON=$(launch/verify-python.sh)
export CONTRAST_VERIFY_PYTHON

# Tests launch mpirun, which refuses to run as root unless told it may.
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

swift build --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test "$@" 2>&1 | tee "$log" || status=$?
# The Python-verified tests print "python-verify: ran ..." when they run; a skipped one's reason
# starts "python-verify: skipped" (a skipped parameterised test is one line).
ran=$(grep -c '^python-verify: ran ' "$log" || true)
skipped=$(grep -c 'skipped: "python-verify: skipped' "$log" || true)
echo "== launch/test.sh: Python-verified tests ($CONTRAST_VERIFY_PYTHON): $ran ran, $skipped skipped =="
grep -o 'python-verify: skipped: [^"]*' "$log" | sort -u || true
# The multi-host tests (hosts of launch/netns-cluster.sh) skip as a suite, saying why, where
# network namespaces cannot be made (not root, no ip, a container that refuses them).
if grep -q 'multi-host tests skipped: ' "$log"; then
    echo "== launch/test.sh: multi-host tests $(grep -o 'multi-host tests skipped: [^"]*' "$log" | head -n 1 | sed 's/^multi-host tests //') =="
elif grep -q 'Suite MultiHostTests' "$log"; then
    echo "== launch/test.sh: multi-host tests (launch/netns-cluster.sh hosts) ran =="
fi
# Each Slurm test prints "slurm: ran NAME ..." when it ran, "slurm: skipped NAME: REASON" when not.
slurm_ran=$(grep -c '^slurm: ran ' "$log" || true)
slurm_skipped=$(grep -c '^slurm: skipped ' "$log" || true)
echo "== launch/test.sh: Slurm tests (a one-node cluster, launch/slurm-local.sh): $slurm_ran ran, $slurm_skipped skipped =="
sed -n 's/^slurm: skipped [^:]*: /slurm: skipped: /p' "$log" | sort -u || true
if (( status != 0 )); then exit "$status"; fi

# isa_pass LABEL "VAR=VALUE ..." [swift test arguments]: the numeric test targets again, without
# rebuilding, under those variables; a header line before and the time taken after.
isa_pass() {
    local label=$1 variables=$2 start=$SECONDS
    shift 2
    echo "== launch/test.sh: $label ($variables) =="
    # shellcheck disable=SC2086  # the variables are words without spaces
    env $variables swift test --skip-build --filter '^(TensorTests|NNTests|ContrastiveTests)\.' "$@"
    echo "== launch/test.sh: $label: $((SECONDS - start)) s =="
}
if [[ $# -eq 0 && ${ISA_PASSES:-1} != 0 ]]; then
    # With one P = 2 equivalence test, the one that is a single case at P = 2: its CNN encoder
    # and MLP head go through the GEMMs and the layer and softmax kernels under mpirun.
    isa_pass "numeric tests and one P = 2 test as on an AVX2 CPU" \
        "ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell CONTRAST_KERNELS_ISA=avx2" \
        --filter 'DistributedTrainingTests/cnnStepEqualsOneProcessOnTheGlobalBatch'
    isa_pass "numeric tests with the portable C kernels" "CONTRAST_KERNELS_ISA=portable"
fi
if [[ $# -eq 0 && ${FAULTS:-1} != 0 ]]; then
    launch/faults.sh --bin "$(swift build --show-bin-path)/contrast"
fi
