#!/usr/bin/env python3
"""PyTorch side of the ResNet training-step benchmark (configs/bench-resnet18-32.yaml, step only).

The same network as contrast's `model.encoder: resnet` with `model.resnet.preset: resnet18`
(tools/resnet.py's ResNet, the module contrast's export is checked against), augmentation
excluded, fixed random inputs, one process, one thread:

  encoder  resnet18 with GroupNorm (at most 32 groups, eps 1e-5): 7x7 stride-2 stem conv 3->64,
           GroupNorm, ReLU, 3x3 stride-2 max pool; stages of 64, 128, 256, 512 channels, two basic
           blocks each (strides 1, 2, 2, 2; strided 1x1 projection with bias when the shape changes);
           on 3 x 32 x 32 images the stages run at 8x8, 4x4, 2x2, 1x1; global average pool: h = 512
  head     Linear 512->512, ReLU, Linear 512->128, L2-normalise                    (z)
  loss     NT-Xent, temperature 0.2, over 2N views (N = 128 images)
  update   AdamW lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python3 benchmarks/torch_resnet_step.py \\
      [--images 128] [--side 32] [--channels 3] [--steps 5] [--warmup 1] [--channels-last]

(The script sets those variables itself if they are unset, before torch loads.) NCHW by default,
as the CNN benchmark (channels_last was slower in torch 1.13 there). Prints one JSON object:
per-step median milliseconds of forward+loss, backward, optimizer and total, and images per second.
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
from resnet import ResNet  # noqa: E402  (the module contrast's ResNet export is checked against)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import step_record, timed_steps  # noqa: E402  (the loop every torch_*_step.py times)

RESNET18 = [[64, 2, 1], [128, 2, 2], [256, 2, 2], [512, 2, 2]]   # Config.swift's ResNetPreset.resnet18
TEMPERATURE = 0.2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="N images per step (2N views)")
    parser.add_argument("--side", type=int, default=32, help="image height and width")
    parser.add_argument("--channels", type=int, default=3, help="image channels")
    parser.add_argument("--steps", type=int, default=5, help="measured steps")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true", help="run the encoder in channels_last")
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(arguments.seed)
    encoder = ResNet(arguments.channels, (arguments.side, arguments.side), RESNET18, block="basic", stem="imagenet",
                     pool_cells=1, pool_stages=1, representation=0, eps=1e-5, limit=32)
    head = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128))
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    views = 2 * arguments.images
    x = torch.rand(views, arguments.channels, arguments.side, arguments.side)   # fixed random pixels in [0, 1], view-major
    if arguments.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    phases, losses = timed_steps(encoder, head, optimizer, x, arguments.warmup, arguments.steps, TEMPERATURE)
    print(json.dumps(step_record("resnet18 SimCLR step (augmentation excluded)", phases, losses, parameters, arguments.images,
                                 arguments.warmup, arguments.steps, channels_last=arguments.channels_last,
                                 input=[arguments.channels, arguments.side, arguments.side])))


if __name__ == "__main__":
    main()
