#!/usr/bin/env bash
# Issue 22: SigLIP's sigmoid loss over a ring of ranks against CLIP's softmax over the all-gathered
# batch, the same two-tower model and paired Fashion-MNIST (configs/fmnist-clip.yaml, loss.sides
# pairs for SigLIP), BATCH pairs per rank at P = 1, 2 and 4 (RANKS), `contrast bench step` each,
# alternating the two losses in every round. Prints one line per run and then, per (P, loss), the
# medians over rounds of: the step (augmentation excluded), the loss phase (SigLIP's ring turns run
# inside it), the gather phase (CLIP's all-gather and reduce-scatter), the loss's workspace and the
# embedding exchange from the step's memory account, and rank 0's peak resident set.
# BATCH x P must be a multiple of the data set's shards (16 when the script prepares it).
# SigLIP's workspace should stay flat in P at a fixed BATCH; CLIP's logits grow as B x P B.
#   [CONTRAST=binary] [BATCH=256] [RANKS="1 2 4"] benchmarks/siglip_ring.sh [ROUNDS] [STEPS] [DATA]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-20} data=${3:-data/fmnist-pairs}
contrast=${CONTRAST:-.build/release/contrast} batch=${BATCH:-256} ranks=${RANKS:-"1 2 4"}
[ -f "$data/train/dataset.json" ] || "$contrast" prepare fashion-mnist --out "$data" --pairs projection --shards 16
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export OMPI_MCA_rmaps_base_oversubscribe=1
for round in $(seq "$rounds"); do
  for p in $ranks; do
    for kind in clip siglip; do
      settings=(--set data.path="$data" --set data.batch_per_rank="$batch" --set loss.kind=$kind --set communication.precision=fp32)
      [ $kind = siglip ] && settings+=(--set loss.sides=pairs --set loss.temperature=0.1 --set loss.temperature_mode=learnable)
      out="$scratch/$round-$p-$kind.json"
      "$contrast" bench step --ranks "$p" --json --repeats "$steps" --warmup 3 --config configs/fmnist-clip.yaml "${settings[@]}" \
        | grep '^{' | tail -1 > "$out"
      /usr/bin/python3 - "$out" "$kind" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["memory"]
print(f'{sys.argv[2]:6s} P={r["ranks"]}: step {r["median_ms"]:.2f} ms, '
      f'loss {r["loss_ms"]:.2f} ms, gather {r["gather_ms"]:.2f} ms, loss workspace {m["logits_bytes"] / 1e6:.3f} MB, '
      f'exchange {m["embedding_exchange_bytes"] / 1e6:.3f} MB, peak RSS {r["resident_peak_mb"]:.1f} MB', flush=True)
PY
    done
  done
done
/usr/bin/python3 - "$scratch" "$ranks" <<'PY'
import glob, json, statistics, sys
scratch, ranks = sys.argv[1], sys.argv[2].split()
print(json.load(open(glob.glob(f"{scratch}/*.json")[0]))["machine"]["cpu_model"])
print("| P | loss | step ms | loss ms | gather ms | loss workspace MB | embedding exchange MB | peak RSS MB (rank 0) |")
print("|---|---|---|---|---|---|---|---|")
for p in ranks:
    for kind in ("clip", "siglip"):
        runs = []
        for path in sorted(glob.glob(f"{scratch}/*-{p}-{kind}.json")):
            runs.append(json.load(open(path)))
        med = lambda f: statistics.median(f(r) for r in runs)
        print(f'| {p} | {kind} | {med(lambda r: r["median_ms"]):.2f} | {med(lambda r: r["loss_ms"]):.2f} | {med(lambda r: r["gather_ms"]):.2f} '
              f'| {med(lambda r: r["memory"]["logits_bytes"]) / 1e6:.3f} | {med(lambda r: r["memory"]["embedding_exchange_bytes"]) / 1e6:.3f} '
              f'| {med(lambda r: r["resident_peak_mb"]):.1f} |')
PY
