"""BatchNormalization: the C++ kernels (fast and naive) against a float64 reference, finite
differences, the layer's Keras 3 semantics (moving statistics, frozen = inference mode) and
PyTorch's nn.BatchNorm2d."""

import numpy as np
import pytest
from gradcheck import assert_gradient

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L

torch = pytest.importorskip("torch")

SHAPES = [
    (4, 5, 5, 3),       # small
    (2, 7, 1),          # rank 3: rows of (7,) positions
    (3, 16),            # Dense-style (N, C)
    (16, 33, 33, 8),    # 17424 rows: several chunks and threads
]


def ref_forward(x, gamma, beta, eps):
    """float64 batch normalization over every axis but the last (biased variance)."""
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)
    xhat = (x - mean) / np.sqrt(var + eps)
    return xhat * gamma + beta, mean, var


def ref_backward(x, dy, gamma, eps):
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    mean, var = x.mean(axes), x.var(axes)
    istd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * istd
    dbeta, dgamma = dy.sum(axes), (dy * xhat).sum(axes)
    dx = gamma * istd * (dy - dbeta / m - xhat * dgamma / m)
    return dx, dgamma, dbeta


def run_forward(x, gamma, beta, eps, naive):
    c = x.shape[-1]
    y, mean, var = np.empty_like(x), np.empty(c, np.float32), np.empty(c, np.float32)
    _core.batchnorm_forward_training(y, mean, var, x, gamma, beta, eps, naive=naive)
    return y, mean, var


def params(rng, c):
    return ((rng.standard_normal(c) + 1).astype(np.float32),
            rng.standard_normal(c).astype(np.float32))


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_forward_matches_reference(rng, shape, naive):
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    gamma, beta = params(rng, shape[-1])
    y, mean, var = run_forward(x, gamma, beta, 1e-3, naive)
    ry, rmean, rvar = ref_forward(x, gamma, beta, 1e-3)
    # float64 sums rounded once: mean/var to float32 rounding; y from float32 (x - mean) * scale.
    np.testing.assert_allclose(mean, rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-6)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_backward_matches_reference(rng, shape, naive):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta = params(rng, shape[-1])
    _, mean, var = run_forward(x, gamma, beta, 1e-3, False)
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty_like(gamma), np.empty_like(gamma)
    _core.batchnorm_backward_training(dx, dgamma, dbeta, x, dy, mean, var, gamma, 1e-3,
                                      naive=naive)
    rdx, rdgamma, rdbeta = ref_backward(x, dy, gamma, 1e-3)
    # dgamma/dbeta: float64 sums over up to 17424 rows; dx cancels three terms of size ~|dy|,
    # each within float32 rounding of the reference's (mean/var were rounded to float32).
    np.testing.assert_allclose(dbeta, rdbeta, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dgamma, rdgamma, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4)


def test_batchnorm_fast_kernels_do_not_depend_on_thread_count(rng, restore_threads):
    x = rng.standard_normal((16, 33, 33, 8)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = params(rng, 8)
    outs = []
    for threads in (1, 2, 3):
        _core.set_num_threads(threads)
        y, mean, var = run_forward(x, gamma, beta, 1e-3, False)
        dx, dg, db = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
        _core.batchnorm_backward_training(dx, dg, db, x, dy, mean, var, gamma, 1e-3)
        outs.append((y, mean, var, dx, dg, db))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


def test_batchnorm_gradients_match_finite_differences(rng):
    x = rng.standard_normal((3, 4, 4, 5)).astype(np.float32)
    gamma, beta = params(rng, 5)
    w = rng.standard_normal(x.shape)  # a fixed projection makes the loss depend on all of y

    def loss():
        y, _, _ = run_forward(x, gamma, beta, 1e-3, False)
        return float((y.astype(np.float64) * w).sum())

    _, mean, var = run_forward(x, gamma, beta, 1e-3, False)
    dy = w.astype(np.float32)
    dx, dg, db = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
    _core.batchnorm_backward_training(dx, dg, db, x, dy, mean, var, gamma, 1e-3)
    assert_gradient(loss, x, dx)
    assert_gradient(loss, gamma, dg)
    assert_gradient(loss, beta, db)


def test_batchnorm_without_scale_or_center(rng):
    x = rng.standard_normal((5, 3, 3, 4)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, mean, var = run_forward(x, None, None, 1e-3, False)
    ry, _, _ = ref_forward(x, 1.0, 0.0, 1e-3)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)  # float32 (x - mean) * istd
    dx = np.empty_like(x)
    _core.batchnorm_backward_training(dx, None, None, x, dy, mean, var, None, 1e-3)
    np.testing.assert_allclose(dx, ref_backward(x, dy, 1.0, 1e-3)[0], rtol=1e-4, atol=1e-4)


def test_batchnorm_inference_kernels(rng):
    x = rng.standard_normal((4, 3, 3, 6)).astype(np.float32)
    gamma, beta = params(rng, 6)
    mm = rng.standard_normal(6).astype(np.float32)
    mv = rng.uniform(0.5, 2, 6).astype(np.float32)
    y = np.empty_like(x)
    _core.batchnorm_forward_inference(y, x, gamma, beta, mm, mv, 1e-3)
    want = (x.astype(np.float64) - mm) / np.sqrt(mv.astype(np.float64) + 1e-3) * gamma + beta
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)  # x * scale + shift in float32
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = np.empty_like(x)
    _core.batchnorm_backward_inference(dx, dy, gamma, mv, 1e-3)
    np.testing.assert_allclose(dx, dy * gamma / np.sqrt(mv.astype(np.float64) + 1e-3),
                               rtol=1e-6, atol=1e-6)


