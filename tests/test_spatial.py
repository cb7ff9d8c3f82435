"""Global pooling, ZeroPadding2D, Cropping2D, UpSampling2D and Reshape: the C++ kernels
against float64 NumPy references and PyTorch, finite differences through the layers, and the
inference Network (predict) against the Python walk."""

import numpy as np
import pytest
from gradcheck import assert_gradient

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x, np.float64)).permute(0, 3, 1, 2)


def nhwc(t):
    return t.permute(0, 2, 3, 1).detach().numpy()


SHAPES = [(2, 5, 4, 3), (3, 1, 1, 7), (8, 17, 19, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_global_average_pooling_matches_reference_and_torch(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.empty((shape[0], shape[3]), np.float32)
    _core.global_avg_pool2d_forward(y, x)
    # float64 sums, rounded once.
    np.testing.assert_allclose(y, x.astype(np.float64).mean((1, 2)), rtol=1e-6, atol=1e-7)
    xt = nchw(x).requires_grad_(True)
    yt = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-7)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.empty_like(x)
    _core.global_avg_pool2d_backward(dx, dy)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    np.testing.assert_allclose(dx, nhwc(xt.grad), rtol=1e-6)  # dy * float32(1 / (H*W))


@pytest.mark.parametrize("shape", SHAPES)
def test_global_max_pooling_matches_reference_and_torch(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.empty((shape[0], 1, 1, shape[3]), np.float32)  # keepdims layout
    am = np.empty(y.shape, np.int32)
    _core.global_max_pool2d_forward(y, am, x)
    np.testing.assert_array_equal(y[:, 0, 0], x.max((1, 2)))
    np.testing.assert_array_equal(am[:, 0, 0],
                                  x.reshape(shape[0], -1, shape[3]).argmax(1))
    xt = nchw(x).requires_grad_(True)
    yt = F.adaptive_max_pool2d(xt, 1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.empty_like(x)
    _core.global_max_pool2d_backward(dx, dy, am)
    yt.backward(nchw(dy))
    np.testing.assert_array_equal(dx, nhwc(xt.grad))  # routing only: exact


def test_global_max_pooling_nan_and_ties():
    x = np.zeros((1, 2, 2, 2), np.float32)
    x[0, 1, 0, 0] = np.nan
    y, am = np.empty((1, 2), np.float32), np.empty((1, 2), np.int32)
    _core.global_max_pool2d_forward(y, am, x)
    assert np.isnan(y[0, 0]) and am[0, 0] == 2
    assert y[0, 1] == 0 and am[0, 1] == 0  # ties: the first position
    with pytest.raises(ValueError, match="argmax entry 7 lies outside"):
        _core.global_max_pool2d_backward(np.empty_like(x), y, np.full((1, 2), 7, np.int32))


PADS = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3), (0, 3, 0, 0)]


@pytest.mark.parametrize("pads", PADS)
def test_zero_pad_and_crop_match_torch(rng, pads):
    t, b, l_, r = pads
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    big = np.empty((3, 4 + t + b, 5 + l_ + r, 6), np.float32)
    _core.zero_pad2d(big, x, t, b, l_, r)
    np.testing.assert_array_equal(big, nhwc(F.pad(nchw(x), (l_, r, t, b))))
    back = np.empty_like(x)
    _core.crop2d(back, big, t, b, l_, r)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 1), (2, 4)])
def test_upsampling_nearest_matches_torch(rng, size):
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    y = np.empty((2, 3 * size[0], 5 * size[1], 4), np.float32)
    _core.upsample2d_nearest_forward(y, x, *size)
    xt = nchw(x).requires_grad_(True)
    yt = F.interpolate(xt, scale_factor=size, mode="nearest")
    np.testing.assert_array_equal(y, nhwc(yt))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.empty_like(x)
    _core.upsample2d_nearest_backward(dx, dy, *size)
    yt.backward(nchw(dy))
    # float32 sums of size[0] * size[1] <= 8 terms.
    np.testing.assert_allclose(dx, nhwc(xt.grad), rtol=1e-6, atol=1e-6)


