#!/usr/bin/env python3
"""PyTorch DDP side of the P-rank side-by-side training-step benchmark (fmnist-simclr-mlp or -cnn, step only).

The workload of benchmarks/torch_step.py (model, layer order, initialisation, AdamW; the
definitions are imported from it), or with --model cnn that of benchmarks/torch_cnn_step.py (the
CNN of configs/fmnist-simclr-cnn.yaml, 1 x 28 x 28 inputs, AdamW lr 2e-3), run data-parallel: P
processes started with torch.multiprocessing.spawn, DistributedDataParallel over the gloo backend
(CPU), one compute thread per rank, as the Swift side runs one rank per core.

  per rank  256 images = 512 views, fixed random inputs (augmentation excluded)
  loss      NT-Xent, temperature 0.2, over the GLOBAL batch of P*512 views: the embeddings
            are all-gathered with torch.distributed.nn.functional.all_gather, which
            backpropagates through the gather (its gloo backward is an all-to-all + sum,
            i.e. a reduce-scatter); each rank's 512 anchors are scored against all P*512
            candidates, the positive being the other view of the same image on that rank
  update    AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4 (DDP all-reduces
            the gradients during backward, overlapped with it, in gloo's own threads)

  /usr/bin/python3 benchmarks/torch_ddp_step.py [--model mlp|cnn] [--ranks 2] [--steps 30] [--warmup 5] [--port N]
  /usr/bin/python3 benchmarks/torch_ddp_step.py [--model cnn] --ranks 2 --check   # DDP gradient == 1-process gradient?

(Debian's torchrun is broken, hence spawn.) OMP_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE and
OPENBLAS_NUM_THREADS=1 are set here, if unset, before torch loads, and inherited by the ranks.
Rank 0 prints one JSON object on stdout. --ranks 1 runs the same code (DDP over a world of
one) and gives the single-process figure that the P-rank figure is divided by.

Timing: every rank times each of its steps on its own (no barrier inside the timed loop, so
the benchmark adds no synchronisation of its own); after the loop one all_reduce(MAX) over
the per-step times gives, per step, the slowest rank's time, and median_ms is the median of
those over the measured steps. The ranks are coupled by the all-gather in the forward pass
and the gradient all-reduce, so a rank that runs ahead waits inside its step and the per-rank
times agree closely; the max is the conservative choice. As a cross-check, wall_ms_per_step
is the time from a barrier before the first measured step to the end of the last one,
divided by the number of steps (max over ranks): the sustained rate, noise included.

Memory: each rank's peak resident set (VmHWM of /proc/self/status, torch's import and the
process group included) after its last step, peak_resident_mb_per_rank, to set beside
contrast's memory account (`bench step`).
"""
import os

