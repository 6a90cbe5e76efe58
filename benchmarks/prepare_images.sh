#!/usr/bin/env bash
# `contrast prepare images` throughput and size (issue 21): COUNT random photo-like images per source
# side (32, 64, 128, 224; tools/image_fixtures.py's smooth pattern, square) as JPEG (PIL quality 90,
# 4:2:0) and as PNG, each prepared to --size 32 RGB with 1 thread and with THREADS threads. Prints a
# Markdown table: images/s, images/s per thread, and the shard files' bytes against the source files'.
# Needs .venv-verify with Pillow (launch/verify-python.sh) and a release build (or CONTRAST=binary).
#   benchmarks/prepare_images.sh [COUNT, default 2000] [THREADS, default nproc] [SIDES, default "32 64 128 224"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count=${1:-2000} threads=${2:-$(nproc)} sides=${3:-32 64 128 224}
contrast=${CONTRAST:-.build/release/contrast}
python=${CONTRAST_VERIFY_PYTHON:-.venv-verify/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$contrast, $count images per source, --size 32 --channels 3"
echo
echo "| source | threads | images/s | images/s per thread | source bytes | shard bytes | shards / source |"
echo "|---|---|---|---|---|---|---|"
for side in $sides; do
  for format in jpg png; do
    folder=$scratch/$format-$side
    "$python" - "$folder" "$side" "$count" "$format" <<'PY'
import os, sys
import numpy as np
from PIL import Image
sys.path.insert(0, "tools")
from image_fixtures import smooth
folder, side, count, fmt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.makedirs(folder)
rng = np.random.default_rng(side)
for i in range(count):
    image = Image.fromarray(smooth(rng, side, side, 3))
    if fmt == "jpg":
        image.save(f"{folder}/{i:06d}.jpg", quality=90)
    else:
        image.save(f"{folder}/{i:06d}.png")
PY
    for t in 1 "$threads"; do
      out=$scratch/out-$format-$side-$t
      log=$("$contrast" prepare images "$folder" --out "$out" --size 32 --threads "$t" --shards 8)
      rate=$(sed -n 's/.*s): \([0-9.]*\) images\/s, \([0-9.]*\) images\/s per thread/\1 \2/p' <<<"$log")
      sizes=$(sed -n 's/.*samples in [0-9]* shards, \([0-9]*\) bytes (\([0-9.]*\)x the \([0-9]*\) bytes.*/\3 \1 \2/p' <<<"$log")
      read -r total per <<<"$rate"
      read -r source shards ratio <<<"$sizes"
      echo "| $format ${side}x${side} | $t | $total | $per | $source | $shards | $ratio |"
      rm -rf "$out"
    done
    rm -rf "$folder"
  done
done
