"""Mixed-precision training: compile(precision="bfloat16") (src/cpp/kernels/gemm_bf16.h).

The convolutions' and dense layers' products take bfloat16 operands with float32 sums: through
the bfloat16 GEMM (im2col, Winograd's position GEMMs, dense) or, for sums too short for it to
pay, the float32 kernels run on operands rounded to bfloat16 (conv2d.cpp). Everything else
(weights, gradients, optimizer state, loss, softmax) stays float32. bfloat16 has an 8-bit
significand: a value rounds within u = 2^-8 of itself (relatively), so a product of two rounded
values lies within 2u + u^2 = 2^-7 + 2^-16 of the exact one.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import reference as ref

import cnnfast as cf
from cnnfast import _core
from cnnfast.keras import mixed_precision

PRODUCT_ERROR = 2.0**-7 + 2.0**-16  # |rounded a * rounded b - a b| / |a b|

# On CPUs without AVX512-BF16 (and under CNNFAST_SIMD caps) compile warns that the portable
# kernel is slow; the numbers checked here are the same.
pytestmark = pytest.mark.filterwarnings("ignore:compile. this CPU has no AVX512-BF16")

PATHS = [p for p in ("portable", "avx512_bf16") if _core.set_sgemm_bf16_path(p)]
_core.set_sgemm_bf16_path("auto")

# (N, H, W, C, K, kernel, stride, padding): the algorithm each takes in bfloat16.
CONVS = {
    "winograd_same": (2, 10, 10, 32, 32, 3, 1, 1),       # Winograd, border tiles
    "winograd_valid": (3, 13, 13, 64, 48, 3, 1, 0),      # the transposed backward-data
    "winograd_wide": (4, 6, 6, 128, 144, 3, 1, 1),       # position-major (16 C K > 2^18)
    "winograd_odd_tiles": (5, 7, 7, 32, 40, 3, 1, 0),    # 45 tiles: a pair of tiles half empty
    "im2col_small_map": (8, 5, 5, 32, 24, 3, 1, 0),      # bfloat16 im2col GEMM (3x3 maps)
    "gemm_pointwise": (2, 7, 7, 24, 40, 1, 1, 0),        # a 1x1 convolution: one GEMM
    "rounded_one_channel": (2, 12, 12, 1, 16, 3, 1, 0),  # float32 kernel, rounded operands
    "rounded_three_channels": (2, 9, 9, 3, 8, 3, 1, 1),
    "rounded_direct_5x5": (2, 9, 9, 16, 24, 5, 1, 2),    # the direct kernels' convolutions
    "rounded_direct_strided": (2, 11, 11, 20, 16, 3, 2, 1),
}


@contextlib.contextmanager
def bf16_products():
    previous = _core.set_bf16_products(True)
    try:
        yield
    finally:
        _core.set_bf16_products(previous)


def conv_all(x, w, b, dy, stride, pad):
    """Forward, backward-data, backward-weights and bias gradient of the core kernels."""
    N = x.shape[0]
    K = w.shape[3]
    OH, OW = dy.shape[1:3]
    y = np.full((N, OH, OW, K), np.nan, np.float32)
    _core.conv2d_forward(y, x, w, b, stride, stride, pad, pad, 1)
    dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan)
    _core.conv2d_backward_data(dx, dy, w, stride, stride, pad, pad, 1)
    _core.conv2d_backward_weights(dw, db, x, dy, stride, stride, pad, pad, 1)
    return y, dx, dw, db


def conv_case(name, rng, integers: bool):
    N, H, W, C, K, k, s, p = CONVS[name]
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    shapes = [(N, H, W, C), (k, k, C, K), (K,), (N, OH, OW, K)]
    if integers:
        # Small integers: bfloat16 holds them and Winograd's transforms of them (sums of up to
        # 4 inputs; kernel transforms in quarters up to 9/4 of 4), and every float32 sum here
        # stays below 2^24, so any correct path must give the exact result.
        arrays = [rng.integers(-4, 5, shape).astype(np.float32) for shape in shapes]
    else:
        arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    return arrays, s, ((p, p), (p, p))


def references(x, w, b, dy, stride, pads):
    y = ref.conv2d_forward(x, w, b, (stride, stride), pads)
    dx, dw, db = ref.conv2d_backward(x, w, dy, (stride, stride), pads)
    return [y, dx, dw, db]


@pytest.mark.parametrize("name", CONVS)
def test_conv_is_exact_on_values_bfloat16_holds(name, rng):
    (x, w, b, dy), stride, pads = conv_case(name, rng, integers=True)
    with bf16_products():
        got = conv_all(x, w, b, dy, stride, pads[0][0])
    for g, want, what in zip(got, references(x, w, b, dy, stride, pads),
                             ["y", "dx", "dw", "db"]):
        np.testing.assert_array_equal(g, want, err_msg=f"{name} {what}")


@pytest.mark.parametrize("name", CONVS)
def test_conv_error_within_bfloat16_bounds(name, rng):
    (x, w, b, dy), stride, pads = conv_case(name, rng, integers=False)
    with bf16_products():
        got = conv_all(x, w, b, dy, stride, pads[0][0])
    full = conv_all(x, w, b, dy, stride, pads[0][0])
    want = references(x, w, b, dy, stride, pads)
    ax, aw, ady = np.abs(x), np.abs(w), np.abs(dy)
    magnitudes = [ref.conv2d_forward(ax, aw, None, (stride, stride), pads),
                  *ref.conv2d_backward(ax, aw, ady, (stride, stride), pads)[:2]]
    sums = w.shape[0] * w.shape[1] * x.shape[3]
    winograd = name.startswith("winograd")
    for what, g, f, r, m in zip(["y", "dx", "dw"], got, full, want, magnitudes):
        # Direct sums: each product within PRODUCT_ERROR of sum |a||b|, plus float32 sums
        # (gamma_n, n up to the longest sum: taps x channels, or pixels for dw). Winograd
        # multiplies transformed values: an input transform adds up to 4 inputs and a kernel
        # transform 9/4 of the taps, and the output transform 9 positions, so its rounding
        # error can reach 81 / 9 = 9 times the direct bound (the exact test above catches
        # wrong values, this one wrong precision).
        n = max(sums, x.shape[0] * dy.shape[1] * dy.shape[2])
        bound = (PRODUCT_ERROR * (9 if winograd else 1) + n * 2.0**-24) * m
        assert np.all(np.abs(g - r) <= bound + 1e-30), f"{name} {what}"
        # And bfloat16 did run: float32 is closer by orders of magnitude.
        assert np.abs(g - r).max() > 30 * np.abs(f - r).max(), f"{name} {what}"
    # The bias gradient is a sum of dy, not a product: float32 as in float32 training.
    np.testing.assert_allclose(got[3], want[3], rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(len(PATHS) < 2, reason="this CPU has no AVX512-BF16 to compare against the "
                                           "portable kernel")
@pytest.mark.parametrize("name", ["winograd_valid", "winograd_odd_tiles", "im2col_small_map",
                                  "gemm_pointwise"])
def test_portable_and_avx512_bf16_conv_give_the_same_bits(name, rng):
    (x, w, b, dy), stride, pads = conv_case(name, rng, integers=False)
    results = []
    for path in PATHS:
        assert _core.set_sgemm_bf16_path(path)
        try:
            with bf16_products():
                results.append(conv_all(x, w, b, dy, stride, pads[0][0]))
        finally:
            _core.set_sgemm_bf16_path("auto")
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_dense_products_are_bfloat16(rng):
    x = rng.standard_normal((33, 70)).astype(np.float32)
    w = rng.standard_normal((70, 45)).astype(np.float32)
    b = rng.standard_normal(45).astype(np.float32)
    dy = rng.standard_normal((33, 45)).astype(np.float32)
    y = np.empty((33, 45), np.float32)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    with bf16_products():
        _core.dense_forward(y, x, w, b)
        _core.dense_backward(dx, dw, db, x, w, dy)
    xr, wr, dyr = (_round(a).astype(np.float64) for a in (x, w, dy))
    # The exact products of the rounded operands, summed in float32 (gamma_n, n <= 70).
    for got, want, mag in [(y, xr @ wr + b, np.abs(xr) @ np.abs(wr) + np.abs(b)),
                           (dx, dyr @ wr.T, np.abs(dyr) @ np.abs(wr.T)),
                           (dw, xr.T @ dyr, np.abs(xr.T) @ np.abs(dyr))]:
        assert np.all(np.abs(got - want) <= 70 * 2.0**-24 * mag)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5, atol=1e-5)


def _round(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    _core.round_to_bf16(out, a)
    return out


def small_cnn() -> cf.Sequential:
    # A first convolution on the input with ReLU and 2x2 pooling (the fused head kernel), a
    # Winograd one (32 channels), a strided im2col one, and two dense layers.
    return cf.Sequential([
        cf.layers.Input((14, 14, 1)),
        cf.layers.Conv2D(32, 3, activation="relu"),
        cf.layers.MaxPooling2D(2),
        cf.layers.Conv2D(32, 3, padding="same", activation="relu"),
        cf.layers.Conv2D(16, 3, strides=2, activation="relu"),
        cf.layers.Flatten(),
        cf.layers.Dense(24, activation="relu"),
        cf.layers.Dense(5, activation="softmax"),
    ])


def train(precision: str | None, python: bool, steps: int = 6, optimizer: str = "adam"):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 14, 14, 1)).astype(np.float32)
    y = rng.integers(0, 5, 32)
    cf.set_seed(4)
    model = small_cnn()
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"], precision=precision)
    model._force_python_training = python
    losses = [model.train_on_batch(x, y)[0] for _ in range(steps)]
    return model, losses


def test_bfloat16_training_tracks_float32_and_differs_from_it():
    plan_model, plan_losses = train("bfloat16", python=False)
    assert plan_model._train_plan.bf16_products
    # The fused conv+relu+pool head (AVX-512 kernels only) also runs in mixed precision.
    head = any("conv+relu+max-pool" in f for f in plan_model._train_plan.fusions)
    assert head == (_core.conv2d_algorithm() != "im2col")
    f32_model, f32_losses = train("float32", python=False)
    assert not f32_model._train_plan.bf16_products
    # Six Adam steps from the same start: the losses agree to bfloat16's precision (measured
    # within 3e-3 relative), and the weights differ (bfloat16 products did run).
    np.testing.assert_allclose(plan_losses, f32_losses, rtol=2e-2)
    assert plan_losses[-1] < plan_losses[0]
    differ = [not np.array_equal(a, b)
              for a, b in zip(plan_model.get_weights(), f32_model.get_weights())]
    assert all(differ)
    assert _core.bf16_products() is False  # the step turned it off again


def test_bfloat16_plan_and_python_walk_agree():
    cf.set_seed(4)
    start = small_cnn().get_weights()
    plan_model, plan_losses = train("bfloat16", python=False, steps=2, optimizer="sgd")
    walk_model, walk_losses = train("bfloat16", python=True, steps=2, optimizer="sgd")
    assert walk_model._train_plan is None
    # The same kernels on the same rounded operands, but the plan's fused head sums each first
    # convolution output in its own order (as in float32: tests/test_train_plan.py). An ulp of
    # difference there can move a value downstream across a bfloat16 rounding boundary, which
    # changes that product by up to PRODUCT_ERROR, diluted among the many products each
    # gradient sums: the two SGD updates agree to well within a bfloat16 ulp (2^-8) of the
    # largest update, not to the bit; 2^-10 leaves room for a few such flips in one sum.
    for w0, a, b in zip(start, plan_model.get_weights(), walk_model.get_weights()):
        step_a, step_b = a - w0, b - w0
        scale = float(np.abs(step_b).max())
        assert scale > 0
        np.testing.assert_allclose(step_a, step_b, rtol=0, atol=2.0**-10 * scale)
    np.testing.assert_allclose(plan_losses, walk_losses, rtol=1e-3)


def test_predict_runs_float32_after_bfloat16_training():
    model, _ = train("bfloat16", python=False, steps=1)
    x = np.random.default_rng(5).standard_normal((4, 14, 14, 1)).astype(np.float32)
    twin = small_cnn()  # never compiled for bfloat16
    twin.set_weights(model.get_weights())
    out = model.predict(x, verbose=0)
    assert _core.bf16_products() is False  # the training step turned the switch off again
    # The switch would show in predict's outputs (so the equality below can fail) ...
    with bf16_products():
        assert not np.array_equal(twin.predict(x, verbose=0), out)
    # ... and the bfloat16-trained model predicts in float32, as its float32 twin does.
    np.testing.assert_array_equal(out, twin.predict(x, verbose=0))


def test_precision_names_and_the_global_policy():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"compile: unknown precision 'float16'"):
        model.compile("adam", "mse", precision="float16")
    model.compile("adam", "mse", precision="mixed_bfloat16")
    assert model.precision == "bfloat16"
    model.compile("adam", "mse")
    assert model.precision == "float32"
    try:
        mixed_precision.set_global_policy("mixed_bfloat16")
        assert mixed_precision.global_policy().name == "mixed_bfloat16"
        model.compile("adam", "mse")
        assert model.precision == "bfloat16"
        model.compile("adam", "mse", precision="float32")
        assert model.precision == "float32"
    finally:
        mixed_precision.set_global_policy("float32")
    with pytest.raises(ValueError, match="set_global_policy: unknown precision 'mixed_float16'"):
        mixed_precision.set_global_policy("mixed_float16")


def test_compile_warns_where_the_products_run_on_the_portable_kernel():
    model = small_cnn()
    assert _core.set_sgemm_bf16_path("portable")
    try:
        with pytest.warns(RuntimeWarning, match="portable kernel, several times slower"):
            model.compile("adam", "mse", precision="bfloat16")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.compile("adam", "mse")  # float32: nothing to say
        assert not caught
    finally:
        _core.set_sgemm_bf16_path("auto")


def test_saved_model_keeps_its_precision(tmp_path):
    model, _ = train("bfloat16", python=False, steps=1)
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    assert loaded.precision == "bfloat16"
    # Loading does not warn, even where bfloat16 training would run on the portable kernel.
    assert _core.set_sgemm_bf16_path("portable")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cf.load_model(tmp_path / "m.cnnfast").precision == "bfloat16"
        assert not caught, [str(w.message) for w in caught]
    finally:
        _core.set_sgemm_bf16_path("auto")
    f32, _ = train("float32", python=False, steps=1)
    f32.save(tmp_path / "f.cnnfast")
    assert cf.load_model(tmp_path / "f.cnnfast").precision == "float32"