for name, value in (("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                    ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(name, value)

import argparse
import copy
import json
import platform
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from torch_step import ENCODER, HEAD, IMAGES, TEMPERATURE, VIEWS, mlp, openblas

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from load_safetensors import CNN  # noqa: E402  (the module contrast's CNN export is checked against)

LEARNING_RATE = {"mlp": 1e-3, "cnn": 2e-3}   # configs/fmnist-simclr.yaml's and configs/fmnist-simclr-cnn.yaml's

PHASES = ("forward_loss", "backward", "optimizer", "total")


def nt_xent_global(z_local, z_all, rank, temperature):
    """NT-Xent of this rank's anchors against the global batch, mean over this rank's anchors.

    z_all holds the ranks' views in rank order, so local view j of rank r is global view
    r*V + j (V = views per rank); within a rank the layout is view-major as in torch_step.py:
    the positive of local view j is local view (j + V/2) mod V. The anchor's own column is
    masked out, leaving the other P*V - 2 views of the global batch as negatives.
    """
    views = z_local.shape[0]
    rows = torch.arange(views)
    offset = rank * views
    logits = (z_local @ z_all.t()) / temperature                 # V x P*V
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, offset + rows] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = offset + (rows + views // 2) % views
    return F.cross_entropy(logits, targets)


def step_loss(model, x, rank):
    """Forward and loss of one step on this rank.

    Normalisation: the benchmark's loss is the mean over all P*V anchors of the global batch,
    L = (1/(P*V)) sum over ranks r of S_r, S_r = the sum of rank r's anchor losses. Rank r
    returns the mean over its own anchors, S_r / V = P * (S_r / (P*V)). Its backward puts
    into rank r's parameter gradient the contributions of every rank's loss that flow
    through rank r's embeddings (the gather's backward sums them over ranks), so the sum over
    ranks of the local gradients is grad(sum_r S_r / V) = P * grad(L). DDP all-reduces and
    then DIVIDES BY P (it averages), which leaves exactly grad(L): the gradient a single
    process computes on the whole global batch. (--check verifies this numerically.)
    """
    z = F.normalize(model(x), dim=1)
    z_all = torch.cat(dist_functional.all_gather(z), dim=0)
    return nt_xent_global(z, z_all, rank, TEMPERATURE)


def cnn():
    """torch_cnn_step.py's network: the CNN of configs/fmnist-simclr-cnn.yaml (h = 864) and its head."""
    metadata = {"encoder_channels": "[16, 32, 64]", "encoder_groups": "[8, 8, 8]", "image_shape": "[28, 28]",
                "pool_cells": "3", "pool_stages": "2", "norm_eps": "1e-5", "encoder_fc": "false"}
    return nn.Sequential(CNN(metadata), nn.Sequential(nn.Linear(864, 256), nn.ReLU(), nn.Linear(256, 128)))


def build(arguments, rank, ranks):
    """The model (same seed, order and initialisation as torch_step.py or torch_cnn_step.py) and every rank's input.

    Inputs: after the model is initialised, the global generator draws one V x 784 tensor
    (cnn: V x 1 x 28 x 28) per rank in rank order and rank r keeps the r-th, so rank 0's input is
    the single-process script's x and --ranks 1 starts from its exact first step.
    """
    torch.manual_seed(arguments.seed)
    if arguments.model == "cnn":
        model = cnn()
        inputs = [torch.rand(VIEWS, 1, 28, 28) for _ in range(ranks)]
    else:
        model = nn.Sequential(mlp(ENCODER), mlp(HEAD))             # encoder then head, as torch_step.py
        inputs = [torch.rand(VIEWS, ENCODER[0]) for _ in range(ranks)]
    return model, inputs


def check_gradient(arguments, rank, ranks, model, inputs):
    """One DDP backward against a single-process backward on the global batch, on rank 0.

    In float64, so that a normalisation mistake (a factor P) cannot hide in rounding noise.
    """
    model.double()
    inputs = [x.double() for x in inputs]
    reference = copy.deepcopy(model)
    ddp = DistributedDataParallel(model)
    loss = step_loss(ddp, inputs[rank], rank)
    loss.backward()
    global_loss = loss.detach().clone()
    dist.all_reduce(global_loss)
    global_loss /= ranks
    if rank != 0:
        return
    z = F.normalize(reference(torch.cat(inputs, dim=0)), dim=1)
    views = z.shape[0] // ranks
    rows = torch.arange(z.shape[0])
    logits = (z @ z.t()) / TEMPERATURE
    logits = logits.masked_fill(torch.eye(z.shape[0], dtype=torch.bool), float("-inf"))
    targets = (rows // views) * views + (rows % views + views // 2) % views
    reference_loss = F.cross_entropy(logits, targets)
    reference_loss.backward()
    worst = 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        worst = max(worst, ((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-30)).item())
    print(json.dumps({
        "check": "DDP gradient vs single-process gradient on the global batch",
        "model": arguments.model,
        "ranks": ranks,
        "loss_ddp": global_loss.item(),
        "loss_single_process": reference_loss.item(),
        "max_relative_gradient_difference": worst,
        "ok": worst < 1e-9 and abs(global_loss.item() - reference_loss.item()) < 1e-9,
    }))


def worker(rank, ranks, port, arguments):
    torch.set_num_threads(1)
    blas = openblas()
    if blas is not None:
        blas.openblas_set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ranks)
    try:
        model, inputs = build(arguments, rank, ranks)
        if arguments.check:
            check_gradient(arguments, rank, ranks, model, inputs)
            return
        run(arguments, rank, ranks, model, inputs[rank], blas)
    finally:
        dist.destroy_process_group()


def run(arguments, rank, ranks, model, x, blas):
    ddp = DistributedDataParallel(model)                            # broadcasts rank 0's parameters
    parameters = list(ddp.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE[arguments.model], betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)

    times = torch.zeros(arguments.steps, len(PHASES), dtype=torch.float64)
    losses = []
    for step in range(arguments.warmup + arguments.steps):
        if step == arguments.warmup:
            dist.barrier()
            wall_start = time.perf_counter()
        t0 = time.perf_counter()
        loss = step_loss(ddp, x, rank)
        t1 = time.perf_counter()
        loss.backward()                                             # + the overlapped gradient all-reduce
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)                      # as torch_step.py
        t3 = time.perf_counter()
        losses.append(loss.item())
        if step >= arguments.warmup:
            times[step - arguments.warmup] = torch.tensor([t1 - t0, t2 - t1, t3 - t2, t3 - t0], dtype=torch.float64)
    wall = torch.tensor([time.perf_counter() - wall_start], dtype=torch.float64)

    # Outside the timed loop: the slowest rank per step and phase, the mean loss over ranks
    # (equal anchor counts, so the global-batch loss), and the slowest rank's wall time.
    rank_times = times.clone()
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    dist.all_reduce(wall, op=dist.ReduceOp.MAX)
    global_losses = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(global_losses)
    global_losses /= ranks
    rank_totals = [torch.zeros(arguments.steps, dtype=torch.float64) for _ in range(ranks)]
    dist.all_gather(rank_totals, rank_times[:, PHASES.index("total")].contiguous())
    peaks = [torch.zeros(1, dtype=torch.float64) for _ in range(ranks)]
    dist.all_gather(peaks, torch.tensor([peak_resident_bytes()], dtype=torch.float64))
    if rank != 0:
        return

    median_ms = {key: 1e3 * statistics.median(times[:, i].tolist()) for i, key in enumerate(PHASES)}
    wall_ms = 1e3 * wall.item() / arguments.steps
    config = torch.__config__.show()
    result = {
        "benchmark": f"fmnist-simclr-{arguments.model} step (augmentation excluded), data-parallel",
        "model": arguments.model,
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": next((line.split(":")[1].strip() for line in config.splitlines() if "CPU capability" in line), None),
        "cpus": os.cpu_count(),
        "blas": blas.openblas_get_config().decode() if blas is not None else "unknown (not OpenBLAS)",
        "blas_threads": blas.openblas_get_num_threads() if blas is not None else None,
        "torch_threads": torch.get_num_threads(),
        "env": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")},
        "backend": dist.get_backend(),
        "ranks": ranks,
        "launcher": "torch.multiprocessing.spawn",
        "images_per_step_per_rank": IMAGES,
        "views_per_step_per_rank": VIEWS,
        "global_views": ranks * VIEWS,
        "parameters": sum(p.numel() for p in parameters),
        "warmup_steps": arguments.warmup,
        "measured_steps": arguments.steps,
        "timing": "per-step max over ranks of each rank's own step time (no barrier in the loop); median over steps",
        "median_ms": {key: round(value, 3) for key, value in median_ms.items()},
        "median_total_ms_per_rank": [round(1e3 * statistics.median(t.tolist()), 3) for t in rank_totals],
        "wall_ms_per_step": round(wall_ms, 3),
        "images_per_second": round(ranks * IMAGES / (median_ms["total"] / 1e3), 1),
        "images_per_second_wall": round(ranks * IMAGES / (wall_ms / 1e3), 1),
        "peak_resident_mb_per_rank": [round(p.item() / 1e6, 1) for p in peaks],
        "loss_first": round(global_losses[0].item(), 5),
        "loss_last": round(global_losses[-1].item(), 5),
    }
    print(json.dumps(result), flush=True)


def peak_resident_bytes():
    """VmHWM of this process (Linux), in bytes; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return 1024 * int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="the network: torch_step.py's MLP or torch_cnn_step.py's CNN")
    parser.add_argument("--ranks", type=int, default=2, help="processes P (one thread each)")
    parser.add_argument("--steps", type=int, default=30, help="measured steps K")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    parser.add_argument("--port", type=int, default=None, help="rendezvous port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true",
                        help="instead of timing: compare one DDP gradient with the single-process gradient on the global batch")
    arguments = parser.parse_args()
    if arguments.ranks < 1 or arguments.steps < 1 or arguments.warmup < 0:
        parser.error("need --ranks >= 1, --steps >= 1, --warmup >= 0")
    port = arguments.port if arguments.port is not None else free_port()
    mp.spawn(worker, args=(arguments.ranks, port, arguments), nprocs=arguments.ranks, join=True)


if __name__ == "__main__":
    main()
