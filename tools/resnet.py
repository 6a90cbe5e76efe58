#!/usr/bin/env python3
"""contrast's ResNet encoder (`model.encoder: resnet`) as a plain PyTorch module (docs/encoders.md).

torchvision's ResNet with GroupNorm in place of BatchNorm. The module's state_dict keys are the
tensor names `contrast export` writes under `encoder.`: conv1, norm1 (torchvision's bn1),
layer<s>.<b>.{conv1, norm1, conv2, norm2[, conv3, norm3][, projection]}, fc. The skip's 1x1
convolution (`projection`, with a bias) stands where torchvision has `downsample` (a convolution
without bias and a BatchNorm). tools/load_safetensors.py builds it from a file's metadata
(`encoder_kind: resnet`).

    python3 tools/resnet.py encoder.safetensors --inputs x.npy --output-gradient w.npy \\
        --compare-output h.npy --compare-gradients gradients.safetensors

computes h = encoder(x) and the gradients of L = sum(h * w) in float64 and prints, as JSON, the
largest difference from contrast's h and gradients per tensor, relative to the tensor's largest
magnitude (the PyTorch equivalence test of Tests/EvaluationTests reads it).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def groups(channels, limit):
    """GroupNorm's groups: the largest count of at most `limit` that divides `channels` (contrast's ResNet.groups)."""
    return max(g for g in range(1, min(limit, channels) + 1) if channels % g == 0)


class BasicBlock(torch.nn.Module):
    """relu(norm2(conv2(relu(norm1(conv1(x))))) + skip(x)), conv1 strided; skip a strided 1x1
    convolution with bias when channels or size change, else the identity."""

    def __init__(self, channels, out_channels, stride, limit, eps):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = torch.nn.GroupNorm(groups(out_channels, limit), out_channels, eps)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = torch.nn.GroupNorm(groups(out_channels, limit), out_channels, eps)
        self.projection = (torch.nn.Conv2d(channels, out_channels, 1, stride, 0, bias=True)
                           if stride != 1 or channels != out_channels else None)

    def main(self, x):
        return self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))

    def forward(self, x):
        return torch.relu(self.main(x) + (x if self.projection is None else self.projection(x)))


class Bottleneck(BasicBlock):
    """torchvision's v1.5 bottleneck: 1x1 to `width`, 3x3 strided, 1x1 to `out_channels`, a GroupNorm
    after each, ReLU between; the skip as the basic block's."""

    def __init__(self, channels, width, out_channels, stride, limit, eps):
        torch.nn.Module.__init__(self)
        self.conv1 = torch.nn.Conv2d(channels, width, 1, 1, 0, bias=False)
        self.norm1 = torch.nn.GroupNorm(groups(width, limit), width, eps)
        self.conv2 = torch.nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.norm2 = torch.nn.GroupNorm(groups(width, limit), width, eps)
        self.conv3 = torch.nn.Conv2d(width, out_channels, 1, 1, 0, bias=False)
        self.norm3 = torch.nn.GroupNorm(groups(out_channels, limit), out_channels, eps)
        self.projection = (torch.nn.Conv2d(channels, out_channels, 1, stride, 0, bias=True)
                           if stride != 1 or channels != out_channels else None)

    def main(self, x):
        x = torch.relu(self.norm1(self.conv1(x)))
        x = torch.relu(self.norm2(self.conv2(x)))
        return self.norm3(self.conv3(x))


