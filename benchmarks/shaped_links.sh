#!/usr/bin/env bash
# docs/scaling.md's model against measurement over shaped links: `contrast bench step` (the
# benchmark workload unless arguments after -- say otherwise) on 1 rank, then on P = 2 and 3
# hosts of launch/netns-cluster.sh, one rank each, every host's link rate-limited with tc's
# token bucket filter (tbf) in both directions; prints the measured against the predicted step
# time per (hosts, rate). Needs root. Run it on an idle machine: every host shares its cores.
#
#   benchmarks/shaped_links.sh [--bin PATH] [--hosts "2 3"] [--rates "1gbit 10gbit"]
#                              [--repeats N] [--warmup N] [--alpha SECONDS] [-- bench step args]
#
#   --bin      the contrast binary (default .build/release/contrast)
#   --hosts    host counts to measure (default "2 3"); one rank per host
#   --rates    tc rates to shape each link to (default "1gbit 10gbit"; "none" = unshaped)
#   --repeats  timed steps per measurement (default 30), --warmup untimed ones (default 5)
#   --alpha    per-message latency the model assumes, seconds (default 16e-6: docs/scaling.md's
#              fitted TCP loopback all-reduce alpha)
#
# The prediction is docs/scaling.md's step model with this machine's own one-rank phases: the
# measured 1-rank step's forward, backward and the rest, the loss GEMMs grown P-fold, the
# embedding all-gather and reduce-scatter and the exposed gradient all-reduce from Hockney's
# model (benchmarks/scaling_model.py) with beta = 8 / rate. The kernel here has no netem, so
# no latency is added: alpha stays that of the veth pairs. Writes the JSON records and the table
# to --out (default runs/shaped-links/<UTC time>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
me=benchmarks/shaped_links.sh
bin=.build/release/contrast hosts_list="2 3" rates="1gbit 10gbit" repeats=30 warmup=5 alpha=16e-6 out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin=$2; shift 2 ;;
        --hosts) hosts_list=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --alpha) alpha=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) echo "$me: unknown argument $1 (see $me --help)" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "$me: needs root (network namespaces, tc)" >&2; exit 1; }
[[ -x $bin ]] || { echo "$me: no contrast binary at $bin; build it (swift build -c release) or pass --bin" >&2; exit 1; }
command -v tc > /dev/null || { echo "$me: tc not found (iproute2)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
out=${out:-runs/shaped-links/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
records="$out/records.jsonl"
: > "$records"
trap 'launch/netns-cluster.sh down > /dev/null 2>&1' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# shape HOSTS RATE: a token bucket on both ends of every host's veth pair (the bridge side shapes
# what the host receives, its eth0 what it sends); burst = 10 ms of the rate, at least 64 KB.
shape() {
    local count=$1 rate=$2 i bits burst
    [[ $rate == none ]] && return 0
    bits=$(tc_bits "$rate")
    burst=$(( bits / 8 / 100 > 65536 ? bits / 8 / 100 : 65536 ))
    for i in $(seq "$count"); do
        tc qdisc replace dev "contrast-h$i" root tbf rate "$rate" burst "$burst" latency 50ms
        ip netns exec "contrast-h$i" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
    done
}
# A tc rate in bits per second.
tc_bits() {
    local rate=${1,,}
    case "$rate" in
        *gbit) echo $(( ${rate%gbit} * 1000000000 )) ;;
        *mbit) echo $(( ${rate%mbit} * 1000000 )) ;;
        *kbit) echo $(( ${rate%kbit} * 1000 )) ;;
        *) echo "$me: rate $1: give it as Nkbit, Nmbit or Ngbit" >&2; exit 2 ;;
    esac
}
for rate in $rates; do [[ $rate == none ]] || tc_bits "$rate" > /dev/null; done

