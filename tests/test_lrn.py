"""LocalResponseNormalization: C++ kernels (fast and naive) against the float64 reference,
finite-difference gradients, the layer, and the documented alpha convention vs PyTorch."""

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_gradient

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L

CASES = [
    # shape, depth_radius, bias, alpha, beta
    ((3, 4, 5, 7), 2, 1.0, 1e-4, 0.75),      # paper defaults
    ((2, 5, 5, 96), 2, 2.0, 1e-4, 0.75),     # AlexNet's k = 2, C = 96
    ((2, 3, 3, 16), 2, 1.0, 0.3, 0.75),      # strong normalization
    ((4, 6, 1), 0, 1.0, 0.5, 0.75),          # C = 1, window of one
    ((5, 3), 5, 0.5, 0.2, 0.5),              # window wider than C (clipped both sides)
    ((2, 4, 4, 33), 1, 1.5, 0.1, 1.0),       # beta = 1 path
    ((2, 3, 5, 12), 3, 1.0, 0.2, 0.6),       # general pow path
    ((4, 20, 20, 96), 2, 2.0, 1e-2, 0.75),   # large enough to run on several threads
    ((7,), 2, 1.0, 0.4, 0.75),               # rank 1: one row
]


def run_forward(x, r, k, a, b, naive, with_scale=True):
    y = np.empty_like(x)
    s = np.empty_like(x) if with_scale else None
    _core.lrn_forward(y, s, x, r, k, a, b, naive)
    return y, s


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("shape,r,k,a,b", CASES)
def test_lrn_forward_matches_reference(shape, r, k, a, b, naive, rng):
    x = (rng.normal(size=shape) * 3).astype(np.float32)
    y, s = run_forward(x, r, k, a, b, naive)
    y_ref, s_ref = ref.lrn_forward(x, r, k, a, b)
    # fp32: a sum of <= 11 squares and one power; relative error a few ulp of the result.
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    y_only, _ = run_forward(x, r, k, a, b, naive, with_scale=False)
    np.testing.assert_array_equal(y_only, y)  # storing the scale changes nothing


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("shape,r,k,a,b", CASES)
def test_lrn_backward_matches_reference(shape, r, k, a, b, naive, rng):
    x = (rng.normal(size=shape) * 3).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    y, s = run_forward(x, r, k, a, b, naive)
    dx = np.empty_like(x)
    _core.lrn_backward(dx, x, y, s, dy, r, k, a, b, naive)
    dx_ref = ref.lrn_backward(x, dy, r, k, a, b)
    # fp32: the two terms can cancel, so the absolute tolerance is scaled by |dy| ~ 1.
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    # dx may be dy itself (the layer contract allows it): same numbers.
    g = dy.copy()
    _core.lrn_backward(g, x, y, s, g, r, k, a, b, naive)
    np.testing.assert_array_equal(g, dx)


def test_lrn_fast_equals_naive_closely(rng):
    x = (rng.normal(size=(3, 9, 9, 64)) * 5).astype(np.float32)
    fast, _ = run_forward(x, 2, 1.0, 0.05, 0.75, naive=False)
    slow, _ = run_forward(x, 2, 1.0, 0.05, 0.75, naive=True)
    # sqrt-based x^-0.75 vs pow, and a different summation order: a few ulp apart.
    np.testing.assert_allclose(fast, slow, rtol=3e-6, atol=0)


@pytest.mark.parametrize("r,k,a,b", [(2, 1.0, 0.2, 0.75), (1, 2.0, 0.5, 0.6), (3, 1.0, 0.1, 1.0)])
def test_lrn_layer_gradient_matches_finite_differences(r, k, a, b, rng):
    layer = L.LocalResponseNormalization(depth_radius=r, bias=k, alpha=a, beta=b)
    x = rng.uniform(-2, 2, size=(2, 3, 2, 8)).astype(np.float32)
    layer.build(x.shape[1:])
    layer.forward(x, training=True)
    w = rng.normal(size=x.shape).astype(np.float32)
    dx = layer.backward(w.copy()).copy()

    def probe():
        return float(np.sum(w.astype(np.float64) * layer.forward(x, training=False)))

    assert_gradient(probe, x, dx)  # tolerances explained in gradcheck.py