def test_batchnorm_statistics_do_not_cancel_far_from_zero(rng):
    """One pass over x (sums shifted by each channel's first value): a mean 1e5 times the
    standard deviation still gives the variance to float32 precision, where E[x^2] - E[x]^2
    in float64 would keep none of it (1e10 relative to a 1e-16 rounding)."""
    x = (1000.0 + 0.01 * rng.standard_normal((64, 9, 9, 5))).astype(np.float32)
    x[..., 1] = -x[..., 1]
    _, mean, var = run_forward(x, None, None, 1e-3, False)
    want = x.astype(np.float64).reshape(-1, 5)
    np.testing.assert_allclose(mean, want.mean(0), rtol=1e-7)
    # float32 rounding of the result, and of sums of 5184 rows in float64: ~1e-7 relative.
    np.testing.assert_allclose(var, want.var(0), rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 5, 5, 3), (16, 33, 33, 32)])
def test_fused_relu_is_bit_identical_to_the_relu_kernels_apart(rng, shape):
    """The train plan's batchnorm + relu fusion: relu applied inside the forward, and the
    backward masking dy by the ReLU's output, give the same bits as activation_forward and
    activation_backward run separately (training and inference mode)."""
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    gamma, beta = params(rng, shape[-1])
    c = shape[-1]
    z, y = np.empty_like(x), np.empty_like(x)
    mean, var = np.empty(c, np.float32), np.empty(c, np.float32)
    _core.batchnorm_forward_training(z, mean, var, x, gamma, beta, 1e-3)
    relu = np.empty_like(x)
    _core.activation_forward(relu, z, "relu")
    m2, v2 = np.empty_like(mean), np.empty_like(var)
    _core.batchnorm_forward_training(y, m2, v2, x, gamma, beta, 1e-3, relu=True)
    np.testing.assert_array_equal(y, relu)
    np.testing.assert_array_equal(m2, mean)
    assert (y == 0).any() and (y > 0).any()
    dy = rng.standard_normal(shape).astype(np.float32)
    masked = np.empty_like(dy)
    _core.activation_backward(masked, z, relu, dy, "relu")
    want = [np.empty_like(x), np.empty(c, np.float32), np.empty(c, np.float32)]
    _core.batchnorm_backward_training(*want, x, masked, mean, var, gamma, 1e-3)
    got = [np.empty_like(x), np.empty(c, np.float32), np.empty(c, np.float32)]
    _core.batchnorm_backward_training(*got, x, dy, mean, var, gamma, 1e-3, relu_y=y)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # Inference mode (a frozen layer) with the moving statistics.
    _core.batchnorm_forward_inference(z, x, gamma, beta, mean, var, 1e-3)
    _core.activation_forward(relu, z, "relu")
    _core.batchnorm_forward_inference(y, x, gamma, beta, mean, var, 1e-3, relu=True)
    np.testing.assert_array_equal(y, relu)
    _core.activation_backward(masked, z, relu, dy, "relu")
    want_dx, got_dx = np.empty_like(x), np.empty_like(x)
    _core.batchnorm_backward_inference(want_dx, masked, gamma, var, 1e-3)
    _core.batchnorm_backward_inference(got_dx, dy, gamma, var, 1e-3, relu_y=y)
    np.testing.assert_array_equal(got_dx, want_dx)
    with pytest.raises(ValueError, match="relu_y"):
        _core.batchnorm_backward_training(got[0], None, None, x, dy, mean, var, gamma, 1e-3,
                                          relu_y=y[:1])


