#!/usr/bin/env python3
"""The scaling model of docs/scaling.md: step time and weak-scaling efficiency of a
data-parallel contrastive step at P ranks, from measured compute and fitted communication costs.

    python3 benchmarks/scaling_model.py fit  RESULTS.jsonl...   # alpha, beta from `contrast bench allreduce|allgather --json`
    python3 benchmarks/scaling_model.py table [--fits FITS.json]  # the prediction tables (markdown)

Communication (Hockney's model, t = alpha + bytes * beta per message; Thakur, Rabenseifner and
Gropp 2005 for the algorithms MPI libraries pick):

  all-reduce of n bytes, ring:          2 (P-1) alpha + 2 (P-1)/P n beta
  all-reduce, Rabenseifner (halving/doubling):
                                         2 log2(P) alpha + 2 (P-1)/P n beta
  all-gather of n bytes per rank (P n in all), recursive doubling / Bruck:
                                         log2(P) alpha + (P-1) n beta
  reduce-scatter of the same (the candidate gradient back to its owner): the same cost.

The gradient all-reduce runs in buckets of `bucket` bytes; each bucket pays the latency term.
With overlap, buckets run during backward: only what does not fit behind backward is exposed, and
never less than the last bucket (it starts when backward ends). The embedding all-gather and the
candidate-gradient reduce-scatter sit on the critical path (the loss needs every embedding).

Compute per rank at fixed local batch (weak scaling) is the measured single-rank step, except the
loss, whose GEMMs grow with the global batch: 3 GEMMs of (local views) x (global views) x E.
Efficiency = (single-rank step) / (P-rank step): the share of ideal images/s that P ranks reach.
"""
import argparse
import json
import math
import sys

# --- Workloads -----------------------------------------------------------------------------------

SGEMM_FLOPS = 93.5e9  # measured: `contrast bench gemm`, one OpenBLAS thread (docs/benchmarks.md)

WORKLOADS = {
    # The benchmark workload (shared/benchmarks/fmnist-simclr-mlp.md), one core per rank, measured.
    "benchmark MLP (2.2 M)": dict(
        parameters=2_214_528, local_views=512, embedding=128,
        forward=23.86e-3, backward=38.48e-3, other=3.0e-3,   # bench step: forward, backward, AdamW + checks
        loss_flops_rate=SGEMM_FLOPS,
        note="256 images per rank, one core per rank: the measured step of `contrast bench step`"),
    # A ViT-B-sized encoder (86 M parameters). One rank = one 64-core node; ViT-B/16 at 224x224 costs
    # 17.6 G multiply-adds per image forward (35.2 GFLOP), backward twice that; two views per image.
    "ViT-B-sized (86 M)": dict(
        parameters=86_000_000, local_views=128, embedding=128,
        forward=128 * 35.2e9 / (64 * 0.8 * SGEMM_FLOPS), backward=128 * 70.4e9 / (64 * 0.8 * SGEMM_FLOPS),
        other=86e6 * 4 * 4 / 20e9,   # AdamW streams ~16 bytes/parameter at ~20 GB/s per node
        loss_flops_rate=64 * 0.8 * SGEMM_FLOPS,
        note="64 images (128 views) per rank, a 64-core node per rank at 80 % of this machine's per-core sgemm rate"),
    # Horovod's published setting (Sergeev and Del Balso 2018): ResNet-101 (44.5 M parameters) on
    # Pascal GPUs, 64 images per GPU at about 140 images/s (0.46 s per step, backward two thirds),
    # fp32 gradients, 25 Gb/s RoCE. A supervised step: no embedding gather, no contrastive loss.
    "ResNet-101, Horovod's setting": dict(
        parameters=44_500_000, local_views=64, embedding=0,
        forward=0.46 / 3, backward=0.46 * 2 / 3, other=0.0, loss_flops_rate=1e15,
        note="64 images per GPU, 0.46 s of compute per step (a P100), fp32 gradients"),
}

