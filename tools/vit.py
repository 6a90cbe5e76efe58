#!/usr/bin/env python3
"""contrast's Vision Transformer (`model.encoder: vit`) as a plain PyTorch module (docs/encoders.md).

The module's state_dict keys are the tensor names `contrast export` writes under `encoder.`
(timm's VisionTransformer names): patch_embed.proj, cls_token, pos_embed, blocks.<i>.{norm1,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, fc. tools/load_safetensors.py builds it from a
file's metadata (`encoder_kind: vit`).

    python3 tools/vit.py encoder.safetensors --inputs x.npy --output-gradient w.npy \\
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


class Attention(torch.nn.Module):
    """Multi-head self-attention: q, k, v from one Linear (each token's row [q | k | v], head h at
    columns h E of each third), softmax(q k^T / sqrt(E)) over the unmasked keys, then `proj`."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x, key_mask=None):
        batch, tokens, dim = x.shape
        width = dim // self.heads
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * width ** -0.5                     # B x H x T x T
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        # softmax subtracts the row maximum; a sample without a real key gets 0 (contrast's choice), not NaN.
        weights = torch.nan_to_num(scores.softmax(-1), nan=0.0)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class MLP(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))   # exact (erf) GELU, as contrast's


class Block(torch.nn.Module):
    """Pre-LN (ViT): u = x + attn(norm1(x)), y = u + mlp(norm2(u)); post-LN (BERT):
    u = norm1(x + attn(x)), y = norm2(u + mlp(u))."""

    def __init__(self, dim, heads, mlp_width, eps, pre_norm=True):
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = torch.nn.LayerNorm(dim, eps)
        self.attn = Attention(dim, heads)
        self.norm2 = torch.nn.LayerNorm(dim, eps)
        self.mlp = MLP(dim, mlp_width)

    def forward(self, x, key_mask=None):
        if self.pre_norm:
            x = x + self.attn(self.norm1(x), key_mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, key_mask))
        return self.norm2(x + self.mlp(x))


class PatchEmbed(torch.nn.Module):
    def __init__(self, channels, dim, patch):
        super().__init__()
        self.proj = torch.nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)               # B x N x D, patches row-major


class VisionTransformer(torch.nn.Module):
    """contrast's VisionTransformer.make: patch embedding, [CLS] (pool 'cls') and position embedding,
    `depth` pre-LN blocks, LayerNorm, the [CLS] state or the mean of the tokens, then `fc` when
    `representation` > 0."""

    def __init__(self, channels, image_shape, patch, dim, depth, heads, mlp_width, pool="cls", representation=0, eps=1e-6):
        super().__init__()
        self.channels, self.image_shape, self.pool = channels, tuple(image_shape), pool
        self.patch_embed = PatchEmbed(channels, dim, patch)
        tokens = (image_shape[0] // patch) * (image_shape[1] // patch) + (1 if pool == "cls" else 0)
        if pool == "cls":
            self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = torch.nn.ModuleList(Block(dim, heads, mlp_width, eps) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(dim, eps)
        self.fc = torch.nn.Linear(dim, representation) if representation > 0 else None

    @staticmethod
    def from_metadata(metadata):
        """The module a `contrast export` file's metadata describes (encoder_kind vit)."""
        fc = metadata["encoder_fc"] == "true"
        return VisionTransformer(int(metadata["image_channels"]), json.loads(metadata["image_shape"]), int(metadata["patch"]),
                                 int(metadata["dim"]), int(metadata["depth"]), int(metadata["heads"]), int(metadata["mlp_width"]),
                                 metadata["pool"], int(metadata["representation_width"]) if fc else 0, float(metadata["norm_eps"]))

    def forward(self, x):
        x = self.patch_embed(x.reshape(-1, self.channels, *self.image_shape))
        if self.pool == "cls":
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        h = x[:, 0] if self.pool == "cls" else x.mean(1)
        return h if self.fc is None else self.fc(h)


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from load_safetensors import read

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="an encoder exported by `contrast export` (encoder_kind vit)")
    parser.add_argument("--inputs", required=True, help=".npy of samples, float32 N x (H W)")
    parser.add_argument("--output-gradient", required=True, help=".npy w (N x R): the loss is sum(h * w)")
    parser.add_argument("--compare-output", required=True, help=".npy of contrast's h")
    parser.add_argument("--compare-gradients", required=True, help="safetensors of contrast's dL/dparameter, the file's names")
    args = parser.parse_args()

    tensors, metadata, _ = read(args.file)
    if metadata.get("encoder_kind") != "vit":
        sys.exit(f"{args.file}: encoder_kind is {metadata.get('encoder_kind')}, not vit")
    model = VisionTransformer.from_metadata(metadata).double()
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