class ResNet(torch.nn.Module):
    """contrast's ResNet.make: stem (small: 3x3 stride 1; imagenet: 7x7 stride 2 padding 3, then
    3x3 max pool stride 2 padding 1 after the ReLU), GroupNorm and ReLU; stages [channels, blocks,
    stride] of basic or bottleneck blocks; the last pool_stages stages' maps average-pooled to
    pool_cells x pool_cells, flattened and concatenated shallowest first; then `fc` when present."""

    def __init__(self, channels, image_shape, stages, block="basic", stem="small", expansion=4,
                 pool_cells=1, pool_stages=1, representation=0, eps=1e-5, limit=32):
        super().__init__()
        self.channels, self.image_shape, self.stem = channels, tuple(image_shape), stem
        self.pool_cells, self.pool_stages = pool_cells, pool_stages
        width = stages[0][0]
        if stem == "small":
            self.conv1 = torch.nn.Conv2d(channels, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = torch.nn.Conv2d(channels, width, 7, 2, 3, bias=False)
        self.norm1 = torch.nn.GroupNorm(groups(width, limit), width, eps)
        previous, outputs = width, []
        for index, (stage_channels, blocks, stride) in enumerate(stages):
            out = stage_channels * expansion if block == "bottleneck" else stage_channels
            layer = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                layer.append(Bottleneck(previous, stage_channels, out, s, limit, eps) if block == "bottleneck"
                             else BasicBlock(previous, out, s, limit, eps))
                previous = out
            setattr(self, f"layer{index + 1}", torch.nn.Sequential(*layer))
            outputs.append(out)
        self.stages = len(stages)
        pooled = sum(c * pool_cells ** 2 for c in outputs[-pool_stages:])
        self.fc = torch.nn.Linear(pooled, representation) if representation > 0 else None

    @staticmethod
    def from_metadata(metadata):
        """The module a `contrast export` file's metadata describes (encoder_kind resnet)."""
        fc = metadata["encoder_fc"] == "true"
        return ResNet(int(metadata["image_channels"]), json.loads(metadata["image_shape"]), json.loads(metadata["stages"]),
                      metadata["block"], metadata["stem"], int(metadata["expansion"]), int(metadata["pool_cells"]),
                      int(metadata["pool_stages"]), int(metadata["representation_width"]) if fc else 0,
                      float(metadata["norm_eps"]), int(metadata["norm_groups_max"]))

    def forward(self, x):
        x = torch.relu(self.norm1(self.conv1(x.reshape(-1, self.channels, *self.image_shape))))
        if self.stem == "imagenet":
            x = torch.nn.functional.max_pool2d(x, 3, 2, 1)
        pooled = []
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
            if index >= self.stages - self.pool_stages:
                # Bins [floor(i H / G), ceil((i + 1) H / G)), as contrast's AdaptiveAveragePool.
                pooled.append(torch.nn.functional.adaptive_avg_pool2d(x, self.pool_cells).flatten(1))
        h = torch.cat(pooled, 1)
        return h if self.fc is None else self.fc(h)


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from load_safetensors import read

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="an encoder exported by `contrast export` (encoder_kind resnet)")
    parser.add_argument("--inputs", required=True, help=".npy of samples, float32 N x (C H W)")
    parser.add_argument("--output-gradient", required=True, help=".npy w (N x R): the loss is sum(h * w)")
    parser.add_argument("--compare-output", required=True, help=".npy of contrast's h")
    parser.add_argument("--compare-gradients", required=True, help="safetensors of contrast's dL/dparameter, the file's names")
    args = parser.parse_args()

    tensors, metadata, _ = read(args.file)
    if metadata.get("encoder_kind") != "resnet":
        sys.exit(f"{args.file}: encoder_kind is {metadata.get('encoder_kind')}, not resnet")
    model = ResNet.from_metadata(metadata).double()
    prefix = "encoder."
    model.load_state_dict({name[len(prefix):]: torch.from_numpy(values).double()
                           for name, values in tensors.items() if name.startswith(prefix)}, strict=True)
    x = torch.from_numpy(np.load(args.inputs)).double()
    h = model(x)
    (h * torch.from_numpy(np.load(args.output_gradient)).double()).sum().backward()

    def relative(computed, expected):
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        return float(np.max(np.abs(computed - expected))) / scale if scale > 0 else float(np.max(np.abs(computed)))

    gradients, _, _ = read(args.compare_gradients)
    report = {"output": relative(np.load(args.compare_output).astype(np.float64), h.detach().numpy()), "gradients": {}}
    for name, parameter in model.named_parameters():
        report["gradients"][prefix + name] = relative(gradients[prefix + name].astype(np.float64), parameter.grad.numpy())
    report["missing"] = sorted(set(gradients) - {prefix + name for name, _ in model.named_parameters()})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