def test_lrn_alpha_is_not_divided_by_window_size_unlike_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(2, 4, 5, 10)).astype(np.float32) * 4
    r, k, a, b = 2, 2.0, 1e-2, 0.75
    y, _ = run_forward(x, r, k, a, b, naive=False)
    n = 2 * r + 1
    # PyTorch divides alpha by the window size n: the same result needs alpha * n there.
    t = torch.nn.functional.local_response_norm(torch.from_numpy(x).permute(0, 3, 1, 2), n,
                                                alpha=a * n, beta=b, k=k)
    # fp32 on both sides with different summation orders.
    np.testing.assert_allclose(y, t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_layer_forward_modes_and_config(rng):
    layer = L.LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 1.0, 1e-4, 0.75)
    x = rng.normal(size=(2, 3, 3, 6)).astype(np.float32)
    y = layer(x)
    np.testing.assert_allclose(y, ref.lrn_forward(x)[0], rtol=1e-5, atol=1e-6)  # fp32 ulps
    assert layer.output_shape((3, 3, 6)) == (3, 3, 6) and layer.num_params() == 0
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones_like(x))  # inference keeps no scale
    cfg = layer.get_config()
    assert cfg["depth_radius"] == 2 and cfg["alpha"] == 1e-4


@pytest.mark.parametrize("kwargs", [{"depth_radius": -1}, {"depth_radius": 1.5}, {"bias": 0.0},
                                    {"alpha": -1.0}, {"beta": float("nan")}, {"size": 5}])
def test_lrn_layer_rejects_bad_arguments(kwargs):
    with pytest.raises((ValueError, TypeError)):
        L.LocalResponseNormalization(**kwargs)


def test_lrn_binding_checks_shapes_and_aliasing():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        _core.lrn_forward(np.empty((2, 3, 5), np.float32), None, x, 2, 1.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="depth_radius"):
        _core.lrn_forward(np.empty_like(x), None, x, -1, 1.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="overlaps"):
        _core.lrn_forward(x, None, x, 2, 1.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="dtype"):
        _core.lrn_forward(np.empty_like(x), None, x.astype(np.float64), 2, 1.0, 1e-4, 0.75)
    y, s = np.empty_like(x), np.empty_like(x)
    _core.lrn_forward(y, s, x, 2, 1.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="scale"):
        _core.lrn_backward(np.empty_like(x), x, y, s[:, :2], x, 2, 1.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="overlaps"):
        _core.lrn_backward(y, x, y, s, x, 2, 1.0, 1e-4, 0.75)


def test_lrn_in_a_model_trains(rng):
    cf.set_seed(0)
    model = cf.Sequential([L.Input((6, 6, 3)), L.Conv2D(8, 3, activation="relu"),
                           L.LocalResponseNormalization(alpha=0.1), L.MaxPooling2D(2),
                           L.Flatten(), L.Dense(3, activation="softmax")])
    model.compile(cf.optimizers.SGD(0.1), "categorical_crossentropy")
    x = rng.normal(size=(16, 6, 6, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    first = model.train_on_batch(x, y)
    for _ in range(30):
        last = model.train_on_batch(x, y)
    assert last < first


def test_lrn_ops_wrappers(rng):
    from cnnfast.ops.norm import lrn, lrn_backward

    x = rng.normal(size=(2, 3, 4, 9)) * 3  # float64 in: converted to float32
    y, scale = lrn(x, 2, 1.0, 0.1, 0.75, return_scale=True)
    np.testing.assert_allclose(y, ref.lrn_forward(x, 2, 1.0, 0.1, 0.75)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lrn(x, 2, 1.0, 0.1, 0.75), y)
    dy = rng.normal(size=x.shape)
    dx = lrn_backward(dy, x, y, scale, 2, 1.0, 0.1, 0.75)
    # fp32 inputs rounded from float64: compare against the reference on the rounded x.
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(dx, ref.lrn_backward(x32, dy.astype(np.float32), 2, 1.0, 0.1, 0.75),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="real numeric"):
        lrn(np.array(["a"]))
    with pytest.raises(ValueError, match="must match"):
        lrn_backward(dy[..., :3], x, y, scale)
    with pytest.raises(ValueError, match="bias > 0"):
        lrn(x, bias=0.0)
