#!/usr/bin/env python3
"""Applies torchvision's functional ops to the images contrast's view steps were given and compares
(docs/data-format.md, "Views"; Tests/DataTests/TorchvisionViewTests.swift writes the cases).

    python tools/check_views.py CASES_DIR

CASES_DIR/cases.json lists {"name", "op", "args", "input", "output"}: input and output are .npy
files (float32 [C, H, W] in [0, 1]) beside it; op is one of adjust_brightness, adjust_contrast,
adjust_saturation, adjust_hue, rgb_to_grayscale, gaussian_blur, solarize, hflip, resized_crop.
Prints one JSON object: name -> {"max": largest |torchvision - contrast|, "changed": largest
|torchvision - input|, and for resized_crop
"interior": the same over output pixels whose sample point lies inside the box (at least half a
source pixel from its edges, where torchvision replicates the box's edge and contrast reads the
image beyond it)}. Needs torch and torchvision (launch/verify-python.sh: torchvision 0.15.2 without
its dependencies on Debian's torch 1.13).
"""
import json
import os
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")  # torchvision's C extension (image IO) does not load on torch 1.13; unused here
import torchvision.transforms.functional as F  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402


def apply(op, x, args):
    if op == "adjust_brightness":
        return F.adjust_brightness(x, args[0])
    if op == "adjust_contrast":
        return F.adjust_contrast(x, args[0])
    if op == "adjust_saturation":
        return F.adjust_saturation(x, args[0])
    if op == "adjust_hue":
        return F.adjust_hue(x, args[0])
    if op == "rgb_to_grayscale":
        return F.rgb_to_grayscale(x, num_output_channels=3)
    if op == "gaussian_blur":
        return F.gaussian_blur(x, [args[0], args[0]], [args[1], args[1]])
    if op == "solarize":
        return F.solarize(x, args[0])
    if op == "hflip":
        return F.hflip(x)
    if op == "resized_crop":
        top, left, height, width, flip = args
        out = F.resized_crop(x, top, left, height, width, list(x.shape[-2:]), InterpolationMode.BILINEAR, antialias=True)
        return F.hflip(out) if flip else out
    raise SystemExit(f"check_views: unknown op {op}")


def interior(shape, args):
    """Output pixels whose bilinear sample point lies within the box (0 <= src <= size - 1)."""
    top, left, height, width, flip = args
    H, W = shape[-2:]
    rows = [(i + 0.5) * height / H - 0.5 for i in range(H)]
    cols = [(j + 0.5) * width / W - 0.5 for j in range(W)]
    row_ok = np.array([0 <= r <= height - 1 for r in rows])
    col_ok = np.array([0 <= c <= width - 1 for c in cols])
    if flip:
        col_ok = col_ok[::-1]
    return row_ok[:, None] & col_ok[None, :]


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "cases.json")) as f:
        cases = json.load(f)
    report = {}
    for case in cases:
        x = torch.from_numpy(np.load(os.path.join(directory, case["input"])))
        ours = np.load(os.path.join(directory, case["output"]))
        theirs = apply(case["op"], x, case["args"]).numpy()
        difference = np.abs(theirs.astype(np.float64) - ours.astype(np.float64))
        # "changed": how far torchvision moved the image, so an op both sides skipped cannot pass unseen.
        entry = {"max": float(difference.max()), "changed": float(np.abs(theirs - x.numpy()).max())}
        if case["op"] == "resized_crop":
            mask = interior(x.shape, case["args"])
            entry["interior"] = float(difference[:, mask].max()) if mask.any() else 0.0
        report[case["name"]] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
