"""Batch-1 times of VGG16-CIFAR's weight-heavy layers, one thread, weights from memory.

    OMP_PROC_BIND=close PYTHONPATH=. python dev/vgg_batch1_layers.py

Each layer cycles through enough weight arrays to exceed the L3 (64 MB or more), as a whole
network's forward reads every layer's weights once (61 MB for VGG16-CIFAR); prints, for "auto"
and each algorithm that can be forced on it, the median time, the rate its weights were read at
and its multiply-adds per second, the algorithms alternating in one run (dev/weight_streaming.cpp
gives what one core reads by access pattern). Then its 512 -> 512 dense layer (the small-M
GEMM, gemm_small_m_avx512.cpp) the same way, 1 MB of weights a call.
"""

from __future__ import annotations

import numpy as np

import cnnfast as cf
from bench.common import median, time_rounds
from cnnfast import _core

ALGORITHMS = ("auto", "direct", "streamed")


def layer_call(y, x, kernels, bias, algorithm):
    """A 3x3 "same" ReLU convolution of x into y under `algorithm`, each call with the next of
    the kernels."""
    turn = [0]

    def call():
        _core.set_conv2d_algorithm(algorithm)
        try:
            _core.conv2d_forward(y, x, kernels[turn[0] % len(kernels)], bias, 1, 1, 1, 1,
                                 activation="relu")
        finally:
            _core.set_conv2d_algorithm("auto")
        turn[0] += 1

    return call


def main() -> None:
    cf.set_num_threads(1)
    rng = np.random.default_rng(0)
    algorithms = [a for a in ALGORITHMS if _core.set_conv2d_algorithm(a)]
    _core.set_conv2d_algorithm("auto")
    for hw, c, k in [(8, 128, 256), (8, 256, 256), (4, 256, 512), (4, 512, 512), (2, 512, 512)]:
        mb = 9 * c * k * 4 / 1e6
        kernels = [rng.random((3, 3, c, k), dtype=np.float32) - 0.5
                   for _ in range(int(np.ceil(64 / mb)))]
        x = rng.random((1, hw, hw, c), dtype=np.float32)
        y = np.empty((1, hw, hw, k), np.float32)
        bias = np.zeros(k, np.float32)
        times = time_rounds({a: layer_call(y, x, kernels, bias, a) for a in algorithms},
                            rounds=7, block_calls=30)
        for a in algorithms:
            ms = median(times[a]) * 1e3
            print(f"{hw}x{hw} {c}->{k} {a}: {ms:.3f} ms, weights {mb:.1f} MB at "
                  f"{mb / ms:.1f} GB/s, {hw * hw * 9 * c * k / ms / 1e6:.1f} GMAC/s")
    dense_times()


def dense_times() -> None:
    """The 512 -> 512 ReLU dense layer at batch 1, each call with the next of 64 kernels."""
    rng = np.random.default_rng(1)
    kernels = [rng.random((512, 512), dtype=np.float32) - 0.5 for _ in range(64)]
    x = rng.random((1, 512), dtype=np.float32)
    y = np.empty((1, 512), np.float32)
    bias = np.zeros(512, np.float32)
    turn = [0]

    def call():
        _core.dense_forward(y, x, kernels[turn[0] % len(kernels)], bias, activation="relu")
        turn[0] += 1

    us = median(time_rounds({"dense": call}, rounds=7, block_calls=200)["dense"]) * 1e6
    print(f"dense 512->512: {us:.1f} us, weights 1.0 MB at {1.048576 / us * 1e3:.1f} GB/s")


if __name__ == "__main__":
    main()