NETWORKS = {
    # alpha: per-message latency of an MPI collective step; beta: seconds per byte of one link.
    "100 Gb/s": dict(alpha=5e-6, beta=1 / 12.5e9),
    "25 Gb/s": dict(alpha=10e-6, beta=1 / 3.125e9),
}


def log2ceil(p):
    return max(0, math.ceil(math.log2(p)))


def allreduce_time(nbytes, p, alpha, beta, algorithm="rabenseifner"):
    if p == 1:
        return 0.0
    hops = 2 * log2ceil(p) if algorithm == "rabenseifner" else 2 * (p - 1)
    return hops * alpha + 2 * (p - 1) / p * nbytes * beta


def allgather_time(nbytes_per_rank, p, alpha, beta):
    if p == 1:
        return 0.0
    return log2ceil(p) * alpha + (p - 1) * nbytes_per_rank * beta


def step(workload, p, network, wire_bytes=2, overlap=True, bucket=4 << 20, chunked=True):
    """Predicted step time (s) at P ranks and its parts."""
    w = WORKLOADS[workload]
    alpha, beta = NETWORKS[network]["alpha"], NETWORKS[network]["beta"]
    views, e = w["local_views"], w["embedding"]
    loss = 3 * 2 * views * (views * p) * e / w["loss_flops_rate"]
    # Embeddings out (all-gather, fp32) and the candidate gradient back (reduce-scatter, fp32).
    gather = 2 * allgather_time(views * e * 4, p, alpha, beta) if e else 0.0
    grad_bytes = w["parameters"] * wire_bytes
    buckets = max(1, math.ceil(grad_bytes / bucket))
    per_bucket = allreduce_time(grad_bytes / buckets, p, alpha, beta)
    allreduce = buckets * per_bucket
    if overlap:
        exposed = max(per_bucket, allreduce - w["backward"] * (buckets - 1) / buckets) if p > 1 else 0.0
    else:
        exposed = allreduce
    total = w["forward"] + loss + gather + w["backward"] + exposed + w["other"]
    logits = views * views * p * 4 if not chunked else views * min(views * p, 4096) * 4
    return dict(total=total, loss=loss, gather=gather, allreduce=allreduce, exposed=exposed, logits_bytes=logits)


def strong_step(workload, p, network, global_views, **kw):
    """Step time with the global batch fixed at `global_views` (local views = global / P):
    compute per rank shrinks as 1/P (GEMM efficiency assumed unchanged), communication does not."""
    w = WORKLOADS[workload]
    scale = global_views / p / w["local_views"]
    saved = dict(w)
    try:
        w.update(local_views=global_views // p, forward=w["forward"] * scale, backward=w["backward"] * scale,
                 other=w["other"])
        return step(workload, p, network, **kw)["total"]
    finally:
        w.clear(); w.update(saved)


def efficiency(workload, p, network, **kw):
    return step(workload, 1, network, **kw)["total"] / step(workload, p, network, **kw)["total"]


def table(out=sys.stdout, ranks=(8, 64, 512, 1024)):
    for workload, w in WORKLOADS.items():
        base = step(workload, 1, "25 Gb/s")["total"]
        print(f"\n### {workload}: {w['note']}; one-rank step {base * 1e3:.1f} ms\n", file=out)
        print("| network | wire | overlap | " + " | ".join(f"P = {p}" for p in ranks) + " |", file=out)
        print("|---|---|---|" + "---|" * len(ranks), file=out)
        for network in NETWORKS:
            for wire, nbytes in (("fp32", 4), ("bf16", 2)):
                for overlap in (True, False):
                    cells = []
                    for p in ranks:
                        s = step(workload, p, network, wire_bytes=nbytes, overlap=overlap)
                        cells.append(f"{s['total'] * 1e3:.0f} ms, {base / s['total'] * 100:.0f} %")
                    print(f"| {network} | {wire} | {'yes' if overlap else 'no'} | " + " | ".join(cells) + " |", file=out)
        print("\nWhere the time goes at bf16 with overlap, 25 Gb/s (ms): loss GEMMs / embedding all-gather + "
              "reduce-scatter / gradient all-reduce (exposed of total)\n", file=out)
        print("| P | loss | gather | all-reduce | unchunked logits per rank |\n|---|---|---|---|---|", file=out)
        for p in (1,) + tuple(ranks):
            s = step(workload, p, "25 Gb/s", chunked=False)
            print(f"| {p} | {s['loss'] * 1e3:.1f} | {s['gather'] * 1e3:.1f} | {s['exposed'] * 1e3:.1f} of "
                  f"{s['allreduce'] * 1e3:.1f} | {s['logits_bytes'] / 2**20:.0f} MiB |", file=out)


