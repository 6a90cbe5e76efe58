#!/usr/bin/env python3
"""Load a `contrast export` safetensors file into PyTorch modules (docs/export.md).

Each tower in the file (encoder, projection, pair_encoder, pair_projection) becomes the
torch.nn.Sequential of Linear and ReLU (or GELU) modules its metadata describes, or, for
`encoder_kind: cnn`, the residual CNN below, for `encoder_kind: vit`, the Vision Transformer of
tools/vit.py, for `encoder_kind: resnet`, the ResNet of tools/resnet.py; a residual adapter (`adapter_width`) follows the
encoder. The file's tensor names are the state_dict keys of those modules, so
load_state_dict(strict=True) checks every name and shape. The embedding z is the L2
normalisation of the projection's output.

    python3 tools/load_safetensors.py model.safetensors                 # describe the file
    python3 tools/load_safetensors.py model.safetensors --inputs x.npy --out h.npy
    python3 tools/load_safetensors.py model.safetensors --fashion-mnist /usr/share/datasets/fashion-mnist \\
        --what embedding --compare z.npy                                # against `contrast embed`

Inputs: uint8 arrays are divided by 255 (as contrast does), float arrays used as they are; each
sample is flattened. --compare prints the largest absolute difference from a .npy of the same
shape and exits 1 when it exceeds --tolerance. Needs numpy and torch; the safetensors package is
used when installed, else the plain reader below.
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch


def read_plain(path):
    """(tensors, metadata) of a safetensors file of F32 tensors, with numpy alone."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {entry['dtype']}; this reader handles F32 only")
        begin, end = entry["data_offsets"]
        values = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=8 + length + begin)
        tensors[name] = values.reshape(entry["shape"]).copy()
    return tensors, metadata


def read_package(path):
    """(tensors, metadata) through the safetensors package."""
    from safetensors import safe_open
    with safe_open(path, framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}


def read(path, reader="auto"):
    """(tensors, metadata, reader used): reader 'safetensors', 'plain', or 'auto' (the package when installed)."""
    if reader == "auto":
        try:
            import safetensors  # noqa: F401
            reader = "safetensors"
        except ImportError:
            reader = "plain"
    tensors, metadata = (read_package if reader == "safetensors" else read_plain)(path)
    return tensors, metadata, reader


def mlp(widths, activation):
    """Linear layers of widths [I, H1, ..., O] with the activation between them, none after the last."""
    layers = []
    for index in range(len(widths) - 1):
        if index > 0:
            layers.append(activation())
        layers.append(torch.nn.Linear(widths[index], widths[index + 1]))
    return torch.nn.Sequential(*layers)


class ResidualBlock(torch.nn.Module):
    """relu(norm2(conv2(relu(norm1(conv1(x))))) + skip(x)); skip is a strided 1x1 convolution with
    bias when channels or size change, else the identity (contrast's ResidualBlock)."""

    def __init__(self, channels, out_channels, stride, groups, eps):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = torch.nn.GroupNorm(groups, out_channels, eps)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = torch.nn.GroupNorm(groups, out_channels, eps)
        if stride != 1 or channels != out_channels:
            self.projection = torch.nn.Conv2d(channels, out_channels, 1, stride, 0, bias=True)
        else:
            self.projection = None

    def forward(self, x):
        y = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))
        return torch.relu(y + (x if self.projection is None else self.projection(x)))


class CNN(torch.nn.Module):
    """contrast's CNN.make: 3x3 stem, GroupNorm, ReLU; one ResidualBlock per stage (stride 2 after
    the first); the last pool_stages stages' maps average-pooled to pool_cells x pool_cells,
    flattened and concatenated shallowest first; then the Linear `fc` when the file has one."""

    def __init__(self, metadata):
        super().__init__()
        channels = json.loads(metadata["encoder_channels"])
        groups = json.loads(metadata["encoder_groups"])
        self.image_shape = json.loads(metadata["image_shape"])
        self.pool_cells = int(metadata["pool_cells"])
        self.pool_stages = int(metadata["pool_stages"])
        eps = float(metadata["norm_eps"])
        self.stem = torch.nn.Conv2d(1, channels[0], 3, 1, 1, bias=False)
        self.stem_norm = torch.nn.GroupNorm(groups[0], channels[0], eps)
        previous = channels[0]
        for index, out_channels in enumerate(channels):
            setattr(self, f"stage{index}", ResidualBlock(previous, out_channels, 1 if index == 0 else 2, groups[index], eps))
            previous = out_channels
        self.stages = len(channels)
        if metadata["encoder_fc"] == "true":
            pooled = sum(c * self.pool_cells ** 2 for c in channels[-self.pool_stages:])
            self.fc = torch.nn.Linear(pooled, int(metadata["representation_width"]))
        else:
            self.fc = None

    def forward(self, x):
        x = torch.relu(self.stem_norm(self.stem(x.reshape(-1, 1, *self.image_shape))))
        pooled = []
        for index in range(self.stages):
            x = getattr(self, f"stage{index}")(x)
            if index >= self.stages - self.pool_stages:
                # Bins [floor(i H / G), ceil((i + 1) H / G)), as contrast's AdaptiveAveragePool.
                pooled.append(torch.nn.functional.adaptive_avg_pool2d(x, self.pool_cells).flatten(1))
        h = torch.cat(pooled, 1)
        return h if self.fc is None else self.fc(h)


