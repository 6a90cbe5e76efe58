#!/usr/bin/env python3
"""PyTorch side of the side-by-side training-step benchmark (fmnist-simclr-mlp, step only).

The reference workload of /work/shared/benchmarks/fmnist-simclr-mlp.md, augmentation
excluded, on fixed random inputs, one process, one thread:

  encoder  Linear 784->1024, ReLU, Linear 1024->1024, ReLU, Linear 1024->256   (h)
  head     Linear 256->256, ReLU, Linear 256->128, L2-normalise                (z)
  loss     NT-Xent, temperature 0.2, over 2N = 512 views (N = 256 images)
  update   AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4

Run it single-threaded, as the Swift side runs one rank per core:

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 \\
      python3 benchmarks/torch_step.py [--steps 30] [--warmup 5]

(The script sets those variables itself if they are unset, before torch loads.)
Prints one JSON object on stdout: per-step median milliseconds of forward+loss, backward,
optimizer (zero_grad + step) and total, images per second, and the median time of the
step's GEMMs alone, run with torch.mm on the same shapes and layouts, so the GEMM fraction
of the step is known.
"""
import os

for name, value in (("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                    ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(name, value)

import argparse
import ctypes
import json
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGES = 256                    # N, images per step (one rank)
VIEWS = 2 * IMAGES              # 2N views
TEMPERATURE = 0.2
ENCODER = [784, 1024, 1024, 256]
HEAD = [256, 256, 128]


def openblas():
    """The OpenBLAS library torch resolved (Debian links libblas.so.3 -> OpenBLAS), or None."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            library = ctypes.CDLL(name)
            library.openblas_get_num_threads  # raises if this BLAS is not OpenBLAS
            library.openblas_get_config.restype = ctypes.c_char_p
            return library
        except (OSError, AttributeError):
            continue
    return None


def mlp(widths):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def nt_xent(z, temperature):
    """SimCLR loss, mean over all 2N anchors; the positive of view i is view (i + N) mod 2N."""
    n2 = z.shape[0]
    logits = (z @ z.t()) / temperature
    self_mask = torch.eye(n2, dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(logits, targets)


def timed_steps(encoder, head, optimizer, x, warmup, steps, temperature=TEMPERATURE):
    """Runs warmup + steps SimCLR steps on the fixed views x (view-major, i and i + N) and returns
    the measured steps' phase times in seconds, {"forward_loss", "backward", "optimizer", "total"},
    and every step's loss. The loop every benchmarks/torch_*_step.py script times."""
    phases = {"forward_loss": [], "backward": [], "optimizer": [], "total": []}
    losses = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        z = F.normalize(head(encoder(x)), dim=1)
        loss = nt_xent(z, temperature)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)      # like zeroing the flat gradient arena
        t3 = time.perf_counter()
        losses.append(loss.item())
        if step >= warmup:
            for key, value in (("forward_loss", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2), ("total", t3 - t0)):
                phases[key].append(value)
    return phases, losses


def step_record(benchmark, phases, losses, parameters, images, warmup, steps, **fields):
    """The JSON object every benchmarks/torch_*_step.py prints for timed_steps' results: the
    framework and CPU, `fields` (the script's own: input shape, layout), the per-phase medians in
    ms, images per second and the first and last loss."""
    median_ms = {key: round(1e3 * statistics.median(values), 3) for key, values in phases.items()}
    config = torch.__config__.show()
    return {
        "benchmark": benchmark,
        "framework": "pytorch", "torch_version": torch.__version__, "python": platform.python_version(),
        "cpu_capability": next((line.split(":")[1].strip() for line in config.splitlines() if "CPU capability" in line), None),
        "torch_threads": torch.get_num_threads(), "mkldnn_enabled": torch.backends.mkldnn.enabled,
        **fields,
        "images_per_step": images, "views_per_step": 2 * images,
        "parameters": sum(p.numel() for p in parameters),
        "warmup_steps": warmup, "measured_steps": steps,
        "median_ms": median_ms, "images_per_second": round(images / (median_ms["total"] / 1e3), 1),
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
    }


def gemm_shapes():
    """(m, k, n, transpose_a, transpose_b) of every GEMM in one step, as torch runs them."""
    shapes = []
    layers = list(zip(ENCODER, ENCODER[1:])) + list(zip(HEAD, HEAD[1:]))
    for d_in, d_out in layers:                       # forward: Y = X W^T
        shapes.append((VIEWS, d_in, d_out, False, True))
    shapes.append((VIEWS, HEAD[-1], VIEWS, False, True))            # S = Z Z^T
    shapes += [(VIEWS, VIEWS, HEAD[-1], False, False)] * 2          # dZ = dS Z + dS^T Z
    for index, (d_in, d_out) in enumerate(layers):
        shapes.append((d_out, VIEWS, d_in, True, False))            # dW = dY^T X
        if index > 0:                                               # dX = dY W (not for the input)
            shapes.append((VIEWS, d_out, d_in, False, False))
    return shapes


def time_gemms(shapes, repeats, warmup):
    operands = []
    for m, k, n, transpose_a, transpose_b in shapes:
        a = torch.randn(k, m).t() if transpose_a else torch.randn(m, k)
        b = torch.randn(n, k).t() if transpose_b else torch.randn(k, n)
        operands.append((a, b, torch.empty(m, n)))
    times = []
    for r in range(warmup + repeats):
        start = time.perf_counter()
        for a, b, out in operands:
            torch.mm(a, b, out=out)
        elapsed = time.perf_counter() - start
        if r >= warmup:
            times.append(elapsed)
    flops = sum(2 * m * k * n for m, k, n, _, _ in shapes)
    return times, flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="measured steps K")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    blas = openblas()
    if blas is not None:
        blas.openblas_set_num_threads(1)
    torch.manual_seed(arguments.seed)

    encoder, head = mlp(ENCODER), mlp(HEAD)
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    # Two "views" of each of N images: fixed random pixels in [0, 1], view-major (i, i + N).
    x = torch.rand(VIEWS, ENCODER[0])

    phases, losses = timed_steps(encoder, head, optimizer, x, arguments.warmup, arguments.steps)

    shapes = gemm_shapes()
    gemm_times, gemm_flops = time_gemms(shapes, arguments.steps, arguments.warmup)

    median_ms = {key: 1e3 * statistics.median(values) for key, values in phases.items()}
    gemm_ms = 1e3 * statistics.median(gemm_times)
    config = torch.__config__.show()
    result = {
        "benchmark": "fmnist-simclr-mlp step (augmentation excluded)",
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": next((line.split(":")[1].strip() for line in config.splitlines() if "CPU capability" in line), None),
        "blas": blas.openblas_get_config().decode() if blas is not None else "unknown (not OpenBLAS)",
        "blas_threads": blas.openblas_get_num_threads() if blas is not None else None,
        "torch_threads": torch.get_num_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "env": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")},
        "images_per_step": IMAGES,
        "views_per_step": VIEWS,
        "parameters": sum(p.numel() for p in parameters),
        "warmup_steps": arguments.warmup,
        "measured_steps": arguments.steps,
        "median_ms": {key: round(value, 3) for key, value in median_ms.items()},
        "mean_total_ms": round(1e3 * statistics.mean(phases["total"]), 3),
        "images_per_second": round(IMAGES / (median_ms["total"] / 1e3), 1),
        "gemm": {
            "count": len(shapes),
            "gflop_per_step": round(gemm_flops / 1e9, 3),
            "median_ms": round(gemm_ms, 3),
            "gflops_per_second": round(gemm_flops / 1e9 / (gemm_ms / 1e3), 1),
            "fraction_of_step": round(gemm_ms / median_ms["total"], 3),
        },
        "loss_first": round(losses[0], 5),
        "loss_last": round(losses[-1], 5),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
