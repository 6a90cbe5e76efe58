"""Image files for the tests of `contrast prepare images`, written by PIL, with PIL's own reading of them.

    python tools/image_fixtures.py fmnist OUT TRAIN TEST IDX   Fashion-MNIST's first TRAIN training and TEST test
        images (the IDX .gz files in folder IDX, Debian's /usr/share/datasets/fashion-mnist) as 8-bit gray PNGs OUT/train/NNNNN.png and OUT/test/NNNNN.png in IDX order,
        with OUT/train.csv and OUT/test.csv (filename,label)
    python tools/image_fixtures.py decode OUT             one file per kind PIL writes (PNG: 1-bit, 4-bit gray,
        gray, gray+alpha, RGB, RGBA, palette with and without transparency, interlaced, 16-bit gray, 16-bit RGB
        and RGBA written by hand; JPEG: gray, RGB 4:2:0 and 4:4:4, progressive, CMYK) as OUT/NAME.png|jpg, and
        OUT/NAME.rgb.npy / OUT/NAME.l.npy: PIL's pixels after convert("RGB") / convert("L") (uint8 H x W x 3,
        H x W); 16-bit files: the high byte of each sample (PIL reads 16-bit gray as I;16, whose convert clips)
    python tools/image_fixtures.py resize OUT S           OUT/resize-*.npy sources (uint8 H x W x C) of several
        shapes and OUT/resize-*.S.crop.npy / .S.pad.npy: PIL's Image.resize(BILINEAR) to the shorter (longer)
        side S, then the centre S x S crop (or the pad onto black), as docs/data-format.md specifies them
    python tools/image_fixtures.py exif OUT               OUT/orient-K.jpg for K = 1..8 (one RGB image saved
        with EXIF orientation K) and OUT/orient-K.npy: PIL's ImageOps.exif_transpose of its decode

Everything is a pure function of the arguments (numpy's default_rng(0) for random pixels).
"""
import gzip
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps


