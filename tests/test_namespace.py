"""What ``import cnnfast`` exposes, and the zoo's LeNet-5 on MNIST-sized inputs."""

from __future__ import annotations

import types

import numpy as np

import cnnfast as cf


def test_import_exposes_only_the_api():
    leaked = []
    for name, value in vars(cf).items():
        if name.startswith("_") or name in cf.__all__:
            continue
        # Submodules become attributes of their package when imported; they are API too.
        if isinstance(value, types.ModuleType) and value.__name__ == f"cnnfast.{name}":
            continue
        leaked.append(name)
    assert leaked == []
    assert not hasattr(cf, "os") and not hasattr(cf, "annotations")
    assert all(hasattr(cf, name) for name in cf.__all__)


def test_ops_is_an_attribute():
    assert isinstance(cf.ops, types.ModuleType)
    assert callable(cf.ops.conv2d)


def test_lenet5_on_28x28_equals_lenet5_on_the_zero_padded_32x32_image():
    cf.set_seed(0)
    small = cf.models.lenet5((28, 28, 1))
    big = cf.models.lenet5((32, 32, 1))
    big.set_weights(small.get_weights())
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    # Same arithmetic on the same values (the padding adds exact zeros), summed in another
    # order by the padded and unpadded convolution paths: float32 rounding only.
    np.testing.assert_allclose(small.predict(x), big.predict(padded), rtol=1e-5, atol=1e-6)
    assert small.count_params() == big.count_params() == 61706
