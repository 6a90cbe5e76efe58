#!/usr/bin/env python3
"""Peak memory of one training process with data.hold: memory against data.hold: stream
(docs/data-format.md, "Streaming"), on a prepared data set, one rank, a few steps each.

    python3 benchmarks/stream_memory.py [--data DIR] [--copies C] [--buffers 64,1024] [--steps N]

DIR is a prepared data set (made with `contrast prepare fashion-mnist --out DIR` when missing).
With --copies C > 1 its training images are first replicated C times into a larger prepared set
(`contrast prepare npy`), so the samples a held run must keep grow while a streamed run's
buffers do not. Peak RSS is the run's maximum resident set (GNU time's %M): what a cgroup or
a node's memory would have to hold. Also printed: the decoded size of the samples (what
`memory` holds) and the seconds of the run (start-up, reading and the steps).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRAST = os.path.join(ROOT, ".build/release/contrast")


def run(arguments):
    # Through GNU time, not os.wait4 here: Linux starts a child's ru_maxrss at the RSS of the
    # process it was forked from, and this Python process held the replicated array.
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M"] + arguments, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(arguments)}\n{done.stderr[-2000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("maxrss_kb=")][-1]
    return int(peak.split("=")[1]) * 1024, time.monotonic() - started


def replicate(copies, scratch):
    """Fashion-MNIST's training images, C times, as a new prepared set (no labels: kNN is skipped)."""
    import gzip
    import numpy as np
    # Fashion-MNIST's IDX file (numpy cannot read the zstd shards).
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    big = np.concatenate([images] * copies)
    npy = os.path.join(scratch, "x.npy")
    np.save(npy, big)
    out = os.path.join(scratch, f"fmnist-x{copies}")
    subprocess.run([CONTRAST, "prepare", "npy", "--features", npy, "--out", out, "--shards", "64"], check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(npy)
    return out, big.nbytes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/fmnist")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--buffers", default="64,1024")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--config", default="configs/fmnist-simclr.yaml")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(ROOT, args.data, "train", "dataset.json")):
        subprocess.run([CONTRAST, "prepare", "fashion-mnist", "--out", args.data], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as scratch:
        data, decoded = os.path.join(ROOT, args.data), 60000 * 784
        if args.copies > 1:
            data, decoded = replicate(args.copies, scratch)
        print(f"{args.config}, {args.steps} steps, one process; samples decoded: {decoded / 1e6:.0f} MB")
        print("| data.hold | data.shuffle_buffer | peak RSS (MB) | seconds |")
        print("|---|---|---|---|")
        settings = [("memory", None)] + [("stream", int(m)) for m in args.buffers.split(",")]
        for hold, buffer in settings:
            overrides = [f"run_dir={scratch}/run-{hold}-{buffer}", "data.dataset=prepared", f"data.path={data}",
                         f"data.hold={hold}", f"train.max_steps={args.steps}", "eval.knn_every_epochs=0",
                         "checkpoint.every_steps=0", "monitor.tensorboard=false", "data.test_limit=1000", "eval.linear_every_epochs=0"]
            if buffer:
                overrides.append(f"data.shuffle_buffer={buffer}")
            peak, seconds = run([CONTRAST, "train", "--config", args.config] + [a for o in overrides for a in ("--set", o)])
            print(f"| {hold} | {buffer or '-'} | {peak / 1e6:.0f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
