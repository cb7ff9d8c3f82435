"""Batch-1 times of VGG16-CIFAR's weight-heavy convolutions, one thread, weights from memory.

    OMP_PROC_BIND=close PYTHONPATH=. python dev/vgg_batch1_layers.py

Each layer cycles through 6 weight arrays (57 MB for 512 -> 512, more than the L3), as a whole
network's forward reads every layer's weights once; prints the median time, the rate its
weights were read at, and its multiply-adds per second (dev/weight_streaming.cpp gives what one
core reads by access pattern).
"""

from __future__ import annotations

import numpy as np

import cnnfast as cf
from bench.common import median, time_rounds
from cnnfast import _core


def layer_call(y, x, kernels, bias):
    """A 3x3 "same" ReLU convolution of x into y, each call with the next of the kernels."""
    turn = [0]

    def call():
        _core.conv2d_forward(y, x, kernels[turn[0] % len(kernels)], bias, 1, 1, 1, 1,
                             activation="relu")
        turn[0] += 1

    return call


def main() -> None:
    cf.set_num_threads(1)
    rng = np.random.default_rng(0)
    for hw, c, k in [(8, 128, 256), (8, 256, 256), (4, 256, 512), (4, 512, 512), (2, 512, 512)]:
        kernels = [rng.random((3, 3, c, k), dtype=np.float32) - 0.5 for _ in range(6)]
        x = rng.random((1, hw, hw, c), dtype=np.float32)
        y = np.empty((1, hw, hw, k), np.float32)
        call = layer_call(y, x, kernels, np.zeros(k, np.float32))
        ms = median(time_rounds({"layer": call}, rounds=7, block_calls=30)["layer"]) * 1e3
        mb = 9 * c * k * 4 / 1e6
        print(f"{hw}x{hw} {c}->{k}: {ms:.3f} ms, weights {mb:.1f} MB at {mb / ms:.1f} GB/s, "
              f"{hw * hw * 9 * c * k / ms / 1e6:.1f} GMAC/s")


if __name__ == "__main__":
    main()