def test_spatial_kernels_do_not_depend_on_thread_count(rng, restore_threads):
    x = rng.standard_normal((8, 33, 31, 16)).astype(np.float32)
    outs = []
    for threads in (1, 2, 3):
        _core.set_num_threads(threads)
        gap = np.empty((8, 16), np.float32)
        _core.global_avg_pool2d_forward(gap, x)
        up = np.empty((8, 66, 62, 16), np.float32)
        _core.upsample2d_nearest_forward(up, x, 2, 2)
        dx = np.empty_like(x)
        _core.upsample2d_nearest_backward(dx, up, 2, 2)
        outs.append((gap, dx))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


LAYERS = [
    lambda: L.GlobalAveragePooling2D(),
    lambda: L.GlobalAveragePooling2D(keepdims=True),
    lambda: L.GlobalMaxPooling2D(),
    lambda: L.ZeroPadding2D(((1, 2), (0, 1))),
    lambda: L.Cropping2D(((1, 0), (1, 2))),
    lambda: L.UpSampling2D((2, 3)),
    lambda: L.Reshape((-1, 3)),
    lambda: L.BatchNormalization(),
]


@pytest.mark.parametrize("make", LAYERS, ids=lambda f: type(f()).__name__)
def test_layer_gradients_match_finite_differences(rng, make):
    layer = make()
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    layer.build(x.shape[1:])
    out_shape = (2,) + layer.output_shape(x.shape[1:])
    w = rng.standard_normal(out_shape)

    def loss():
        return float((layer.forward(x, training=True).astype(np.float64) * w).sum())

    layer.forward(x, training=True)
    dx = layer.backward(w.astype(np.float32)).copy()
    assert_gradient(loss, x, dx)


def test_keras_shapes_and_defaults():
    assert L.GlobalAveragePooling2D().output_shape((5, 6, 7)) == (7,)
    assert L.GlobalMaxPooling2D(keepdims=True).output_shape((5, 6, 7)) == (1, 1, 7)
    assert L.ZeroPadding2D().output_shape((5, 6, 7)) == (7, 8, 7)
    assert L.ZeroPadding2D((1, 2)).output_shape((5, 6, 7)) == (7, 10, 7)
    assert L.Cropping2D(((1, 0), (2, 2))).output_shape((5, 6, 7)) == (4, 2, 7)
    assert L.UpSampling2D().output_shape((5, 6, 7)) == (10, 12, 7)
    assert L.Reshape((-1, 7)).output_shape((5, 6, 7)) == (30, 7)
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((4, 4)).output_shape((5, 6, 7))
    with pytest.raises(ValueError, match="leaves nothing"):
        L.Cropping2D(3).output_shape((5, 6, 7))
    with pytest.raises(NotImplementedError, match="nearest"):
        L.UpSampling2D(interpolation="bilinear")


def spatial_model() -> cf.Sequential:
    return cf.Sequential([
        L.Input((6, 5, 3)),
        L.ZeroPadding2D(1),
        L.Conv2D(4, 3),
        L.BatchNormalization(),
        L.ReLU(),
        L.UpSampling2D(2),
        L.Cropping2D(((1, 1), (2, 0))),
        L.Conv2D(4, 3, activation="relu"),
        L.BatchNormalization(),
        L.GlobalAveragePooling2D(keepdims=True),
        L.Reshape((2, 2)),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ])


def test_predict_folds_batchnorm_into_the_convolution_and_matches_the_walk(rng):
    cf.set_seed(0)
    model = spatial_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = rng.standard_normal((16, 6, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    before = model.get_weights()
    steps = model._inference_network().describe()
    # The first BN (after a linear conv) is folded away; the second (after a ReLU conv) runs.
    assert sum(s.startswith("batchnorm") for s in steps) == 1
    got = model.predict(x, verbose=0)
    want = model._forward(x, training=False)
    # Folded weights round differently: float32 conv of rescaled weights, 3 layers deep.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # folding left the model's weights alone
    # New values in place (same arrays): predict must see them, not the folded copy.
    model.layers[2].moving_mean = rng.standard_normal(4)
    model.layers[1].kernel *= 2
    np.testing.assert_allclose(model.predict(x, verbose=0), model._forward(x, training=False),
                               rtol=1e-5, atol=1e-6)