class Adapter(torch.nn.Module):
    """contrast's ResidualAdapter: h' = h + up(relu(down(h)))."""

    def __init__(self, width, bottleneck):
        super().__init__()
        self.down = torch.nn.Linear(width, bottleneck)
        self.up = torch.nn.Linear(bottleneck, width)

    def forward(self, h):
        return h + self.up(torch.relu(self.down(h)))


class ContrastModel(torch.nn.Module):
    """The towers a file holds, built from its metadata."""

    TOWERS = ("encoder", "projection", "pair_encoder", "pair_projection")

    def __init__(self, metadata):
        super().__init__()
        # torch.nn.GELU's default is the exact (erf) form, as contrast's GELU.
        activation = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[metadata["activation"]]
        for tower in self.TOWERS:
            if tower == "encoder" and metadata.get("encoder_kind") == "cnn":
                self.encoder = CNN(metadata)
            elif tower == "encoder" and metadata.get("encoder_kind") == "vit":
                sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
                from vit import VisionTransformer
                self.encoder = VisionTransformer.from_metadata(metadata)
            elif tower == "encoder" and metadata.get("encoder_kind") == "resnet":
                sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
                from resnet import ResNet
                self.encoder = ResNet.from_metadata(metadata)
            elif tower + "_widths" in metadata:
                setattr(self, tower, mlp(json.loads(metadata[tower + "_widths"]), activation))
            if tower == "encoder" and "adapter_width" in metadata:
                self.adapter = Adapter(int(metadata["representation_width"]), int(metadata["adapter_width"]))
        self.normalize = metadata.get("normalize", "none")

    @torch.no_grad()
    def encode(self, x, pair=False):
        """(h, z) of x (B x I): the representation, and the L2-normalised embedding when the file holds the head (else None)."""
        prefix = "pair_" if pair else ""
        h = getattr(self, prefix + "encoder")(x)
        if not pair and hasattr(self, "adapter"):
            h = self.adapter(h)
        head = getattr(self, prefix + "projection", None)
        if head is None:
            return h, None
        z = head(h)
        return h, torch.nn.functional.normalize(z, dim=1) if self.normalize == "l2" else z


def load(path, reader="auto"):
    """(model in eval mode, metadata, reader used)."""
    tensors, metadata, used = read(path, reader)
    model = ContrastModel(metadata)
    model.load_state_dict({name: torch.from_numpy(values) for name, values in tensors.items()}, strict=True)
    return model.eval(), metadata, used


def fashion_mnist(directory, split, limit):
    """Images of an IDX folder as uint8 (N x 784)."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(f"{directory}/{prefix}-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    magic, count, rows, columns = struct.unpack(">IIII", data[:16])
    assert magic == 2051, f"{directory}: not an IDX image file"
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * columns)
    return images[:limit] if limit else images


def as_inputs(array):
    """Float32 rows: uint8 as byte / 255 (division, as contrast does), anything else converted."""
    array = array.reshape(array.shape[0], -1)
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / np.float32(255))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="a safetensors file written by `contrast export`")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--inputs", help=".npy of samples (N x ...): uint8 divided by 255, floats as they are")
    source.add_argument("--fashion-mnist", metavar="DIR", help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--split", choices=["train", "test"], default="test", help="with --fashion-mnist (default test)")
    parser.add_argument("--limit", type=int, default=0, help="with --fashion-mnist: the first N images only")
    parser.add_argument("--what", choices=["representation", "embedding"], default="representation")
    parser.add_argument("--pairs", action="store_true", help="through the pair tower (two-tower CLIP models)")
    parser.add_argument("--reader", choices=["auto", "safetensors", "plain"], default="auto")
    parser.add_argument("--out", help="write the result as a float32 .npy")
    parser.add_argument("--compare", help=".npy to compare with (from `contrast embed`)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted absolute difference for --compare")
    args = parser.parse_args()

    model, metadata, reader = load(args.file, args.reader)
    if args.inputs is None and args.fashion_mnist is None:
        summary = {key: value for key, value in metadata.items() if key != "config"}
        summary["reader"] = reader
        summary["tensors"] = {name: " x ".join(map(str, tensor.shape)) for name, tensor in model.state_dict().items()}
        print(json.dumps(summary, indent=2))
        return 0
    tower = "pair_encoder" if args.pairs else "encoder"
    if not hasattr(model, tower):
        sys.exit(f"{args.file} has no {tower}: --pairs needs a two-tower (CLIP) model")
    if args.what == "embedding" and not hasattr(model, tower.replace("encoder", "projection")):
        sys.exit(f"{args.file} holds the encoder only (contents: {metadata.get('contents')}); "
                 "export with --what model for embeddings")
    array = np.load(args.inputs) if args.inputs else fashion_mnist(args.fashion_mnist, args.split, args.limit)
    h, z = model.encode(as_inputs(array), pair=args.pairs)
    result = (h if args.what == "representation" else z).numpy()
    if args.out:
        np.save(args.out, result)
    if args.compare:
        expected = np.load(args.compare)
        if expected.shape != result.shape:
            sys.exit(f"{args.compare} is {expected.shape}, torch computed {result.shape}")
        difference = float(np.max(np.abs(expected.astype(np.float64) - result.astype(np.float64)))) if result.size else 0.0
        print(f"max abs difference {difference:.3e} over {result.shape[0]} x {result.shape[1]} {args.what} values "
              f"(reader {reader}, tolerance {args.tolerance:g})")
        return 0 if difference <= args.tolerance else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