def strong_table(out=sys.stdout, ranks=(8, 64, 512, 1024)):
    for workload, global_views in (("benchmark MLP (2.2 M)", 65536), ("ViT-B-sized (86 M)", 65536)):
        w = WORKLOADS[workload]
        one = strong_step(workload, 1, "25 Gb/s", global_views)
        print(f"\n### {workload}, global batch fixed at {global_views:,} views; one rank would take {one:.1f} s\n", file=out)
        print("| network | wire | " + " | ".join(f"P = {p}" for p in ranks) + " |", file=out)
        print("|---|---|" + "---|" * len(ranks), file=out)
        for network in NETWORKS:
            for wire, nbytes in (("fp32", 4), ("bf16", 2)):
                cells = []
                for p in ranks:
                    t = strong_step(workload, p, network, global_views, wire_bytes=nbytes)
                    cells.append(f"{t * 1e3:.0f} ms, {one / (p * t) * 100:.0f} %")
                print(f"| {network} | {wire} | " + " | ".join(cells) + " |", file=out)


def fit(paths):
    """Least-squares alpha, beta per (collective, transport, format, P) from `bench allreduce --sweep --json`
    and `bench allgather --json` lines:
    t = alpha_eff + bytes_on_wire * beta, bytes_on_wire = the algorithm's per-rank volume."""
    groups = {}
    for path in paths:
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            op, p, nbytes = r["collective"], r["ranks"], r["bytes"]
            transport = "tcp" if "tcp" in r["transport"] else "shm"
            volume = 2 * (p - 1) / p * nbytes if op == "allreduce" else (p - 1) / p * nbytes
            groups.setdefault((op, transport, r["format"], p), []).append((volume, r["median_ms"] * 1e-3))
    fits = {}
    for key, points in sorted(groups.items()):
        n = len(points)
        if n < 2:
            continue
        # Relative least squares: minimise sum ((alpha + beta x - y) / y)^2, so 4 KB counts as much as 64 MB.
        w = [1 / y ** 2 for _, y in points]
        s0 = sum(w); s1 = sum(wi * x for wi, (x, _) in zip(w, points)); s2 = sum(wi * x * x for wi, (x, _) in zip(w, points))
        t0 = sum(wi * y for wi, (_, y) in zip(w, points)); t1 = sum(wi * x * y for wi, (x, y) in zip(w, points))
        det = s0 * s2 - s1 * s1
        alpha = (t0 * s2 - s1 * t1) / det
        beta = (s0 * t1 - s1 * t0) / det
        worst = max(abs(alpha + beta * x - y) / y for x, y in points)
        fits["/".join(map(str, key))] = dict(alpha_us=alpha * 1e6, gb_per_s=1e-9 / beta, points=n, worst_relative_error=worst)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {alpha * 1e6:.1f} µs | {1e-9 / beta:.2f} GB/s | {n} | "
              f"{worst * 100:.0f} % |")
    return fits


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit")
    f.add_argument("results", nargs="+")
    sub.add_parser("table")
    sub.add_parser("strong")
    args = parser.parse_args()
    if args.command == "fit":
        print("| op | transport | precision | P | alpha | 1/beta | points | worst fit error |\n|---|---|---|---|---|---|---|---|")
        fit(args.results)
    elif args.command == "strong":
        strong_table()
    else:
        table()