def fmnist(out, train, test, root):
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        with gzip.open(f"{root}/{prefix}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(f"{root}/{prefix}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
        os.makedirs(f"{out}/{split}", exist_ok=True)
        with open(f"{out}/{split}.csv", "w") as csv:
            csv.write("filename,label\n")
            for i in range(count):
                name = f"{i:05d}.png"
                Image.fromarray(images[i], mode="L").save(f"{out}/{split}/{name}")
                csv.write(f"{name},{labels[i]}\n")


def png16(path, array):
    """A 16-bit PNG (gray, RGB or RGBA by the last axis) written by hand: PIL cannot write 16-bit colour."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def smooth(rng, height, width, channels):
    """A photo-like image: a random low-frequency pattern plus a little noise (JPEG's usual input)."""
    y, x = np.mgrid[0:height, 0:width]
    planes = []
    for _ in range(channels):
        a, b, c = rng.uniform(0.05, 0.3, 3)
        plane = 127 + 80 * np.sin(a * x + b * y) * np.cos(c * (x - y)) + rng.normal(0, 8, (height, width))
        planes.append(np.clip(plane, 0, 255).astype(np.uint8))
    return np.stack(planes, axis=-1) if channels > 1 else planes[0]


def decode(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = smooth(rng, 37, 53, 3)
    gray = smooth(rng, 41, 29, 1)
    alpha = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    files = {}
    Image.fromarray(gray).convert("1").save(f"{out}/png-1bit.png"); files["png-1bit"] = "png"
    Image.fromarray(gray).save(f"{out}/png-4bit.png", bits=4); files["png-4bit"] = "png"
    Image.fromarray(gray).save(f"{out}/png-gray.png"); files["png-gray"] = "png"
    Image.fromarray(np.dstack([gray, gray[::-1]]), mode="LA").save(f"{out}/png-gray-alpha.png"); files["png-gray-alpha"] = "png"
    Image.fromarray(rgb).save(f"{out}/png-rgb.png"); files["png-rgb"] = "png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(f"{out}/png-rgba.png"); files["png-rgba"] = "png"
    palette = Image.fromarray(rgb).quantize(colors=37)
    palette.save(f"{out}/png-palette.png"); files["png-palette"] = "png"
    palette.save(f"{out}/png-palette-transparent.png", transparency=3); files["png-palette-transparent"] = "png"
    Image.fromarray(rgb).save(f"{out}/png-interlaced.png", interlace=1); files["png-interlaced"] = "png"
    wide = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    Image.fromarray(wide, mode="I;16").save(f"{out}/png-gray16.png"); files["png-gray16"] = "png"
    wide3 = rng.integers(0, 65536, (19, 27, 3), dtype=np.uint16)
    png16(f"{out}/png-rgb16.png", wide3); files["png-rgb16"] = "png"
    wide4 = rng.integers(0, 65536, (19, 27, 4), dtype=np.uint16)
    png16(f"{out}/png-rgba16.png", wide4); files["png-rgba16"] = "png"
    Image.fromarray(gray).save(f"{out}/jpeg-gray.jpg", quality=90); files["jpeg-gray"] = "jpg"
    Image.fromarray(rgb).save(f"{out}/jpeg-rgb420.jpg", quality=90, subsampling=2); files["jpeg-rgb420"] = "jpg"
    Image.fromarray(rgb).save(f"{out}/jpeg-rgb444.jpg", quality=95, subsampling=0); files["jpeg-rgb444"] = "jpg"
    Image.fromarray(rgb).save(f"{out}/jpeg-progressive.jpg", quality=85, progressive=True); files["jpeg-progressive"] = "jpg"
    Image.fromarray(rgb).convert("CMYK").save(f"{out}/jpeg-cmyk.jpg"); files["jpeg-cmyk"] = "jpg"
    for name, extension in files.items():
        if name == "jpeg-cmyk":
            continue
        image = Image.open(f"{out}/{name}.{extension}")
        if name == "png-gray16":
            high = (np.array(image).astype(np.uint16) >> 8).astype(np.uint8)
            image = Image.fromarray(high, mode="L")
        elif name in ("png-rgb16", "png-rgba16"):
            image = Image.fromarray((wide3 >> 8).astype(np.uint8) if name == "png-rgb16" else (wide4[..., :3] >> 8).astype(np.uint8))
        np.save(f"{out}/{name}.rgb.npy", np.array(image.convert("RGB")))
        np.save(f"{out}/{name}.l.npy", np.array(image.convert("L")))


def fit(image, size, mode):
    width, height = image.size

    def scaled(a, b):
        return max(1, (2 * a * size + b) // (2 * b))

    if mode == "crop":
        w, h = (size, scaled(height, width)) if width <= height else (scaled(width, height), size)
        resized = image.resize((w, h), Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return resized.crop((left, top, left + size, top + size))
    w, h = (scaled(width, height), size) if width <= height else (size, scaled(height, width))
    resized = image.resize((w, h), Image.BILINEAR)
    canvas = Image.new(image.mode, (size, size), 0)
    canvas.paste(resized, ((size - w) // 2, (size - h) // 2))
    return canvas


def resize(out, size):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = [(28, 28, 1), (224, 160, 3), (160, 224, 3), (33, 47, 3), (17, 9, 1), (500, 333, 3), (64, 64, 3), (7, 5, 3)]
    for height, width, channels in shapes:
        array = smooth(rng, height, width, channels)
        name = f"resize-{height}x{width}x{channels}"
        np.save(f"{out}/{name}.npy", array if channels > 1 else array[..., None])
        image = Image.fromarray(array)
        for mode in ("crop", "pad"):
            result = np.array(fit(image, size, mode))
            np.save(f"{out}/{name}.{size}.{mode}.npy", result if channels > 1 else result[..., None])


def exif(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    base = Image.fromarray(smooth(rng, 24, 40, 3))
    for orientation in range(1, 9):
        data = Image.Exif()
        data[0x0112] = orientation
        path = f"{out}/orient-{orientation}.jpg"
        base.save(path, quality=95, exif=data.tobytes())
        np.save(f"{out}/orient-{orientation}.npy", np.array(ImageOps.exif_transpose(Image.open(path)).convert("RGB")))


if __name__ == "__main__":
    command, out = sys.argv[1], sys.argv[2]
    if command == "fmnist":
        fmnist(out, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif command == "decode":
        decode(out)
    elif command == "resize":
        resize(out, int(sys.argv[3]))
    elif command == "exif":
        exif(out)
    else:
        sys.exit(f"unknown command {command}")
