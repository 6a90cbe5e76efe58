#!/usr/bin/env bash
# The CNN of configs/fmnist-simclr-cnn.yaml data-parallel on P ranks, one thread each, 256 images
# (512 views) per rank, augmentation excluded: contrast (`launch/mpirun.sh -np P ... bench step`,
# shared memory between ranks, NT-Xent over the global batch through the all-gather) vs PyTorch DDP
# over gloo (benchmarks/torch_ddp_step.py --model cnn: torch.multiprocessing.spawn, the embeddings
# all-gathered with torch.distributed.nn so the loss is the global batch's, as contrast's).
# Rounds alternate the systems so machine noise hits them alike; the figures are the medians over
# rounds of each round's median step, and their ratio. Memory per rank: contrast's account of the
# step's buffers against its peak resident set (VmHWM), and PyTorch's peak resident set per rank.
#
# contrast's gradients cross the wire in the config's communication.precision (bf16 by default; DDP
# sends fp32): SETTINGS="--set communication.precision=fp32" for the same bytes as DDP.
#
#   [SETTINGS="--set k=v ..."] benchmarks/cnn_ddp_vs_torch.sh [ROUNDS] [STEPS] [RANKS]   (defaults 3, 8 and 2; needs a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-8} ranks=${3:-2}
contrast=${CONTRAST:-.build/release/contrast}
[[ -x $contrast ]] || { echo "build first: swift build -c release --product contrast" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
config=configs/fmnist-simclr-cnn.yaml

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
for ((r = 1; r <= rounds; r++)); do
    echo "round $r: $(uptime)" >&2
    launch/mpirun.sh -np "$ranks" "$contrast" bench step --config $config ${SETTINGS:-} --json --repeats "$steps" --warmup 2 2>/dev/null | grep '^{' >> "$ours"
    /usr/bin/python3 benchmarks/torch_ddp_step.py --model cnn --ranks "$ranks" --steps "$steps" --warmup 2 >> "$theirs"
done
echo "after: $(uptime)" >&2
/usr/bin/python3 - "$ours" "$theirs" "$ranks" <<'PY'
import json, statistics, sys
load = lambda path: [json.loads(l) for l in open(path) if l.startswith("{")]
ours, theirs, ranks = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
med = statistics.median
images = 256 * ranks
each = lambda values: ", ".join("%.0f" % v for v in values)
steps = [1e3 * images / o["images_per_second_step"] for o in ours]
c, t = med(steps), med([x["median_ms"]["total"] for x in theirs])
print(f"CNN of configs/fmnist-simclr-cnn.yaml, {ranks} ranks x 256 images (512 views), {len(ours)} rounds (each the median of its steps after 2 warm-up)")
print(f"contrast  step {c:8.1f} ms = {images * 1e3 / c:5.0f} images/s (rounds: {each(steps)}; gradients as {ours[0]['wire_precision']});  one rank's GEMMs timed alone {med([o['gemm_ms'] for o in ours]):7.1f} ms;"
      f" step / GEMM {med([o['step_over_gemm'] for o in ours]):.2f}")
for key in ("forward_ms", "gather_ms", "loss_ms", "backward_ms", "communication_ms", "optimizer_ms"):
    print(f"          {key[:-3]:<14} {med([o[key] for o in ours]):8.1f} ms")
print(f"          all-reduce hidden behind backward {100 * med([o['communication_hidden_fraction'] for o in ours]):.0f}%")
print(f"pytorch   step {t:8.1f} ms = {images * 1e3 / t:5.0f} images/s (rounds: {each(x['median_ms']['total'] for x in theirs)}; DDP over {theirs[0]['backend']})")
for key in ("forward_loss", "backward", "optimizer"):
    print(f"          {key:<14} {med([x['median_ms'][key] for x in theirs]):8.1f} ms")
print(f"contrast is {t / c:.3f}x as fast as pytorch (ratio of median step times)")
print("memory per rank (MB)")
memory = ours[-1]["memory"]
for key in ("parameters", "gradients", "optimizer_state", "activations", "forward_activations", "input_batch", "logits", "embedding_exchange",
            "communication", "total"):
    value = memory[key + "_bytes"]
    if value >= 0:
        print(f"  contrast {key:<22} {value / 1e6:8.1f}")
print(f"  contrast peak resident (VmHWM), rank 0 / largest rank: {med([o['resident_peak_mb'] for o in ours]):.1f} / "
      f"{med([o['resident_peak_max_rank_mb'] for o in ours]):.1f}  (= {med([o['resident_peak_over_memory_sum'] for o in ours]):.2f}x the account);"
      f" before the step was made {med([o['resident_before_mb'] for o in ours]):.1f};"
      f" after the steps: anonymous {med([o['resident_anonymous_mb'] for o in ours]):.1f}, shared memory {med([o['resident_shared_mb'] for o in ours]):.1f},"
      f" files {med([o['resident_file_mb'] for o in ours]):.1f}")
peaks = [max(x["peak_resident_mb_per_rank"]) for x in theirs]
print(f"  pytorch  peak resident (VmHWM), largest rank: {med(peaks):.1f}  (per rank, last round: {theirs[-1]['peak_resident_mb_per_rank']})")
PY
