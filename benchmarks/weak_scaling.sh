#!/usr/bin/env bash
# Weak scaling of the training step on this machine: `contrast bench step` on 1 rank and on
# P ranks (256 images per rank, one OpenBLAS thread each), alternating rounds so machine noise
# hits both alike; prints the medians over rounds of each round's images/s and their ratio.
#
#   benchmarks/weak_scaling.sh [ROUNDS] [RANKS] [-- extra contrast bench step arguments]   (defaults 5, 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-5} ranks=${2:-2}
shift $(( $# >= 2 ? 2 : $# )); [[ ${1:-} == -- ]] && shift
contrast=.build/release/contrast
[[ -x $contrast ]] || { echo "build first: swift build -c release" >&2; exit 1; }
one=() many=()
for ((r = 1; r <= rounds; r++)); do
    one+=("$($contrast bench step --json --repeats 30 --warmup 5 "$@")")
    many+=("$($contrast bench step --ranks "$ranks" --json --repeats 30 --warmup 5 "$@")")
done
python3 - "$ranks" "${one[@]}" "${many[@]}" <<'PY'
import json, statistics, sys
ranks = int(sys.argv[1]); records = [json.loads(r) for r in sys.argv[2:]]
half = len(records) // 2
one, many = records[:half], records[half:]
for key, label in (("images_per_second_step", "step (augmentation excluded)"), ("images_per_second_end_to_end", "end to end")):
    a = statistics.median(r[key] for r in one); b = statistics.median(r[key] for r in many)
    print(f"{label:<30} 1 rank {a:7.0f} images/s   {ranks} ranks {b:7.0f} images/s   ratio {b / a:.3f}  (efficiency {b / a / ranks:.1%})")
PY