# measure HOSTS RATE: one `bench step` record across HOSTS hosts, tagged with the hosts and rate.
measure() {
    local count=$1 rate=$2 line
    shift 2
    line=$(launch/mpirun.sh --netns -np "$count" "$bin" bench step --json --repeats "$repeats" --warmup "$warmup" "$@" \
        2> "$out/p$count-$rate.err" | grep '^{' | tail -1) || true
    [[ -n $line ]] || { echo "$me: bench step on $count hosts at $rate printed no result; see $out/p$count-$rate.err" >&2; exit 1; }
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["hosts"] = int(sys.argv[2]); r["rate"] = sys.argv[3]; print(json.dumps(r))' \
        "$line" "$count" "$rate" >> "$records"
}

shift_args=("$@")
for count in $hosts_list; do
    launch/netns-cluster.sh up "$count" --slots 1 > /dev/null
    # The one-rank step on a host of the same cluster: the model's compute phases.
    measure 1 none ${shift_args[@]+"${shift_args[@]}"}
    for rate in $rates; do
        shape "$count" "$rate"
        echo "$me: $count hosts, links at $rate ..." >&2
        measure "$count" "$rate" ${shift_args[@]+"${shift_args[@]}"}
    done
    launch/netns-cluster.sh down > /dev/null
done

python3 - "$records" "$alpha" <<'PY' | tee "$out/table.md"
import json, math, sys
sys.path.insert(0, "benchmarks")
from scaling_model import allreduce_time, allgather_time

records = [json.loads(line) for line in open(sys.argv[1])]
alpha = float(sys.argv[2])
wire = {"fp32": 4, "bf16": 2, "fp16": 2}
bucket = 4 << 20   # communication.bucket_mb's default

def bits(rate):
    rate = rate.lower()
    for suffix, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if rate.endswith(suffix):
            return float(rate[: -len(suffix)]) * scale
    return None

print("| hosts | link | measured step | predicted step | model off by | measured exchange + exposed all-reduce | predicted | efficiency measured / predicted |")
print("|---|---|---|---|---|---|---|---|")
one = None
for r in records:
    if r["ranks"] == 1:
        one = r
        continue
    p, rate = r["ranks"], r["rate"]
    rate_bits = bits(rate)
    beta = 8 / rate_bits if rate_bits else 0.0
    forward, backward, loss = one["forward_ms"] * 1e-3, one["backward_ms"] * 1e-3, one["loss_ms"] * 1e-3
    rest = one["median_ms"] * 1e-3 - forward - backward - loss
    exchange = 2 * allgather_time(one["memory"]["embedding_exchange_bytes"], p, alpha, beta)
    grad_bytes = one["memory"]["parameters_bytes"] / 4 * wire.get(r["wire_precision"], 4)
    buckets = max(1, math.ceil(grad_bytes / bucket))
    per_bucket = allreduce_time(grad_bytes / buckets, p, alpha, beta)
    exposed = max(per_bucket, buckets * per_bucket - backward * (buckets - 1) / buckets)
    predicted = forward + loss * p + exchange + backward + exposed + rest
    measured = r["median_ms"] * 1e-3
    communication = (r["gather_ms"] + r["communication_ms"]) * 1e-3
    one_step = one["median_ms"] * 1e-3
    print(f"| {p} | {rate} | {measured * 1e3:.1f} ms | {predicted * 1e3:.1f} ms | {(predicted - measured) / measured * 100:+.0f} % | "
          f"{communication * 1e3:.1f} ms | {(exchange + exposed) * 1e3:.1f} ms | {one_step / measured * 100:.0f} % / {one_step / predicted * 100:.0f} % |")
print(f"\none rank: {one['median_ms']:.1f} ms (forward {one['forward_ms']:.1f}, backward {one['backward_ms']:.1f}, loss {one['loss_ms']:.1f}); "
      f"alpha {alpha * 1e6:.0f} us; wire {records[-1]['wire_precision']}; {records[-1]['repeats']} timed steps each")
PY
echo "$me: records in $records, table in $out/table.md" >&2
