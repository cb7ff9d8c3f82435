"""The Keras losses beyond categorical cross-entropy and MSE (issue 19): BinaryCrossentropy (from
probabilities, from logits, fused with a sigmoid output), MeanAbsoluteError, Huber, KLDivergence,
CategoricalHinge, and CategoricalCrossentropy's from_logits / label_smoothing.

Each C++ kernel (src/cpp/kernels/losses.cpp) is checked against a float64 NumPy transcription of
Keras 3's formula (value and gradient), against central differences of its own value, and
against PyTorch; then in compile/fit, with sample weights, and through save/load.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L
from cnnfast import losses as LS

EPS = 1e-7


# -- float64 references: Keras 3's formulas, and their gradients of the batch mean ------------

def smooth_binary(y, s):
    return y * (1.0 - s) + 0.5 * s


def ref_bce(p, y, s=0.0):
    """keras.losses.binary_crossentropy from probabilities; gradient d(mean)/dp."""
    p, y = np.float64(p), smooth_binary(np.float64(y), s)
    c = np.clip(p, EPS, 1 - EPS)
    loss = -(y * np.log(c) + (1 - y) * np.log(1 - c))
    inside = (p >= EPS) & (p <= 1 - EPS)
    grad = np.where(inside, (c - y) / (c * (1 - c)), 0.0) / p.size
    return loss.mean(), grad


def ref_bce_logits(z, y, s=0.0):
    """tf.nn.sigmoid_cross_entropy_with_logits, as Keras uses it with from_logits=True."""
    z, y = np.float64(z), smooth_binary(np.float64(y), s)
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return loss.mean(), (1 / (1 + np.exp(-z)) - y) / z.size


def ref_mae(p, y):
    e = np.float64(p) - np.float64(y)
    return np.abs(e).mean(), np.sign(e) / e.size


def ref_huber(p, y, delta=1.0):
    e = np.float64(p) - np.float64(y)
    a = np.abs(e)
    loss = np.where(a <= delta, 0.5 * e * e, delta * a - 0.5 * delta * delta)
    return loss.mean(), np.clip(e, -delta, delta) / e.size


def ref_kld(p, y):
    p, y = np.float64(p), np.float64(y)
    rows = p.size // p.shape[-1]
    t, c = np.clip(y, EPS, 1), np.clip(p, EPS, 1)
    grad = np.where((p >= EPS) & (p <= 1), -t / c, 0.0) / rows
    return (t * np.log(t / c)).sum(-1).mean(), grad


def ref_categorical_hinge(p, y):
    """Keras's categorical_hinge; reduce_max's gradient shared among tied positions (TF)."""
    p, y = np.float64(p), np.float64(y)
    rows = p.size // p.shape[-1]
    x = (1 - y) * p
    neg = x.max(-1, keepdims=True)
    margin = neg[..., 0] - (y * p).sum(-1) + 1
    at_max = (x == neg).astype(np.float64)
    dneg = (1 - y) * at_max / at_max.sum(-1, keepdims=True)
    grad = np.where((margin >= 0)[..., None], -y + dneg, 0.0) / rows
    return np.maximum(margin, 0).mean(), grad


def probs(rng, shape, lo=0.02, hi=0.98):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def soft_rows(rng, shape):
    e = np.exp(rng.standard_normal(shape))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def onehot_rows(rng, shape):
    labels = rng.integers(0, shape[-1], shape[:-1])
    return np.eye(shape[-1], dtype=np.float32)[labels]


def case(name, rng, shape):
    """(loss object, pred, target, float64 reference) of one loss on data away from its kinks
    (so that finite differences and the references see a smooth function)."""
    if name == "bce":
        return LS.BinaryCrossentropy(), probs(rng, shape), probs(rng, shape, 0, 1), ref_bce
    if name == "bce_smooth":
        return (LS.BinaryCrossentropy(label_smoothing=0.2), probs(rng, shape),
                rng.integers(0, 2, shape).astype(np.float32), lambda p, y: ref_bce(p, y, 0.2))
    if name == "bce_logits":
        return (LS.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
                (3 * rng.standard_normal(shape)).astype(np.float32),
                rng.integers(0, 2, shape).astype(np.float32),
                lambda z, y: ref_bce_logits(z, y, 0.1))
    if name in ("mae", "huber", "huber_delta"):
        y = rng.standard_normal(shape).astype(np.float32)
        e = rng.uniform(0.05, 2.5, shape) * rng.choice([-1, 1], shape)
        if name != "mae":  # keep |e| off the quadratic/linear seam at delta
            delta = 1.0 if name == "huber" else 0.3
            e = np.where(np.abs(np.abs(e) - delta) < 0.02, e * 1.1, e)
            return (LS.Huber() if name == "huber" else LS.Huber(delta=delta),
                    (y + e).astype(np.float32), y, lambda p, t: ref_huber(p, t, delta))
        return LS.MeanAbsoluteError(), (y + e).astype(np.float32), y, ref_mae
    if name == "kld":
        return LS.KLDivergence(), soft_rows(rng, shape), soft_rows(rng, shape), ref_kld
    if name == "categorical_hinge":
        # Off-target values at least 0.08 apart (a unique max) and margins in (0, 2): the
        # loss is smooth within the finite-difference steps.
        y = onehot_rows(rng, shape)
        levels = np.arange(shape[-1]) / shape[-1]
        p = rng.permuted(np.broadcast_to(levels, shape), axis=-1)
        p = (p + rng.uniform(0, 0.02, shape)).astype(np.float32)
        return LS.CategoricalHinge(), p, y, ref_categorical_hinge
    raise AssertionError(name)


NAMES = ["bce", "bce_smooth", "bce_logits", "mae", "huber", "huber_delta", "kld",
         "categorical_hinge"]
SHAPES = [(7, 5), (3, 4, 4, 6), (1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_loss_kernels_match_float64_keras_formulas(name, shape, rng):
    loss, p, y, ref = case(name, rng, shape)
    grad = np.full(p.shape, np.nan, np.float32)
    got = loss.compute(grad, p, y)
    want, want_grad = ref(p, y)
    # Both sides evaluate the same float32 inputs in float64 (the kernel sums in double):
    # only libm-vs-NumPy log/exp differences of a few ulps remain.
    assert got == pytest.approx(want, rel=1e-12, abs=1e-14)
    # The gradient is one float64 value rounded to float32 (relative error 2^-24 = 6e-8).
    np.testing.assert_allclose(grad, want_grad, rtol=2e-7, atol=1e-12)
    # Without a gradient output the value is the same.
    assert loss.compute(None, p, y) == got


@pytest.mark.parametrize("name", NAMES)
def test_loss_gradients_match_central_differences_of_the_kernel(name, rng):
    loss, p, y, _ = case(name, rng, (4, 6))
    grad = np.empty_like(p)
    loss.compute(grad, p, y)
    flat = p.reshape(-1)
    for i in rng.choice(flat.size, 8, replace=False):
        hi, lo = flat.copy(), flat.copy()
        # Steps relative to the distance from the poles of log(p) and log(1 - p).
        h = np.float32(1e-3 * max(min(abs(flat[i]), abs(1 - flat[i])), 1e-2))
        hi[i] += h
        lo[i] -= h
        step = np.float64(hi[i]) - np.float64(lo[i])  # the float32 step actually taken
        fd = (loss.compute(None, hi.reshape(p.shape), y)
              - loss.compute(None, lo.reshape(p.shape), y)) / step
        # Values summed in double: rounding noise ~1e-16 / step <= 1e-11; truncation
        # (h/p)^2/3 <= 4e-7 relative for the logs, 0 for the piecewise quadratics.
        assert fd == pytest.approx(float(grad.reshape(-1)[i]), rel=2e-5, abs=1e-9), int(i)


# -- PyTorch cross-checks -------------------------------------------------------------------

try:
    import torch
except ImportError:  # the NumPy references above still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def torch_value_and_grad(fn, p, y):
    pt = torch.tensor(np.float64(p), requires_grad=True)
    value = fn(pt, torch.tensor(np.float64(y)))
    value.backward()
    return value.item(), pt.grad.numpy()


def manual_categorical_hinge(p, y):
    pos = (y * p).sum(-1)
    neg = ((1 - y) * p).amax(-1)  # amax shares its gradient evenly among ties, as TF's max
    return torch.clamp(neg - pos + 1, min=0).mean()


TORCH = {
    "bce": (lambda: LS.BinaryCrossentropy(), lambda r, s: (probs(r, s), probs(r, s, 0, 1)),
            lambda p, y: torch.nn.functional.binary_cross_entropy(p, y)),
    "bce_smooth": (lambda: LS.BinaryCrossentropy(label_smoothing=0.3),
                   lambda r, s: (probs(r, s), r.integers(0, 2, s).astype(np.float32)),
                   lambda p, y: torch.nn.functional.binary_cross_entropy(p, y * 0.7 + 0.15)),
    "bce_logits": (lambda: LS.BinaryCrossentropy(from_logits=True),
                   lambda r, s: ((4 * r.standard_normal(s)).astype(np.float32),
                                 probs(r, s, 0, 1)),
                   lambda z, y: torch.nn.functional.binary_cross_entropy_with_logits(z, y)),
    "mae": (lambda: LS.MeanAbsoluteError(),
            lambda r, s: (r.standard_normal(s).astype(np.float32),
                          r.standard_normal(s).astype(np.float32)),
            lambda p, y: torch.nn.functional.l1_loss(p, y)),
    "huber": (lambda: LS.Huber(delta=0.7),
              lambda r, s: ((2 * r.standard_normal(s)).astype(np.float32),
                            r.standard_normal(s).astype(np.float32)),
              lambda p, y: torch.nn.functional.huber_loss(p, y, delta=0.7)),
    # kl_div takes log-probabilities; "sum" / rows is Keras's mean over rows of the row sums.
    "kld": (lambda: LS.KLDivergence(), lambda r, s: (soft_rows(r, s), soft_rows(r, s)),
            lambda p, y: torch.nn.functional.kl_div(torch.log(p), y, reduction="sum")
            / (p.numel() // p.shape[-1])),
    "categorical_hinge": (lambda: LS.CategoricalHinge(),
                          lambda r, s: (r.standard_normal(s).astype(np.float32),
                                        onehot_rows(r, s)), manual_categorical_hinge),
}


@needs_torch
@pytest.mark.parametrize("shape", [(16, 3), (2, 3, 3, 5)], ids=str)
@pytest.mark.parametrize("name", sorted(TORCH))
def test_loss_kernels_match_pytorch(name, shape, rng):
    make, data, fn = TORCH[name]
    loss = make()
    p, y = data(rng, shape)
    grad = np.empty_like(p)
    got = loss.compute(grad, p, y)
    want, want_grad = torch_value_and_grad(fn, p, y)
    # Same float32 inputs in float64 on both sides; Keras's 1e-7 clip never binds on this data.
    assert got == pytest.approx(want, rel=1e-10)
    # Our gradient is rounded to float32 once (6e-8 relative).
    np.testing.assert_allclose(grad, want_grad, rtol=2e-7, atol=1e-12)


@needs_torch
def test_categorical_hinge_shares_the_max_gradient_among_ties_like_torch_amax():
    p = np.array([[0.5, 0.5, 0.1, 0.5], [0.2, 0.9, 0.9, 0.0]], np.float32)
    y = np.array([[0, 0, 1, 0], [1, 0, 0, 0]], np.float32)
    grad = np.empty_like(p)
    got = LS.CategoricalHinge().compute(grad, p, y)
    want, want_grad = torch_value_and_grad(manual_categorical_hinge, p, y)
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-7)
    assert grad[0, 0] == grad[0, 1] == grad[0, 3] == pytest.approx(1 / 3 / 2)


def test_clipping_at_the_probability_bounds_follows_keras():
    # Keras clips p to [1e-7, 1 - 1e-7] (binary) and y, p to [1e-7, 1] (KL): finite losses at
    # p = 0 or 1 and no gradient from clipped entries.
    p = np.array([[0.0, 1.0, 0.5, 1e-9]], np.float32)
    y = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)
    grad = np.empty_like(p)
    got = LS.BinaryCrossentropy().compute(grad, p, y)
    want, want_grad = ref_bce(p, y)
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-12)
    assert grad[0, 0] == grad[0, 1] == grad[0, 3] == 0.0
    np.testing.assert_allclose(grad, want_grad, rtol=2e-7)
    # -log(1e-7) for each of the first two entries, the mean over four.
    assert got == pytest.approx((2 * -np.log(1e-7) - np.log(0.5) - np.log(1 - 1e-7)) / 4,
                                rel=1e-9)
    q = np.array([[0.0, 0.5, 0.5]], np.float32)
    t = np.array([[0.5, 0.0, 0.5]], np.float32)
    got = LS.KLDivergence().compute(grad[:, :3].copy(), q, t)
    assert got == pytest.approx(ref_kld(q, t)[0], rel=1e-12)
    assert got == pytest.approx(0.5 * np.log(0.5 / 1e-7) + 1e-7 * np.log(1e-7 / 0.5), rel=1e-9)


def test_logit_kernels_stay_finite_for_huge_logits():
    z = np.array([[-1e4, 1e4, 80.0, -80.0]], np.float32)
    y = np.array([[0.0, 1.0, 0.0, 1.0]], np.float32)
    grad = np.empty_like(z)
    got = LS.BinaryCrossentropy(from_logits=True).compute(grad, z, y)
    # Exact: the two saturated-correct entries contribute exp(-1e4) ~ 0, the others 80 each.
    assert got == pytest.approx(160 / 4, rel=1e-12)
    np.testing.assert_allclose(grad, [[0, 0, 0.25, -0.25]], atol=1e-30)


# -- the function forms, names and Keras compatibility ---------------------------------------

FUNCTIONS = [
    (LS.binary_crossentropy, {}, lambda p, y: ref_bce(p, y)),
    (LS.binary_crossentropy, {"label_smoothing": 0.1}, lambda p, y: ref_bce(p, y, 0.1)),
    (LS.binary_crossentropy, {"from_logits": True}, ref_bce_logits),
    (LS.mean_absolute_error, {}, ref_mae),
    (LS.huber, {"delta": 0.5}, lambda p, y: ref_huber(p, y, 0.5)),
    (LS.kl_divergence, {}, ref_kld),
    (LS.categorical_hinge, {}, ref_categorical_hinge),
]


@pytest.mark.parametrize("fn, kwargs, ref", FUNCTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_function_forms_give_per_sample_losses(fn, kwargs, ref, rng):
    p, y = soft_rows(rng, (2, 3, 4)), soft_rows(rng, (2, 3, 4))
    if fn is LS.categorical_hinge:
        y = onehot_rows(rng, (2, 3, 4))
    got = fn(y, p, **kwargs)
    assert got.shape == (2, 3) and got.dtype == np.float32
    # Each row through the float64 reference (whose value is a mean over one row).
    want = [ref(p[i, j:j + 1], y[i, j:j + 1])[0] for i in range(2) for j in range(3)]
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-6)  # float32 result
    # The batch mean of the function equals the class's (kernel) value.
    cls = LS.get(fn)
    cls = type(cls)(**kwargs) if kwargs else cls
    assert cls(y, p) == pytest.approx(float(np.mean(np.float64(got))), rel=1e-6)


def test_names_functions_and_keras_module():
    from cnnfast import keras

    for name, cls in [("binary_crossentropy", LS.BinaryCrossentropy),
                      ("bce", LS.BinaryCrossentropy), ("mean_absolute_error",
                                                       LS.MeanAbsoluteError),
                      ("mae", LS.MeanAbsoluteError), ("MAE", LS.MeanAbsoluteError),
                      ("huber", LS.Huber), ("kl_divergence", LS.KLDivergence),
                      ("kld", LS.KLDivergence), ("categorical_hinge", LS.CategoricalHinge)]:
        assert type(LS.get(name)) is cls
    assert keras.losses.mae is keras.losses.mean_absolute_error is LS.mean_absolute_error
    assert keras.losses.kld is LS.kl_divergence
    for fn, cls in [(keras.losses.binary_crossentropy, LS.BinaryCrossentropy),
                    (keras.losses.mae, LS.MeanAbsoluteError), (keras.losses.huber, LS.Huber),
                    (keras.losses.kl_divergence, LS.KLDivergence),
                    (keras.losses.categorical_hinge, LS.CategoricalHinge)]:
        assert type(LS.get(fn)) is cls
    assert keras.losses.BinaryCrossentropy is LS.BinaryCrossentropy
    # Keras's defaults.
    assert LS.BinaryCrossentropy().get_config() == {"from_logits": False,
                                                    "label_smoothing": 0.0}
    assert LS.Huber().delta == 1.0
    assert LS.CategoricalCrossentropy().get_config() == {"from_logits": False,
                                                         "label_smoothing": 0.0}
    with pytest.raises(NotImplementedError, match="Poisson"):
        keras.losses.Poisson  # noqa: B018


# -- errors -------------------------------------------------------------------------------

def test_bad_inputs_raise_errors_naming_the_loss_and_shapes():
    p = np.full((4, 3), 0.5, np.float32)
    for loss in (LS.BinaryCrossentropy(), LS.MeanAbsoluteError(), LS.Huber(),
                 LS.KLDivergence(), LS.CategoricalHinge()):
        with pytest.raises(ValueError, match=rf"{loss.name}: targets of shape \(4, 2\) .*"
                                             r"\(None, 3\)"):
            loss(np.zeros((4, 2)), p)
        with pytest.raises(TypeError, match=loss.name):
            loss(np.array([["a"] * 3] * 4), p)
    for fn in (LS.binary_crossentropy, LS.mae, LS.huber, LS.kl_divergence, LS.categorical_hinge):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: y_true \(4, 2\) and y_pred "
                                             r"\(4, 3\)"):
            fn(np.zeros((4, 2)), p)
    with pytest.raises(ValueError, match=r"Huber: delta must be a positive number, got 0"):
        LS.Huber(delta=0)
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\]"):
        LS.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"CategoricalCrossentropy: label_smoothing"):
        LS.CategoricalCrossentropy(label_smoothing=-0.1)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        LS.BinaryCrossentropy(from_logits="yes")
    # The bindings check shapes too, naming the kernel.
    with pytest.raises(ValueError, match=r"huber: target \(4, 2\) and pred \(4, 3\)"):
        _core.huber(None, p, np.zeros((4, 2), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"kl_divergence: gradient \(3, 4\) and pred \(4, 3\)"):
        _core.kl_divergence(np.zeros((3, 4), np.float32), p, p)
    with pytest.raises(ValueError, match=r"binary_xent: label_smoothing must be in \[0, 1\]"):
        _core.binary_xent(None, p, p, 2.0)
    with pytest.raises(ValueError, match=r"categorical_hinge: pred \(0, 3\) must be a non-empty"):
        _core.categorical_hinge(None, p[:0], p[:0])
    # In fit, the loss and the shapes are named.
    model = cf.Sequential([L.Input((5,)), L.Dense(3, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"fit: binary_crossentropy: targets of shape \(4, 2\)"):
        model.fit(np.zeros((4, 5), np.float32), np.zeros((4, 2)), verbose=0)


# -- in compile and fit ---------------------------------------------------------------------

def regression_data(rng, n=32, outputs=3):
    x = rng.standard_normal((n, 6)).astype(np.float32)
    w = rng.standard_normal((6, outputs)).astype(np.float32)
    return x, (x @ w / 2).astype(np.float32)


def training_setup(name, rng):
    """(output activation, loss, x, y) for a tiny Dense model trained with `name`."""
    x, z = regression_data(rng)
    if name == "bce":
        return "sigmoid", LS.BinaryCrossentropy(), x, (z > 0).astype(np.float32)
    if name == "bce_logits":
        return None, LS.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), x, \
            (z > 0).astype(np.float32)
    if name in ("mae", "huber"):
        return None, LS.get(name), x, z
    if name == "kld":
        e = np.exp(z)
        return "softmax", LS.KLDivergence(), x, (e / e.sum(1, keepdims=True)).astype(np.float32)
    if name == "categorical_hinge":
        return None, LS.CategoricalHinge(), x, np.eye(3, dtype=np.float32)[z.argmax(1)]
    if name == "cce_logits_smooth":
        return None, LS.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), x, \
            np.eye(3, dtype=np.float32)[z.argmax(1)]
    if name == "cce_smooth":
        return "softmax", LS.CategoricalCrossentropy(label_smoothing=0.2), x, \
            np.eye(3, dtype=np.float32)[z.argmax(1)]
    if name == "scce_logits":
        return None, LS.SparseCategoricalCrossentropy(from_logits=True), x, z.argmax(1)
    raise AssertionError(name)


TRAINED = ["bce", "bce_logits", "mae", "huber", "kld", "categorical_hinge", "cce_logits_smooth",
           "cce_smooth", "scce_logits"]


def tiny_model(activation, seed=3):
    cf.set_seed(seed)
    return cf.Sequential([L.Input((6,)), L.Dense(8, activation="tanh"),
                          L.Dense(3, activation=activation)])


@pytest.mark.parametrize("name", TRAINED)
def test_training_with_each_loss_lowers_it(name, rng):
    activation, loss, x, y = training_setup(name, rng)
    model = tiny_model(activation)
    model.compile(cf.optimizers.Adam(0.05), loss)
    if name.startswith(("cce", "scce")):  # options the C++ plan does not have
        assert "only its defaults" in model._train_plan_blocker()
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0)
    losses = history.history["loss"]
    after = model.evaluate(x, y, verbose=0)
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    # Six epochs of Adam on a separable toy problem: the loss falls by a clear margin.
    assert after < 0.8 * before, (before, losses, after)


def test_default_losses_keep_the_cpp_train_plan():
    model = tiny_model("softmax")
    model.compile("sgd", "categorical_crossentropy")
    assert model._train_plan_blocker() is None
    model.compile("sgd", LS.CategoricalCrossentropy(from_logits=True))
    assert "only its defaults" in model._train_plan_blocker()
    model.compile("sgd", "binary_crossentropy")
    assert model._train_plan_blocker() is None
    model.compile("sgd", LS.BinaryCrossentropy(label_smoothing=0.1))
    assert "only its defaults" in model._train_plan_blocker()


def one_sgd_step(activation, loss, x, y, w=None):
    model = tiny_model(activation, seed=7)
    model.compile(cf.optimizers.SGD(0.5), loss)
    value = model.train_on_batch(x, y, sample_weight=w)
    return value, model.get_weights(), model


class UnfusedBinaryCrossentropy(LS.BinaryCrossentropy):
    fuses_sigmoid = False  # the sigmoid's own backward, then the loss's gradient wrt p


def test_sigmoid_output_is_fused_with_binary_crossentropy(rng):
    x, z = regression_data(rng, 16)
    y = (z > 0).astype(np.float32)
    fused_value, fused, model = one_sgd_step("sigmoid", LS.BinaryCrossentropy(), x, y)
    assert model._fused_softmax()
    assert any("sigmoid + binary cross-entropy as one kernel" in line
               for line in model._plan_lines())
    model._force_python_training = True
    assert any("sigmoid + binary_crossentropy from the logits" in line
               for line in model._plan_lines())
    plain_value, plain, other = one_sgd_step("sigmoid", UnfusedBinaryCrossentropy(), x, y)
    assert not other._fused_softmax()
    logits_value, logits, _ = one_sgd_step(None, LS.BinaryCrossentropy(from_logits=True), x, y)
    # Same value (p = sigmoid(z) stays inside the clip): float32 sigmoid vs double, 1e-6.
    assert fused_value == pytest.approx(plain_value, rel=1e-6)
    assert fused_value == pytest.approx(logits_value, rel=1e-6)
    # Same step: (p - y) / n from the logits versus the chain rule through p in float32.
    for a, b, c in zip(fused, plain, logits):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a, c)  # the same kernel gradient, bit for bit


def test_categorical_crossentropy_class_options_train_as_keras(rng):
    x, z = regression_data(rng, 16)
    y = np.eye(3, dtype=np.float32)[z.argmax(1)]
    ys = y * 0.8 + 0.2 / 3
    # Label smoothing is cross-entropy against smoothed targets: the same step either way.
    v1, w1, _ = one_sgd_step("softmax", LS.CategoricalCrossentropy(label_smoothing=0.2), x, y)
    v2, w2, _ = one_sgd_step("softmax", LS.CategoricalCrossentropy(), x, ys)
    assert v1 == v2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    # from_logits on a linear output is the fused softmax path: same gradient (p - y) / n.
    v3, w3, _ = one_sgd_step(None, LS.CategoricalCrossentropy(from_logits=True,
                                                              label_smoothing=0.2), x, y)
    assert v3 == pytest.approx(v1, rel=1e-6)  # clip-free log-softmax vs clipped, both in double
    for a, b in zip(w1, w3):
        np.testing.assert_array_equal(a, b)
    # The value matches the function form.
    model = tiny_model(None)
    model.compile("sgd", LS.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2))
    want = LS.categorical_crossentropy(y, model.predict(x, verbose=0), from_logits=True,
                                       label_smoothing=0.2).astype(np.float64).mean()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", TRAINED)
def test_sample_weights_scale_each_sample_loss_like_keras(name, rng):
    activation, loss, x, y = training_setup(name, rng)
    x, y = x[:6], y[:6]
    w = np.array([1.0, 2.0, 0.0, 0.5, 3.0, 1.0])
    model = tiny_model(activation)
    model.compile("sgd", loss)
    per_sample = np.array([model.evaluate(x[i:i + 1], y[i:i + 1], verbose=0) for i in range(6)])
    got = model.evaluate(x, y, sample_weight=w, batch_size=6, verbose=0)
    # Keras 3: sum(w_i l_i) / N. float32 network, losses summed in double: 1e-6.
    assert got == pytest.approx(np.dot(w, per_sample) / 6, rel=1e-6)
    # Zero weight: that sample's gradient vanishes (two identical steps, one without it).
    _, w1, _ = one_sgd_step(activation, loss, x, y, w)
    keep = w > 0
    scaled = np.where(keep, w, 1.0)[keep]
    _, w2, _ = one_sgd_step(activation, loss, x[keep], y[keep], scaled * 5 / 6)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # sums in another order


@pytest.mark.parametrize("name", TRAINED)
def test_saved_model_keeps_its_loss(name, rng, tmp_path):
    activation, loss, x, y = training_setup(name, rng)
    model = tiny_model(activation)
    model.compile("adam", loss)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "m.cnnfast"
    model.save(path)
    loaded = cf.load_model(path)
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    # Training continues from the saved optimizer state exactly as the original does.
    h1 = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    h2 = loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert h1.history["loss"] == h2.history["loss"]


def test_loss_serialization_round_trips_and_rejects_bad_configs():
    assert LS.serialize(LS.Huber()) == "huber"
    assert LS.serialize(LS.Huber(delta=2.0)) == {"name": "huber", "config": {"delta": 2.0}}
    for loss in (LS.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), LS.Huber(0.5),
                 LS.CategoricalCrossentropy(label_smoothing=0.3),
                 LS.SparseCategoricalCrossentropy(from_logits=True), LS.KLDivergence()):
        back = LS.deserialize(LS.serialize(loss))
        assert type(back) is type(loss) and back.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="unknown loss 'poisson'"):
        LS.deserialize({"name": "poisson", "config": {}})
    with pytest.raises(ValueError, match="invalid config for loss 'huber'"):
        LS.deserialize({"name": "huber", "config": {"beta": 1}})
    with pytest.raises(ValueError, match="Huber: delta"):
        LS.deserialize({"name": "huber", "config": {"delta": -1}})
    with pytest.raises(ValueError, match="cannot be stored by name"):
        LS.serialize(UnfusedBinaryCrossentropy())


# -- the C++ train plan --------------------------------------------------------------------

PLAN_LOSSES = [("mae", None, LS.MeanAbsoluteError), ("huber", None, LS.Huber),
               ("kld", "softmax", LS.KLDivergence),
               ("categorical_hinge", "softmax", LS.CategoricalHinge),
               ("bce", "sigmoid", LS.BinaryCrossentropy)]


@pytest.mark.parametrize("name, activation, cls", PLAN_LOSSES, ids=[n for n, *_ in PLAN_LOSSES])
@pytest.mark.parametrize("weighted", [False, True])
def test_plan_trains_bit_identically_to_the_python_walk(name, activation, cls, weighted):
    before = cf.get_num_threads()
    cf.set_num_threads(1)  # reductions are bit-reproducible at a given thread count
    try:
        rng = np.random.default_rng(11)
        _, _, x, y = training_setup(name, rng)
        w = rng.uniform(0, 2, len(x)) if weighted else None

        def run(python: bool) -> tuple[list[float], list[np.ndarray]]:
            cf.set_seed(4)
            model = cf.Sequential([L.Input((6,)), L.Dense(8, activation="elu"),
                                   L.Dense(3, activation=activation)])
            model.compile(cf.optimizers.Adam(0.01), cls(), metrics=["accuracy"])
            model._force_python_training = python
            assert (model._train_plan is None) == python
            values = [model.train_on_batch(x, y, sample_weight=w) for _ in range(3)]
            return values, model.get_weights()

        (plan_values, plan_weights), (walk_values, walk_weights) = run(False), run(True)
        for a, b in zip(plan_weights, walk_weights):
            np.testing.assert_array_equal(a, b)
        if weighted:
            # The weighted batch loss sum(w_i l_i) / N: the walk adds with np.dot, the plan in
            # row order (as for every plan loss), so the reported value may differ in its last
            # bit; the gradients, and so the weights, are identical.
            np.testing.assert_allclose(plan_values, walk_values, rtol=1e-15)
        else:
            assert plan_values == walk_values
    finally:
        cf.set_num_threads(before)


def test_only_default_options_run_in_the_plan():
    model = tiny_model(None)
    for loss in ("mae", "huber", "kld", "categorical_hinge", "binary_crossentropy"):
        model.compile("sgd", loss)
        assert model._train_plan_blocker() is None
    model.compile("sgd", LS.Huber(delta=2.0))
    assert "Huber({'delta': 2.0}) has no C++ step (only its defaults do)" in \
        model._train_plan_blocker()


@pytest.mark.parametrize("head", ["dense", "activation", "conv"])
def test_plan_fuses_the_sigmoid_output_with_binary_crossentropy_as_the_walk_does(head):
    before = cf.get_num_threads()
    cf.set_num_threads(1)
    try:
        rng = np.random.default_rng(12)
        x = rng.standard_normal((10, 4, 4, 2)).astype(np.float32)
        shape = (2, 2, 3) if head == "conv" else (3,)
        y = (rng.random((10, *shape)) > 0.5).astype(np.float32)

        def run(python: bool):
            cf.set_seed(6)
            tail = {"dense": [L.Flatten(), L.Dense(3, activation="sigmoid")],
                    "activation": [L.Flatten(), L.Dense(3), L.Activation("sigmoid")],
                    "conv": [L.Conv2D(3, 3, activation="sigmoid")]}[head]
            model = cf.Sequential([L.Input((4, 4, 2)), L.Conv2D(4, 1, activation="relu"),
                                   *tail])
            model.compile(cf.optimizers.SGD(0.3), "binary_crossentropy", metrics=["accuracy"])
            model._force_python_training = python
            values = [model.train_on_batch(x, y) for _ in range(3)]
            return values, model.get_weights(), model

        (pv, pw, plan_model), (wv, ww, walk_model) = run(False), run(True)
        plan = plan_model._train_plan
        assert plan is not None
        fused = any("sigmoid + binary cross-entropy" in f for f in plan.fusions)
        # The convolution applies its sigmoid in its kernel: neither side has logits there.
        assert fused == (head != "conv") == walk_model._fused_softmax()
        assert pv == wv
        for a, b in zip(pw, ww):
            np.testing.assert_array_equal(a, b)
    finally:
        cf.set_num_threads(before)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "mae", "huber"])
def test_targets_of_shape_n_fit_a_single_unit_output_as_in_keras(loss, rng):
    # Keras expands y of shape (N,) to (N, 1) for a Dense(1) output (the IMDB-style script).
    x = rng.standard_normal((12, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)

    def run(targets):
        cf.set_seed(2)
        model = cf.Sequential([L.Input((6,)), L.Dense(1, activation="sigmoid")])
        model.compile(cf.optimizers.SGD(0.5), loss, metrics=["accuracy"])
        history = model.fit(x, targets, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return history.history, model.get_weights()

    (h1, w1), (h2, w2) = run(y), run(y[:, None])
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    # Only one missing unit axis is added: (N,) against (None, 3) still fails, naming both.
    with pytest.raises(ValueError, match=r"targets of shape \(12,\) do not match .*\(None, 3\)"):
        LS.get(loss)(y, np.zeros((12, 3), np.float32))
