#!/usr/bin/env bash
# Side-by-side training-step benchmark: contrast vs PyTorch (Debian python3-torch, CPU),
# both one process, one thread, the fmnist-simclr-mlp step with augmentation excluded.
# Rounds alternate the two systems so machine noise hits both alike; the figures are the
# medians over rounds of each round's median step, and their ratio.
#
#   benchmarks/step_vs_torch.sh [ROUNDS]        (default 5; needs a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-5}
contrast=.build/release/contrast
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1

ours=() theirs=()
for ((r = 1; r <= rounds; r++)); do
    ours+=("$($contrast bench step --json --repeats 30 --warmup 5)")
    theirs+=("$(/usr/bin/python3 benchmarks/torch_step.py --steps 30 --warmup 5)")
done
printf '%s\n' "${ours[@]}" > /tmp/contrast-step.jsonl
printf '%s\n' "${theirs[@]}" > /tmp/torch-step.jsonl
/usr/bin/python3 - <<'PY'
import json, statistics
ours = [json.loads(l) for l in open("/tmp/contrast-step.jsonl")]
theirs = [json.loads(l) for l in open("/tmp/torch-step.jsonl")]
def med(xs): return statistics.median(xs)
c_step = med([1e3 * 256 / o["images_per_second_step"] for o in ours])
c_gemm = med([o["gemm_ms"] for o in ours])
t_step = med([t["median_ms"]["total"] for t in theirs])
t_gemm = med([t["gemm"]["median_ms"] for t in theirs])
print(f"rounds: {len(ours)} (each the median of 30 steps after 5 warm-up)")
print(f"contrast  step {c_step:7.2f} ms = {256e3 / c_step:6.0f} images/s;  its GEMMs {c_gemm:6.2f} ms;  step/GEMM {c_step / c_gemm:.3f}")
for key in ("forward_ms", "loss_ms", "backward_ms", "optimizer_ms"):
    print(f"          {key[:-3]:<9} {med([o[key] for o in ours]):7.2f} ms")
print(f"pytorch   step {t_step:7.2f} ms = {256e3 / t_step:6.0f} images/s;  its GEMMs {t_gemm:6.2f} ms;  step/GEMM {t_step / t_gemm:.3f}")
for key in ("forward_loss", "backward", "optimizer"):
    print(f"          {key:<12} {med([t['median_ms'][key] for t in theirs]):7.2f} ms")
print(f"contrast is {t_step / c_step:.3f}x as fast as pytorch (ratio of median step times)")
PY
