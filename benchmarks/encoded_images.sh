#!/usr/bin/env bash
# --store jpeg against --store pixels (issue 21): COUNT photo-like RGB JPEGs per side (PIL quality 90,
# tools/image_fixtures.py's smooth pattern, SIDE x SIDE), prepared both ways at --size SIDE. Prints
# 1. the shard files' bytes of each store against the source files';
# 2. per store, a ResNet SimCLR workload (configs/rgb-simclr-resnet.yaml, views.preset simclr,
#    data.batch_per_rank BATCH) on RANKS ranks for STEPS steps, with data.prefetch 0 and 2. Medians
#    over steps 11..STEPS of every rank:
#    - prefetch 0: the loop makes each batch itself, so the data wait is the batch's decode (jpeg)
#      + views time on one thread: "make img/s/thread" = BATCH / that wait;
#    - the step's consumption, "step img/s" = BATCH / (step time - data wait);
#    - prefetch 2: the loader wait and its share of the step (the issue asks under 5 % at P = 2).
# Needs .venv-verify with Pillow (launch/verify-python.sh) and a release build (or CONTRAST=binary).
#   benchmarks/encoded_images.sh [COUNT, default 2048] [RANKS, default 2] [SIDES, default "32 64"] [STEPS, default 60] [BATCH, default 64]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count=${1:-2048} ranks=${2:-2} sides=${3:-32 64} steps=${4:-60} batch=${5:-64}
contrast=${CONTRAST:-.build/release/contrast}
python=${CONTRAST_VERIFY_PYTHON:-.venv-verify/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$contrast, $count images per side, $ranks ranks, batch_per_rank $batch, $steps steps"
echo
sizes_table="| source | store | source bytes | shard bytes | shards / source |\n|---|---|---|---|---|\n"
runs_table="| images | store | prefetch | data wait ms | share of step | make img/s/thread (prefetch 0) | step img/s per rank |\n|---|---|---|---|---|---|---|\n"
for side in $sides; do
  folder=$scratch/jpg-$side
  "$python" - "$folder" "$side" "$count" <<'PY'
import os, sys
import numpy as np
from PIL import Image
sys.path.insert(0, "tools")
from image_fixtures import smooth
folder, side, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(folder)
rng = np.random.default_rng(side)
for i in range(count):
    Image.fromarray(smooth(rng, side, side, 3)).save(f"{folder}/{i:06d}.jpg", quality=90)
PY
  for store in pixels jpeg; do
    set_dir=$scratch/set-$store-$side
    log=$("$contrast" prepare images "$folder" --out "$set_dir" --size "$side" --shards 8 --store "$store")
    read -r source shards ratio <<<"$(sed -n 's/.*samples in [0-9]* shards, \([0-9]*\) bytes (\([0-9.]*\)x the \([0-9]*\) bytes.*/\3 \1 \2/p' <<<"$log")"
    sizes_table+="| jpg ${side}x${side} | $store | $source | $shards | $ratio |\n"
    for prefetch in 0 2; do
      run=$scratch/run-$store-$side-$prefetch
      launch/mpirun.sh -np "$ranks" "$contrast" train --config configs/rgb-simclr-resnet.yaml \
        --set run_dir="$run" --set data.path="$set_dir" --set data.batch_per_rank="$batch" --set data.prefetch=$prefetch \
        --set train.max_steps="$steps" --set eval.knn_every_epochs=0 --set eval.linear_every_epochs=0 \
        --set checkpoint.every_steps=0 --set monitor.tensorboard=false > "$scratch/train.log" 2>&1 \
        || { echo "training on $set_dir failed:"; tail -5 "$scratch/train.log"; exit 1; }
      row=$(/usr/bin/python3 - "$run" "$ranks" "$batch" "$prefetch" <<'PY'
import json, statistics, sys
run, ranks, batch, prefetch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
waits, totals = [], []
for r in range(ranks):
    steps = [json.loads(l) for l in open(f"{run}/metrics/rank-{r}.jsonl") if '"type":"step"' in l][10:]
    waits += [s["time_data_wait"] for s in steps]
    totals += [sum(s[k] for k in ("time_data_wait", "time_forward", "time_gather", "time_loss", "time_backward",
                                  "time_communication_exposed", "time_optimizer")) for s in steps]
wait, total = statistics.median(waits), statistics.median(totals)
make = f"{batch / wait:.0f}" if prefetch == "0" and wait > 0 else "-"
print(f"{wait*1e3:.2f} | {100*wait/total:.1f} % | {make} | {batch / (total - wait):.0f}")
PY
)
      runs_table+="| ${side}x${side}x3 | $store | $prefetch | $row |\n"
      rm -rf "$run"
    done
    rm -rf "$set_dir"
  done
  rm -rf "$folder"
done
printf "%b\n" "$sizes_table"
printf "%b" "$runs_table"
