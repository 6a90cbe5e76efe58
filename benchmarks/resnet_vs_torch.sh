#!/usr/bin/env bash
# Side-by-side training-step benchmark of the `resnet18` preset on 3 x 32 x 32 images, 128 images
# (256 views) a step, one thread: contrast (`bench step --config configs/bench-resnet18-32.yaml
# --synthetic-images 3x32x32`: one fixed batch of random images, as no data set holds 3-channel
# images yet; augmentation excluded) vs the same network in PyTorch (benchmarks/torch_resnet_step.py,
# tools/resnet.py's module, Debian's python3-torch, NCHW). The step's work does not depend on the
# pixel values. Rounds alternate the systems so machine noise hits them alike; the figures are the
# medians over rounds of each round's median step, and two ratios: contrast's step over its GEMMs
# timed alone at the measured sgemm rate (`step_over_gemm`), and PyTorch's step over contrast's.
#
#   benchmarks/resnet_vs_torch.sh [ROUNDS] [STEPS]   (defaults 3 and 4; needs a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-4}
contrast=${CONTRAST:-.build/release/contrast}
[[ -x $contrast ]] || { echo "build first: swift build -c release --product contrast" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
config=configs/bench-resnet18-32.yaml images=128

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
for ((r = 1; r <= rounds; r++)); do
    echo "round $r: $(uptime)" >&2
    $contrast bench step --config $config --synthetic-images 3x32x32 --json --repeats "$steps" --warmup 1 | grep '^{' >> "$ours"
    /usr/bin/python3 benchmarks/torch_resnet_step.py --images $images --side 32 --channels 3 --steps "$steps" --warmup 1 >> "$theirs"
done
echo "after: $(uptime)" >&2
/usr/bin/python3 - "$ours" "$theirs" "$images" <<'PY'
import json, statistics, sys
load = lambda path: [json.loads(l) for l in open(path) if l.startswith("{")]
ours, theirs, images = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
med = statistics.median
each = lambda values: ", ".join("%.0f" % v for v in values)
steps = [1e3 * images / o["images_per_second_step"] for o in ours]
c = med(steps)
print(f"resnet18 on 3 x 32 x 32, {images} images ({2 * images} views), {len(ours)} rounds (each the median of its steps after 1 warm-up)")
print(f"contrast  step {c:8.1f} ms = {images * 1e3 / c:5.0f} images/s (rounds: {each(steps)});  GEMMs timed alone {med([o['gemm_ms'] for o in ours]):7.1f} ms"
      f" ({med([o['gemm_gflop'] for o in ours]):.1f} GFLOP, {ours[0]['gemm_library']}); step / GEMM {med([o['step_over_gemm'] for o in ours]):.2f}")
for key in ("forward_ms", "loss_ms", "backward_ms", "optimizer_ms"):
    print(f"          {key[:-3]:<14} {med([o[key] for o in ours]):8.1f} ms")
t = med([x["median_ms"]["total"] for x in theirs])
print(f"pytorch   step {t:8.1f} ms = {images * 1e3 / t:5.0f} images/s (rounds: {each(x['median_ms']['total'] for x in theirs)})")
for key in ("forward_loss", "backward", "optimizer"):
    print(f"          {key:<14} {med([x['median_ms'][key] for x in theirs]):8.1f} ms")
print(f"contrast is {t / c:.3f}x as fast as pytorch (ratio of median step times)")
PY
