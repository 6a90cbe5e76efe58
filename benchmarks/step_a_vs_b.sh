#!/usr/bin/env bash
# Two builds of contrast side by side on the benchmark step (fmnist-simclr-mlp, augmentation
# excluded, one thread per rank): `contrast bench step` of each, alternating rounds so machine
# noise hits both alike; the medians over rounds of each round's median step, and their ratio.
# For "the step's speed is unchanged" checks of a refactor (build the old commit in a worktree).
#
#   benchmarks/step_a_vs_b.sh OLD_BINARY NEW_BINARY [ROUNDS] [RANKS] [-- bench step arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=$1 new=$2 rounds=${3:-5} ranks=${4:-1}
shift $(( $# < 4 ? $# : 4 ))
[[ ${1:-} == -- ]] && shift
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
a=$(mktemp) b=$(mktemp)
trap 'rm -f "$a" "$b"' EXIT
for ((r = 1; r <= rounds; r++)); do
    "$old" bench step --ranks "$ranks" --json --repeats 30 --warmup 5 "$@" >> "$a"
    "$new" bench step --ranks "$ranks" --json --repeats 30 --warmup 5 "$@" >> "$b"
done
/usr/bin/env python3 - "$a" "$b" "$ranks" <<'PY'
import json, statistics, sys
def load(path): return [json.loads(l) for l in open(path) if l.startswith("{")]
old, new, ranks = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
images = 256 * ranks
def step(rows): return statistics.median([1e3 * images / o["images_per_second_step"] for o in rows])
print(f"{ranks} rank(s), {len(old)} rounds alternating (each the median of 30 steps after 5 warm-up); "
      f"kernels {old[0]['machine']['kernel_instruction_set']}, {old[0]['machine']['cpu_model']}")
for name, rows in (("old", old), ("new", new)):
    parts = "  ".join(f"{k[:-3]} {statistics.median([o[k] for o in rows]):.2f}" for k in
                      ("forward_ms", "gather_ms", "loss_ms", "backward_ms", "communication_ms", "optimizer_ms") if k in rows[0])
    print(f"{name}  step {step(rows):7.2f} ms  ({parts})")
print(f"new / old step time: {step(new) / step(old):.3f}")
PY
