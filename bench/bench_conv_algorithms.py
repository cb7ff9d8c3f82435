"""Each conv2d algorithm on the shapes that set conv2d.cpp's automatic choice.

    OMP_PROC_BIND=close PYTHONPATH=. python -m bench.bench_conv_algorithms [--threads 1 2] [--only resnet]
        [--precision bfloat16]

For every shape, pass (forward, backward-data, backward-weights) and thread count, prints the
milliseconds per call of Winograd, the direct kernels and im2col + GEMM, forced one at a time,
and of "auto", with the ratio winograd / (the faster of direct and im2col). The algorithms
alternate in blocks of calls, round after round (bench.common.time_rounds), and the medians are
reported. Needs the AVX-512 kernels (Winograd and direct run on them). With --precision
bfloat16 every call has mixed-precision training's bfloat16 products (gemm_bf16.h): Winograd and
im2col on the bfloat16 GEMM, the direct kernels on operands rounded to bfloat16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import time_rounds
from cnnfast import _core

# label, (N, H, W, C), K, padding (0 "valid" or 1 "same"); all 3x3, stride 1.
SHAPES = [
    ("keras conv2 b1 (36 tiles)", (1, 13, 13, 64), 64, 0),
    ("16->16 7x7 b1 (16 tiles)", (1, 7, 7, 16), 16, 1),
    ("32->64 9x9 b1 (16 tiles)", (1, 9, 9, 32), 64, 0),
    ("32->64 13x13 b128", (128, 13, 13, 32), 64, 0),
    ("keras 64->64 13x13 b128", (128, 13, 13, 64), 64, 0),
    ("vgg 128->128 16x16 b64", (64, 16, 16, 128), 128, 1),
    ("vgg 256->256 8x8 b64", (64, 8, 8, 256), 256, 1),
    ("vgg 512->512 4x4 b64", (64, 4, 4, 512), 512, 1),
    ("512->512 4x4 b16", (16, 4, 4, 512), 512, 1),
    ("vgg 512->512 2x2 b64", (64, 2, 2, 512), 512, 1),
    ("512->512 2x2 b16", (16, 2, 2, 512), 512, 1),
    # ResNet-20's three stages at batch 128 (bench.bench_resnet).
    ("resnet 16->16 32x32 b128", (128, 32, 32, 16), 16, 1),
    ("resnet 32->32 16x16 b128", (128, 16, 16, 32), 32, 1),
    ("resnet 64->64 8x8 b128", (128, 8, 8, 64), 64, 1),
]
ALGORITHMS = ["winograd", "direct", "im2col", "auto"]


def passes(x, w, b, dy, pad):
    """The three passes of one convolution, on buffers allocated once."""
    y, dx = np.empty_like(dy), np.empty_like(x)
    dw, db = np.empty_like(w), np.empty_like(b)
    return {
        "forward": lambda: _core.conv2d_forward(y, x, w, b, 1, 1, pad, pad),
        "backward-data": lambda: _core.conv2d_backward_data(dx, dy, w, 1, 1, pad, pad),
        "backward-weights": lambda: _core.conv2d_backward_weights(dw, db, x, dy, 1, 1, pad, pad),
    }


def forced(algorithm, fn):
    def run():
        _core.set_conv2d_algorithm(algorithm)
        fn()
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-seconds", type=float, default=0.05)
    parser.add_argument("--only", default="", help="the shapes whose label contains this text")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if not _core.set_conv2d_algorithm("winograd"):
        sys.exit("Winograd needs the AVX-512 kernels, which this CPU or build lacks")
    rng = np.random.default_rng(0)
    print(f"{'shape':<28}{'pass':<18}{'T':>2}" + "".join(f"{a + ' ms':>13}" for a in ALGORITHMS)
          + f"{'wino/best':>11}")
    previous = _core.set_bf16_products(args.precision == "bfloat16")
    try:
        for threads in args.threads:
            _core.set_num_threads(threads)
            for label, (n, h, w_, c), k, pad in SHAPES:
                if args.only not in label:
                    continue
                o = h + 2 * pad - 2
                x = rng.standard_normal((n, h, w_, c)).astype(np.float32)
                w = rng.standard_normal((3, 3, c, k)).astype(np.float32)
                b = rng.standard_normal(k).astype(np.float32)
                dy = rng.standard_normal((n, o, o, k)).astype(np.float32)
                for name, fn in passes(x, w, b, dy, pad).items():
                    times = time_rounds({a: forced(a, fn) for a in ALGORITHMS},
                                        rounds=args.rounds, block_seconds=args.block_seconds)
                    ms = {a: 1e3 * statistics.median(t) for a, t in times.items()}
                    best_other = min(ms["direct"], ms["im2col"])
                    print(f"{label:<28}{name:<18}{threads:>2}"
                          + "".join(f"{ms[a]:13.3f}" for a in ALGORITHMS)
                          + f"{ms['winograd'] / best_other:11.2f}", flush=True)
    finally:
        _core.set_bf16_products(previous)
        _core.set_conv2d_algorithm("auto")
        _core.set_num_threads(0)


if __name__ == "__main__":
    main()
