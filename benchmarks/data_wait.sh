#!/usr/bin/env bash
# Loader wait fraction during training: the benchmark workload read from a prepared data set
# (contrast prepare fashion-mnist --out data/fmnist), 120 steps, with the background producer
# (data.prefetch 2) and without (0), alternating, ROUNDS times, on RANKS ranks. Prints, per run,
# the median over steps 21-120 of every rank's data wait, its share of the step, and images/s.
# HOLD (memory, the default, disk or stream) is data.hold: where each rank keeps its samples.
# CONFIG (default configs/fmnist-simclr.yaml) and STEPS (default 120; the median skips the first 20)
# in the environment choose the workload, e.g. CONFIG=configs/fmnist-simclr-cnn.yaml.
#   benchmarks/data_wait.sh [ROUNDS] [RANKS] [DATA] [HOLD]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-2} ranks=${2:-2} data=${3:-data/fmnist} hold=${4:-memory}
config=${CONFIG:-configs/fmnist-simclr.yaml} steps=${STEPS:-120}
[ -f "$data/train/dataset.json" ] || .build/release/contrast prepare fashion-mnist --out "$data"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for round in $(seq "$rounds"); do
  for prefetch in 2 0; do
    run="$scratch/run-$round-$prefetch"
    launch/mpirun.sh -np "$ranks" .build/release/contrast train --config "$config" \
      --set run_dir="$run" --set data.dataset=prepared --set data.path="$data" --set data.prefetch=$prefetch --set data.hold="$hold" \
      --set train.max_steps="$steps" --set eval.knn_every_epochs=0 --set eval.linear_every_epochs=0 --set data.test_limit=1000 \
      --set checkpoint.every_steps=0 \
      --set monitor.tensorboard=false > /dev/null 2>&1
    /usr/bin/python3 - "$run" "$ranks" "$prefetch" "$hold" "$steps" <<'PY'
import json, statistics, sys
run, ranks, prefetch, last = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[5])
cells = []
for r in range(ranks):
    steps = [json.loads(l) for l in open(f"{run}/metrics/rank-{r}.jsonl") if '"type":"step"' in l][20:last]
    wait = statistics.median(s["time_data_wait"] for s in steps)
    total = statistics.median(sum(s[k] for k in ("time_data_wait", "time_forward", "time_gather", "time_loss", "time_backward",
                                                  "time_communication_exposed", "time_optimizer")) for s in steps)
    ips = statistics.median(s["images_per_second"] for s in steps)
    cells.append(f"rank {r}: wait {wait*1e3:.2f} ms ({100*wait/total:.1f} %) {ips:.0f} img/s")
print(f"{sys.argv[4]}, prefetch {prefetch}: " + "; ".join(cells))
PY
  done
done
