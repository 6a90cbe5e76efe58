#!/usr/bin/env bash
# Side-by-side training-step benchmark: contrast vs PyTorch (Debian python3-torch, CPU), the
# fmnist-simclr-mlp step with augmentation excluded, one thread per rank, 256 images per rank.
#   RANKS=1: `contrast bench step` vs benchmarks/torch_step.py (one process each);
#   RANKS=2: `contrast bench step --ranks 2` (mpirun) vs benchmarks/torch_ddp_step.py (DDP, gloo).
# Rounds alternate the two systems so machine noise hits both alike; the figures are the
# medians over rounds of each round's median step, and their ratio.
#
#   benchmarks/step_vs_torch.sh [ROUNDS] [RANKS]      (defaults 5 and 1; needs a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-5} ranks=${2:-1}
contrast=.build/release/contrast
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
for ((r = 1; r <= rounds; r++)); do
    if (( ranks == 1 )); then
        $contrast bench step --json --repeats 30 --warmup 5 >> "$ours"
        /usr/bin/python3 benchmarks/torch_step.py --steps 30 --warmup 5 >> "$theirs"
    else
        $contrast bench step --ranks "$ranks" --json --repeats 30 --warmup 5 >> "$ours"
        /usr/bin/python3 benchmarks/torch_ddp_step.py --ranks "$ranks" --steps 30 --warmup 5 >> "$theirs"
    fi
done
/usr/bin/python3 - "$ours" "$theirs" "$ranks" <<'PY'
import json, statistics, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
theirs = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
ranks = int(sys.argv[3])
med = statistics.median
images = 256 * ranks
c_step = med([1e3 * images / o["images_per_second_step"] for o in ours])
t_step = med([t["median_ms"]["total"] for t in theirs])
print(f"{ranks} rank(s), {len(ours)} rounds (each the median of 30 steps after 5 warm-up)")
print(f"contrast  step {c_step:7.2f} ms = {images * 1e3 / c_step:6.0f} images/s;  one rank's GEMMs {med([o['gemm_ms'] for o in ours]):6.2f} ms")
for key in ("forward_ms", "gather_ms", "loss_ms", "backward_ms", "communication_ms", "optimizer_ms"):
    if key in ours[0]:
        print(f"          {key[:-3]:<14} {med([o[key] for o in ours]):7.2f} ms")
print(f"pytorch   step {t_step:7.2f} ms = {images * 1e3 / t_step:6.0f} images/s" + (f";  its GEMMs {med([t['gemm']['median_ms'] for t in theirs]):6.2f} ms" if "gemm" in theirs[0] else ""))
for key in theirs[0]["median_ms"]:
    if key != "total":
        print(f"          {key:<14} {med([t['median_ms'][key] for t in theirs]):7.2f} ms")
print(f"contrast is {t_step / c_step:.3f}x as fast as pytorch (ratio of median step times)")
PY
