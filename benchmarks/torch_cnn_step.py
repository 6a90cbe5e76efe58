#!/usr/bin/env python3
"""PyTorch side of the CNN training-step benchmark (configs/fmnist-simclr-cnn.yaml, step only).

The same network as contrast's `model.encoder: cnn` of that config (tools/load_safetensors.py's
CNN module, built here without a weights file), augmentation excluded, fixed random inputs, one
process, one thread:

  encoder  3x3 stem conv 1->16 (no bias), GroupNorm(8), ReLU;
           residual stages of 16, 32, 64 channels at 28x28, 14x14, 7x7 (basic blocks, GroupNorm(8),
           strided 1x1 projection with bias when the shape changes);
           the 14x14 and 7x7 stages' maps average-pooled to 3x3 cells, concatenated: h = 864
  head     Linear 864->256, ReLU, Linear 256->128, L2-normalise                     (z)
  loss     NT-Xent, temperature 0.2, over 2N = 512 views (N = 256 images)
  update   AdamW lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python3 benchmarks/torch_cnn_step.py [--steps 10] [--warmup 2]
      [--channels-last]

(The script sets those variables itself if they are unset, before torch loads.) NCHW by
default: channels_last was slower in torch 1.13 on this network. Prints one JSON object: per-step
median milliseconds of forward+loss, backward, optimizer and total, and images per second.
"""
import os

for name, value in (("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                    ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")):
    os.environ.setdefault(name, value)

import argparse
import json
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from load_safetensors import CNN  # noqa: E402  (the module contrast's CNN export is checked against)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import step_record, timed_steps  # noqa: E402  (the loop every torch_*_step.py times)

IMAGES = 256
VIEWS = 2 * IMAGES
TEMPERATURE = 0.2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true", help="run the encoder in channels_last")
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(arguments.seed)
    metadata = {"encoder_channels": "[16, 32, 64]", "encoder_groups": "[8, 8, 8]", "image_shape": "[28, 28]",
                "pool_cells": "3", "pool_stages": "2", "norm_eps": "1e-5", "encoder_fc": "false"}
    encoder = CNN(metadata)
    head = torch.nn.Sequential(torch.nn.Linear(864, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128))
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    x = torch.rand(VIEWS, 1, 28, 28)
    if arguments.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    phases, losses = timed_steps(encoder, head, optimizer, x, arguments.warmup, arguments.steps, TEMPERATURE)
    print(json.dumps(step_record("fmnist-simclr-cnn step (augmentation excluded)", phases, losses, parameters, IMAGES,
                                 arguments.warmup, arguments.steps, channels_last=arguments.channels_last)))


if __name__ == "__main__":
    main()
