#!/usr/bin/env bash
# ViT training step, contrast vs PyTorch (Debian python3-torch, CPU): configs/fmnist-simclr-vit.yaml
# (vit-small-28, 256 images = 512 views, NT-Xent with the projection head), augmentation excluded,
# one thread each. contrast steps on Fashion-MNIST views (`contrast bench step`), PyTorch on fixed
# random inputs of the same shape (benchmarks/torch_vit_step.py): the step's work does not depend on
# pixel values. Rounds alternate the systems so machine noise hits both alike; the figures are the
# medians over rounds of each round's median step, and their ratio. An optional second contrast
# binary (BEFORE) runs in each round too, for a before/after of a change.
#
#   benchmarks/vit_vs_torch.sh [ROUNDS] [STEPS] [BEFORE]      (defaults 3 and 5; needs a release build)
#
# vit-tiny: PRESET=vit-tiny IMAGES=128 runs both sides on 3 x 32 x 32 images, the preset's input:
# contrast through `bench step --synthetic-images 3x32x32` (one fixed batch of random images, no
# augmentation; no data set holds 3-channel images yet), PyTorch on random inputs of that shape.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-5} before=${3:-}
preset=${PRESET:-vit-small-28} images=${IMAGES:-256}
settings=(--set model.vit.preset="$preset" --set data.batch_per_rank="$images")
if [[ $preset == vit-tiny ]]; then settings+=(--synthetic-images 3x32x32); fi
contrast=.build/release/contrast
[[ -x $contrast ]] || { echo "build first: swift build -c release --product contrast" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1

ours=$(mktemp) theirs=$(mktemp) old=$(mktemp)
trap 'rm -f "$ours" "$theirs" "$old"' EXIT
for ((r = 1; r <= rounds; r++)); do
    echo "round $r: $(uptime)" >&2
    $contrast bench step --config configs/fmnist-simclr-vit.yaml "${settings[@]}" --json --repeats "$steps" --warmup 1 | grep '^{' >> "$ours"
    /usr/bin/python3 benchmarks/torch_vit_step.py --preset "$preset" --images "$images" --steps "$steps" --warmup 1 >> "$theirs"
    if [[ -n $before ]]; then
        $before bench step --config configs/fmnist-simclr-vit.yaml "${settings[@]}" --json --repeats "$steps" --warmup 1 | grep '^{' >> "$old"
    fi
done
echo "after: $(uptime)" >&2
/usr/bin/python3 - "$ours" "$theirs" "$old" "$preset" "$images" <<'PY'
import json, statistics, sys
load = lambda path: [json.loads(l) for l in open(path) if l.startswith("{")]
ours, theirs, old = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
preset, images = sys.argv[4], int(sys.argv[5])
med = statistics.median
step = lambda runs: [1e3 * images / o["images_per_second_step"] for o in runs]
c_step, t_step = med(step(ours)), med([t["median_ms"]["total"] for t in theirs])
print(f"{preset} on {theirs[0]['input']}, {images} images ({2 * images} views), {len(ours)} rounds (each the median of its steps after 1 warm-up)")
print(f"contrast  step {c_step:8.1f} ms (rounds: {', '.join(f'{s:.0f}' for s in step(ours))});  its GEMMs alone {med([o['gemm_ms'] for o in ours]):8.1f} ms; step / GEMM {med([o['step_over_gemm'] for o in ours]):.2f}")
for key in ("forward_ms", "loss_ms", "backward_ms", "optimizer_ms"):
    if key in ours[0]:
        print(f"          {key[:-3]:<14} {med([o[key] for o in ours]):8.1f} ms")
if old:
    print(f"before    step {med(step(old)):8.1f} ms (rounds: {', '.join(f'{s:.0f}' for s in step(old))})")
print(f"pytorch   step {t_step:8.1f} ms (rounds: {', '.join(f'{total:.0f}' for total in (t['median_ms']['total'] for t in theirs))})")
for key in theirs[0]["median_ms"]:
    if key != "total":
        print(f"          {key:<14} {med([t['median_ms'][key] for t in theirs]):8.1f} ms")
print(f"contrast is {t_step / c_step:.3f}x as fast as pytorch (ratio of median step times)")
if old:
    print(f"after / before: {med(step(ours)) / med(step(old)):.3f} of the time")
PY
