#!/usr/bin/env bash
# Side-by-side training-step benchmark of the CNN of configs/fmnist-simclr-cnn.yaml: contrast
# (`bench step`, augmentation excluded) vs the same network in PyTorch (benchmarks/torch_cnn_step.py,
# Debian's python3-torch), one thread, 256 images (512 views) a step. With BASE=path/to/contrast,
# that binary (e.g. a build of the commit before a change) runs in the same rounds, so a change
# is measured against its parent under the same machine load.
# Rounds alternate the systems so machine noise hits them alike; the figures are the medians over
# rounds of each round's median step, and their ratios.
#
#   [BASE=/tmp/contrast-before] benchmarks/cnn_step_vs_torch.sh [ROUNDS] [STEPS]   (defaults 3 and 8; needs a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-8}
contrast=${CONTRAST:-.build/release/contrast}
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
config=configs/fmnist-simclr-cnn.yaml

ours=$(mktemp) base=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$base" "$theirs"' EXIT
for ((r = 1; r <= rounds; r++)); do
    $contrast bench step --config $config --json --repeats "$steps" --warmup 2 >> "$ours"
    if [[ -n ${BASE:-} ]]; then "$BASE" bench step --config $config --json --repeats "$steps" --warmup 2 >> "$base"; fi
    /usr/bin/python3 benchmarks/torch_cnn_step.py --steps "$steps" --warmup 2 >> "$theirs"
done
/usr/bin/python3 - "$ours" "$base" "$theirs" <<'PY'
import json, statistics, sys
def rows(path):
    return [json.loads(l) for l in open(path) if l.startswith("{")]
ours, base, theirs = rows(sys.argv[1]), rows(sys.argv[2]), rows(sys.argv[3])
med = statistics.median
def each(values):
    return ", ".join("%.0f" % v for v in values)
def step(runs):
    return med([1e3 * 256 / o["images_per_second_step"] for o in runs])
c = step(ours)
print(f"{len(ours)} rounds, each the median of the round's steps")
print(f"contrast       step {c:8.2f} ms = {256e3 / c:5.0f} images/s;  GEMMs timed alone {med([o['gemm_ms'] for o in ours]):7.2f} ms"
      f" ({ours[0]['gemm_library']}); step / GEMM {med([o['step_over_gemm'] for o in ours]):.2f}"
      f"  (rounds: {each(1e3 * 256 / o['images_per_second_step'] for o in ours)})")
for key in ("forward_ms", "loss_ms", "backward_ms", "optimizer_ms"):
    print(f"               {key[:-3]:<10} {med([o[key] for o in ours]):8.2f} ms")
if base:
    b = step(base)
    print(f"contrast BASE  step {b:8.2f} ms = {256e3 / b:5.0f} images/s;  step / GEMM {med([o['step_over_gemm'] for o in base]):.2f}"
          f"  (rounds: {each(1e3 * 256 / o['images_per_second_step'] for o in base)})")
    for key in ("forward_ms", "backward_ms"):
        print(f"               {key[:-3]:<10} {med([o[key] for o in base]):8.2f} ms")
    print(f"contrast is {b / c:.3f}x as fast as BASE")
t = med([x["median_ms"]["total"] for x in theirs])
print(f"pytorch        step {t:8.2f} ms = {256e3 / t:5.0f} images/s  (rounds: {each(x['median_ms']['total'] for x in theirs)})")
for key in ("forward_loss", "backward", "optimizer"):
    print(f"               {key:<12} {med([x['median_ms'][key] for x in theirs]):8.2f} ms")
print(f"contrast is {t / c:.3f}x as fast as pytorch (ratio of median step times)")
PY
