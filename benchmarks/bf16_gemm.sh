#!/usr/bin/env bash
# bf16 GEMM study (issue 9): builds benchmarks/bf16_gemm.c and prints, for the benchmark MLP's 15 GEMM
# shapes, OpenBLAS sgemm against oneDNN's bf16 matmul (one thread each, alternating, medians).
# Needs libdnnl-dev and libopenblas-dev (launch/setup.sh). Usage: benchmarks/bf16_gemm.sh [repeats, default 30]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -o "$out/bf16_gemm" benchmarks/bf16_gemm.c $(pkg-config --cflags --libs openblas) -ldnnl
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$out/bf16_gemm" "${1:-30}"
