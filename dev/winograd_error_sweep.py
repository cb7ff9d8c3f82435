"""The largest error of inference's kept Winograd F(4x4, 3x3) kernels over random shapes.

    PYTHONPATH=.:tests python dev/winograd_error_sweep.py [--shapes 200]

One-Conv2D models (3x3, "same" or "valid", 32-64 input channels, 16-64 filters, batch 1-3,
normal or uniform inputs) predict against the float64 convolution; prints the largest
|error| / (u S), u = 2^-24 and S reference.winograd_f4_abs, which tests/test_network.py bounds
by C + 19.
"""

from __future__ import annotations

import argparse

import numpy as np
import reference
from test_network import python_forward, single_conv

import cnnfast as cf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    cf.set_seed(7)  # the models' Glorot weights
    worst = worst_f4 = worst_walk = 0.0
    for trial in range(args.shapes):
        hw = int(rng.integers(6, 20))
        c = int(rng.choice([32, 40, 48, 64]))
        k = int(rng.choice([16, 20, 33, 48, 64]))
        padding = str(rng.choice(["same", "valid"]))
        n = int(rng.integers(1, 4))
        model = single_conv(hw, c, k, padding)
        shape = (n, hw, hw, c)
        x = rng.random(shape) if trial % 2 else rng.standard_normal(shape)
        x = x.astype(np.float32)
        layer = model.layers[0]
        w, b = layer.weights_["kernel"], layer.weights_["bias"]
        pads = ((1, 1), (1, 1)) if padding == "same" else ((0, 0), (0, 0))
        want = reference.conv2d_forward(x, w, b, pads=pads)
        error = np.abs(model.predict(x).astype(np.float64) - want)
        s = reference.winograd_f4_abs(x, w, b, pads=pads)  # the scale test_network bounds by
        worst = max(worst, (error / s).max() / 2.0**-24)
        scale = reference.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), pads=pads) * 2.0**-24
        worst_f4 = max(worst_f4, (error / scale).max())
        worst_walk = max(worst_walk, (np.abs(python_forward(model, x) - want) / scale).max())
    print(f"{args.shapes} shapes: largest |error| = {worst:.3f} u S; against u sum |x||w|: "
          f"predict {worst_f4:.1f}, the layer walk {worst_walk:.1f}")


if __name__ == "__main__":
    main()
