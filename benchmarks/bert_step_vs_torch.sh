#!/usr/bin/env bash
# Side-by-side training-step benchmark of the text encoder (issue 22): contrast's BERT mini
# (`bench step --config configs/bench-bert-mini.yaml --synthetic-text`: fixed random token ids, no
# data read) against transformers' BertModel of the same shape (benchmarks/torch_bert_step.py), one
# thread, 64 pairs (128 sequences) of 128 tokens a step, mean pooling, MNRL at temperature 0.05,
# dropout 0.1, AdamW. Rounds alternate the systems so machine noise hits them alike; the figures
# are the medians over rounds of each round's median step, and their ratio.
#
#   [CONTRAST=binary] [PYTHON=python] benchmarks/bert_step_vs_torch.sh [ROUNDS] [STEPS]
#   (defaults 3 and 8; a release build, and a python with transformers: launch/verify-python.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3} steps=${2:-8}
contrast=${CONTRAST:-.build/release/contrast}
python=${PYTHON:-${CONTRAST_VERIFY_PYTHON:-.venv-verify/bin/python}}
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
"$python" -c 'import torch, transformers' 2>/dev/null \
    || { echo "needs torch and transformers: run launch/verify-python.sh, or set PYTHON" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
config=configs/bench-bert-mini.yaml pairs=64

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
for ((r = 1; r <= rounds; r++)); do
    $contrast bench step --config $config --synthetic-text --json --repeats "$steps" --warmup 2 >> "$ours"
    "$python" benchmarks/torch_bert_step.py --preset mini --pairs $pairs --tokens 128 --steps "$steps" --warmup 2 >> "$theirs"
done
"$python" - "$ours" "$theirs" $pairs <<'PY'
import json, statistics, sys
def rows(path):
    return [json.loads(l) for l in open(path) if l.startswith("{")]
ours, theirs, pairs = rows(sys.argv[1]), rows(sys.argv[2]), int(sys.argv[3])
med = statistics.median
def each(values):
    return ", ".join("%.0f" % v for v in values)
# bench step counts a sample as a pair (2 sequences): its step time is samples / (samples/s).
steps = [1e3 * pairs / o["images_per_second_step"] for o in ours]
c = med(steps)
print(f"{len(ours)} rounds, each the median of the round's steps; BERT mini, {pairs} pairs x 128 tokens, one thread")
print(f"contrast  step {c:8.2f} ms = {pairs * 1e3 / c:6.1f} pairs/s  (rounds: {each(steps)})")
for key in ("forward_ms", "loss_ms", "backward_ms", "optimizer_ms"):
    print(f"          {key[:-3]:<12} {med([o[key] for o in ours]):8.2f} ms")
t = med([x["median_ms"]["total"] for x in theirs])
print(f"pytorch   step {t:8.2f} ms = {pairs * 1e3 / t:6.1f} pairs/s  (rounds: {each(x['median_ms']['total'] for x in theirs)})")
for key in ("forward_loss", "backward", "optimizer"):
    print(f"          {key:<12} {med([x['median_ms'][key] for x in theirs]):8.2f} ms")
print(f"contrast is {t / c:.3f}x as fast as pytorch (ratio of median step times)")
PY
