"""Image files in and out of NumPy, for ``cnnfast predict`` and for users' own scripts.

>>> from cnnfast import images
>>> pixels = images.read_image("digit.pgm")        # uint8 (H, W, 1) or (H, W, 3)
>>> batch = images.to_model_input(pixels, (28, 28, 1))

Netpbm (PGM and PPM, binary and ASCII) is read here with NumPy alone; PNG, JPEG and the
other formats go through Pillow, the ``image`` extra (``pip install 'cnnfast[image]'``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

NETPBM_SUFFIXES = (".pgm", ".ppm", ".pnm")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# ITU-R BT.601 luma, as Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114])

_NETPBM_CHANNELS = {b"P2": 1, b"P5": 1, b"P3": 3, b"P6": 3}


class ImageError(ValueError):
    """An image file that cannot be read, or whose shape does not fit the model."""


def read_netpbm(path: str | os.PathLike) -> np.ndarray:
    """A PGM (P2, P5) or PPM (P3, P6) file as uint8 ``(H, W, C)``, C = 1 or 3.

    16-bit files (maxval > 255) and maxval < 255 are rescaled to 0-255.
    """
    data = Path(path).read_bytes()
    magic = data[:2]
    if magic not in _NETPBM_CHANNELS:
        raise ImageError(f"{path}: not a PGM/PPM file (magic {magic!r}; expected P2, P3, P5 or P6)")
    channels = _NETPBM_CHANNELS[magic]
    # Header: magic, width, height, maxval as whitespace-separated decimals; '#' starts a
    # comment up to the end of the line. One whitespace byte separates it from binary data.
    fields: list[int] = []
    pos = 2
    token = re.compile(rb"\s*(?:#[^\n]*\n\s*)*(\d+)")
    while len(fields) < 3:
        m = token.match(data, pos)
        if m is None:
            raise ImageError(f"{path}: truncated or malformed {magic.decode()} header")
        fields.append(int(m.group(1)))
        pos = m.end()
    width, height, maxval = fields
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise ImageError(f"{path}: invalid size {width}x{height} or maxval {maxval}")
    count = width * height * channels
    if magic in (b"P5", b"P6"):
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        start = pos + 1
        raw = data[start:start + count * dtype.itemsize]
        if len(raw) != count * dtype.itemsize:
            raise ImageError(f"{path}: {len(raw)} bytes of pixel data, expected "
                             f"{count * dtype.itemsize} for {width}x{height}x{channels}")
        values = np.frombuffer(raw, dtype).astype(np.int64)
    else:
        words = data[pos:].split()
        if len(words) < count:
            raise ImageError(f"{path}: {len(words)} pixel values, expected {count}")
        try:
            values = np.array([int(w) for w in words[:count]], np.int64)
        except ValueError:
            raise ImageError(f"{path}: non-numeric pixel value in an ASCII {magic.decode()}") from None
    if values.max(initial=0) > maxval:
        raise ImageError(f"{path}: pixel value {values.max()} exceeds maxval {maxval}")
    if maxval != 255:
        values = np.rint(values * (255.0 / maxval)).astype(np.int64)
    return values.astype(np.uint8).reshape(height, width, channels)


def write_pgm(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 1)`` array as a binary PGM (P5)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"write_pgm: expected uint8 (H, W), got {image.dtype} {image.shape}")
    header = f"P5\n{image.shape[1]} {image.shape[0]}\n255\n".encode()
    Path(path).write_bytes(header + np.ascontiguousarray(image).tobytes())


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 ``(H, W, C)``: C = 1 for grayscale, 3 for colour (alpha dropped).

    PGM/PPM are read directly; other formats need Pillow (the ``image`` extra).
    """
    path = Path(path)
    if path.suffix.lower() in NETPBM_SUFFIXES:
        return read_netpbm(path)
    with open(path, "rb") as f:
        if f.read(2) in _NETPBM_CHANNELS:  # a Netpbm file under another name
            return read_netpbm(path)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageError(f"{path}: reading {path.suffix or 'this'} images needs Pillow: "
                         f"pip install 'cnnfast[image]' (PGM/PPM need nothing)") from None
    try:
        with Image.open(path) as img:
            mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            pixels = np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(H, W, C)`` (pixel centres aligned, as Pillow and OpenCV do);
    returns float64."""
    h, w = image.shape[:2]
    img = image.astype(np.float64)

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    r0, r1, fr = axis(h, height)
    c0, c1, fc = axis(w, width)
    rows = img[r0] * (1 - fr)[:, None, None] + img[r1] * fr[:, None, None]
    return rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]


def to_model_input(image: np.ndarray, shape: tuple[int, int, int], resize_to_fit: bool = False,
                   what: str = "input") -> np.ndarray:
    """One image ``(H, W)`` or ``(H, W, C)`` as float64 ``(H', W', C')`` for a model taking
    `shape` = (H', W', C'): colour turned to gray (BT.601 luma) or gray repeated to three
    channels as the model needs; resized (bilinear) only when `resize_to_fit`.

    Raises ImageError naming both shapes when the size differs and `resize_to_fit` is false.
    """
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ImageError(f"{what}: expected an image (H, W) or (H, W, C), got shape {img.shape}")
    height, width, channels = shape
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == channels:
        pass
    elif img.shape[2] == 3 and channels == 1:
        img = (img @ LUMA)[:, :, None]
    elif img.shape[2] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=2)
    else:
        raise ImageError(f"{what}: image has {img.shape[2]} channels {img.shape}; the model "
                         f"takes {channels} ({height}, {width}, {channels})")
    if img.shape[:2] != (height, width):
        if not resize_to_fit:
            raise ImageError(f"{what}: image is {img.shape[0]}x{img.shape[1]}x{img.shape[2]}, "
                             f"the model takes {height}x{width}x{channels} (--resize, or "
                             f"resize_to_fit=True, resizes it)")
        img = resize(img, height, width)
    return img


__all__ = ["ImageError", "read_image", "read_netpbm", "resize", "to_model_input", "write_pgm"]
