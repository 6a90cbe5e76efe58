#!/usr/bin/env python3
"""PyTorch side of the ViT training-step benchmark (configs/fmnist-simclr-vit.yaml, step only).

tools/vit.py's VisionTransformer (pre-LN blocks: LayerNorm, QKV in one Linear, softmax attention,
output projection, exact-GELU MLP; final LayerNorm; [CLS] pooling) with the config's SimCLR head
and loss, on fixed random inputs (augmentation excluded), one process, one thread:

  encoder  vit-small-28: 1 x 28 x 28, patch 4 (49 + [CLS] = 50 tokens), width 128, 6 blocks, 4 heads, MLP 512
           vit-tiny:     3 x 32 x 32, patch 4 (64 + [CLS] = 65 tokens), width 192, 12 blocks, 3 heads, MLP 768
  head     Linear D->256, ReLU, Linear 256->128, L2-normalise
  loss     NT-Xent, temperature 0.2, over 2N views
  update   AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 5e-2

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python3 benchmarks/torch_vit_step.py \\
      --preset vit-small-28 [--images 256] [--steps 10] [--warmup 2]

(The script sets those variables itself if they are unset, before torch loads.) Prints one JSON
object: per-step median milliseconds of forward+loss, backward, optimizer and total.
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
import vit  # noqa: E402  (the module contrast's export is checked against)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import step_record, timed_steps  # noqa: E402  (the loop every torch_*_step.py times)


def attention_without_masks(self, x, key_mask=None):
    """tools/vit.py's Attention.forward without its nan_to_num, which only matters for a sample
    with no real key (there are no masks here): the plain PyTorch way, not slowed for contrast's sake."""
    batch, tokens, dim = x.shape
    width = dim // self.heads
    q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) * width ** -0.5).softmax(-1)
    return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


vit.Attention.forward = attention_without_masks

PRESETS = {  # channels, image side, patch, dim, depth, heads, mlp width (Config.swift's ViTPreset)
    "vit-small-28": (1, 28, 4, 128, 6, 4, 512),
    "vit-tiny": (3, 32, 4, 192, 12, 3, 768),
}
TEMPERATURE = 0.2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="vit-small-28")
    parser.add_argument("--images", type=int, default=256, help="N images per step (2N views)")
    parser.add_argument("--channels", type=int, default=0,
                        help="image channels instead of the preset's (1: grey)")
    parser.add_argument("--steps", type=int, default=10, help="measured steps")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(arguments.seed)
    channels, side, patch, dim, depth, heads, mlp_width = PRESETS[arguments.preset]
    channels = arguments.channels or channels
    encoder = vit.VisionTransformer(channels, (side, side), patch, dim, depth, heads, mlp_width, pool="cls", eps=1e-6)
    torch.nn.init.trunc_normal_(encoder.pos_embed, std=0.02)
    torch.nn.init.trunc_normal_(encoder.cls_token, std=0.02)
    head = torch.nn.Sequential(torch.nn.Linear(dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128))
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-2)
    views = 2 * arguments.images
    x = torch.rand(views, channels * side * side)   # fixed random pixels in [0, 1], view-major

    phases, losses = timed_steps(encoder, head, optimizer, x, arguments.warmup, arguments.steps, TEMPERATURE)
    print(json.dumps(step_record(f"{arguments.preset} SimCLR step (augmentation excluded)", phases, losses, parameters,
                                 arguments.images, arguments.warmup, arguments.steps, input=[channels, side, side])))


if __name__ == "__main__":
    main()