def test_batchnorm_binding_rejects_bad_shapes():
    x = np.zeros((2, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(4,\)"):
        run_forward(x, np.ones(3, np.float32), None, 1e-3, False)
    with pytest.raises(ValueError, match="y must have the shape of x"):
        _core.batchnorm_forward_training(np.zeros((2, 3, 3, 5), np.float32),
                                         np.zeros(4, np.float32), np.zeros(4, np.float32), x,
                                         None, None)


# -- the layer --------------------------------------------------------------------------------

def torch_bn(layer, x, training):
    c = x.shape[-1]
    # Keras momentum 0.99 is PyTorch's 0.01; the epsilon is the same.
    tb = torch.nn.BatchNorm2d(c, eps=layer.epsilon, momentum=1 - layer.momentum).double()
    with torch.no_grad():
        tb.weight.copy_(torch.from_numpy(layer.gamma.astype(np.float64)))
        tb.bias.copy_(torch.from_numpy(layer.beta.astype(np.float64)))
        tb.running_mean.copy_(torch.from_numpy(layer.moving_mean.astype(np.float64)))
        tb.running_var.copy_(torch.from_numpy(layer.moving_variance.astype(np.float64)))
    tb.train(training)
    xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).requires_grad_(True)
    return tb, xt, tb(xt)


def test_layer_matches_torch_batchnorm2d_in_training(rng):
    x = (rng.standard_normal((8, 6, 6, 5)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = L.BatchNormalization()
    layer.build(x.shape[1:])
    layer.gamma = rng.uniform(0.5, 1.5, 5)
    layer.beta = rng.standard_normal(5)
    layer.moving_variance = rng.uniform(0.5, 2, 5)
    tb, xt, yt = torch_bn(layer, x, True)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(dy.astype(np.float64)).permute(0, 3, 1, 2))
    # float32 kernels against float64 torch.
    np.testing.assert_allclose(y, yt.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.gradients_["gamma"], tb.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(layer.gradients_["beta"], tb.bias.grad.numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean, tb.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    # Keras 3 moves the variance with the biased batch variance, PyTorch with the unbiased one:
    # undo PyTorch's n / (n - 1) on the batch's share to compare.
    n = x.size // x.shape[-1]
    var = x.astype(np.float64).var((0, 1, 2))
    torch_moving = tb.running_var.numpy() - 0.01 * var * (n / (n - 1) - 1)
    np.testing.assert_allclose(layer.moving_variance, torch_moving, rtol=1e-6, atol=1e-6)


def test_layer_inference_and_frozen_layer_match_torch_eval(rng):
    x = rng.standard_normal((4, 5, 5, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = L.BatchNormalization()
    layer.build(x.shape[1:])
    layer.moving_mean = rng.standard_normal(3)
    layer.moving_variance = rng.uniform(0.5, 2, 3)
    layer.gamma = rng.uniform(0.5, 1.5, 3)
    _, xt, yt = torch_bn(layer, x, False)
    want = yt.detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(layer.forward(x, training=False), want, rtol=1e-5, atol=1e-5)
    # Frozen: inference mode in training too (Keras 3), moving statistics untouched.
    layer.trainable = False
    before = layer.get_weights()
    np.testing.assert_allclose(layer.forward(x, training=True), want, rtol=1e-5, atol=1e-5)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(dy.astype(np.float64)).permute(0, 3, 1, 2))
    np.testing.assert_allclose(dx, xt.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layer_keras_defaults_weights_and_counts():
    m = cf.Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3), L.BatchNormalization()])
    bn = m.layers[-1]
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True, True)
    assert list(bn.weights_) == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_array_equal(bn.gamma, np.ones(4))
    np.testing.assert_array_equal(bn.moving_variance, np.ones(4))
    assert len(m.trainable_weights) == 4 and len(m.non_trainable_weights) == 2
    assert m.count_params() == 3 * 3 * 3 * 4 + 4 + 4 * 4
    lines = []
    m.summary(print_fn=lines.append)
    assert "Trainable params: 120" in lines and "Non-trainable params: 8" in lines
    assert not L.BatchNormalization(trainable=False).trainable
    with pytest.raises(NotImplementedError, match="last axis only"):
        cf.Sequential([L.Input((8, 8, 3)), L.BatchNormalization(axis=1)])


def test_training_updates_moving_statistics_not_through_optimizer(rng):
    x = rng.standard_normal((16, 6, 6, 2)).astype(np.float32) + 3
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    m = cf.Sequential([L.Input((6, 6, 2)), L.BatchNormalization(), L.Flatten(),
                       L.Dense(3, activation="softmax")])
    m.compile(cf.optimizers.SGD(0.1, weight_decay=0.5), "categorical_crossentropy")
    bn = m.layers[0]
    m.train_on_batch(x, y)
    # One step: moving = 0.99 * init + 0.01 * batch (weight decay leaves the statistics alone).
    np.testing.assert_allclose(bn.moving_mean, 0.01 * x.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, 0.99 + 0.01 * x.var((0, 1, 2)), rtol=1e-5)
