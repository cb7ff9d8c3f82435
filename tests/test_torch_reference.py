"""cnnfast against PyTorch, an independent implementation: every op forward and backward on
randomized configurations (hypothesis), and whole training runs step by step.

PyTorch is an optional test dependency (``pip install ".[torch]"``, part of ``.[test]``); the
module is skipped, saying so, when it is absent. PyTorch runs in float64 on the same float32
inputs, so every difference is cnnfast's float32 rounding, and tolerances scale with the
magnitude a float32 sum of that length can lose: for an output formed as sum_i a_i b_i we allow
|got - ref| <= 2e-6 * sum_i |a_i||b_i| + rtol |ref| (about 32 ulps of the absolute sum;
reductions here are at most ~600 terms long, blocked, so the observed error is far below).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (optional reference: pip install '.[torch]')"
)
hypothesis = pytest.importorskip("hypothesis")

import reference as R
import torch.nn.functional as F
from counts import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnfast as cf
from cnnfast import _core, ops
from cnnfast.shapes import conv_padding

torch.set_num_threads(1)  # the references are tiny; threads only add start-up noise

SETTINGS = {"deadline": None, "derandomize": True, "database": None,
                "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture]}

# Magnitude-scaled absolute tolerance (see the module docstring) and a small relative one.
MAG_TOL = 2e-6
RTOL = 1e-5


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def nchw(a: torch.Tensor) -> torch.Tensor:
    return a.permute(0, 3, 1, 2)


def nhwc(a: torch.Tensor) -> torch.Tensor:
    return a.permute(0, 2, 3, 1)


def assert_close_scaled(got, ref, mag, what: str) -> None:
    """|got - ref| <= MAG_TOL * mag + RTOL * |ref| + 1e-30 elementwise (mag: the sum of |terms|)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    mag = np.broadcast_to(np.asarray(mag, np.float64), ref.shape)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != torch {ref.shape}"
    bound = MAG_TOL * mag + RTOL * np.abs(ref) + 1e-30
    err = np.abs(got - ref)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / bound, 0)), ref.shape)
        raise AssertionError(f"{what}: {np.count_nonzero(bad)}/{ref.size} entries off; worst at "
                             f"{i}: got {got[i]!r}, torch {ref[i]!r}, bound {bound[i]:.3g}")


def vjp(fn, inputs: list[np.ndarray], dy: np.ndarray):
    """fn(*tensors) in float64, its output and the gradients of <output, dy> w.r.t. inputs."""
    ts = [t64(a, grad=True) for a in inputs]
    out = fn(*ts)
    grads = torch.autograd.grad(out, ts, t64(dy), allow_unused=True)
    return out.detach().numpy(), [None if g is None else g.numpy() for g in grads]


# -- convolution --------------------------------------------------------------------------------

def available_conv_algorithms() -> list[str]:
    algos = ["im2col"]
    previous = _core.conv2d_algorithm()
    for name in ("direct", "winograd", "streamed"):
        if _core.set_conv2d_algorithm(name) and _core.conv2d_algorithm() == name:
            algos.append(name)
    _core.set_conv2d_algorithm("auto" if previous not in algos else previous)
    return algos


# Module-scoped per algorithm (the setting is global); hypothesis reuses it across examples.
@pytest.fixture(params=available_conv_algorithms())
def conv_algorithm(request):
    assert _core.set_conv2d_algorithm(request.param)
    yield request.param
    _core.set_conv2d_algorithm("auto")


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg = draw(st.integers(1, 5))
    kg = draw(st.integers(1, 5))
    kh = draw(st.sampled_from([1, 1, 2, 3, 3, 5]))
    kw = draw(st.sampled_from([kh, kh, 1, 2, 3, 4]))  # mostly square, sometimes rectangular
    sh = draw(st.integers(1, 3))
    sw = draw(st.sampled_from([sh, sh, 1, 2]))
    padding = draw(st.sampled_from(["valid", "same", "explicit"]))
    if padding == "explicit":
        padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    pad_h = padding if isinstance(padding, str) else padding[0]
    pad_w = padding if isinstance(padding, str) else padding[1]
    h = draw(st.integers(max(1, kh - 2 * (0 if isinstance(pad_h, str) else pad_h)), 11))
    w = draw(st.integers(max(1, kw - 2 * (0 if isinstance(pad_w, str) else pad_w)), 11))
    if padding == "valid":
        h, w = max(h, kh), max(w, kw)
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return {"n": n, "h": h, "w": w, "c": cg * groups, "k": kg * groups, "kh": kh, "kw": kw, "strides": (sh, sw),
                "padding": padding, "groups": groups, "bias": bias, "seed": seed}


def torch_pads(h, w, kh, kw, strides, padding):
    ph = padding if isinstance(padding, str) else padding[0]
    pw = padding if isinstance(padding, str) else padding[1]
    top, bottom, _ = conv_padding(h, kh, strides[0], ph if isinstance(ph, str) else (ph, ph))
    left, right, _ = conv_padding(w, kw, strides[1], pw if isinstance(pw, str) else (pw, pw))
    return (left, right, top, bottom)  # F.pad order: last axis first


def torch_conv(x, w, b, strides, pads, groups):
    """NHWC x, (KH,KW,C/g,K) w -> NHWC y, all float64 torch tensors."""
    xp = F.pad(nchw(x), pads)
    y = F.conv2d(xp, w.permute(3, 2, 0, 1).contiguous(), b, stride=strides, groups=groups)
    return nhwc(y)


@settings(max_examples=250, **SETTINGS)
@given(cfg=conv_configs())
def test_conv2d_forward_backward_match_torch(conv_algorithm, cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["n"], cfg["h"], cfg["w"], cfg["c"])).astype(np.float32)
    wt = rng.standard_normal((cfg["kh"], cfg["kw"], cfg["c"] // cfg["groups"], cfg["k"]))
    wt = wt.astype(np.float32)
    b = rng.standard_normal(cfg["k"]).astype(np.float32) if cfg["bias"] else None
    geo = {"strides": cfg["strides"], "padding": cfg["padding"], "groups": cfg["groups"]}
    pads = torch_pads(cfg["h"], cfg["w"], cfg["kh"], cfg["kw"], cfg["strides"], cfg["padding"])

    y = ops.conv2d(x, wt, b, **geo)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(x, wt, dy, **geo)

    def fn(xt, wtt):
        return torch_conv(xt, wtt, None, cfg["strides"], pads, cfg["groups"])

    ref_y, (ref_dx, ref_dw) = vjp(fn, [x, wt], dy)
    # Magnitudes: the same products on absolute values.
    mag_y, (mag_dx, mag_dw) = vjp(fn, [np.abs(x), np.abs(wt)], np.abs(dy))
    if b is not None:
        ref_y = ref_y + b.astype(np.float64)
        mag_y = mag_y + np.abs(b)
    assert_close_scaled(y, ref_y, mag_y, f"conv2d forward {cfg}")
    assert_close_scaled(dx, ref_dx, mag_dx, f"conv2d dx {cfg}")
    assert_close_scaled(dw, ref_dw, mag_dw, f"conv2d dw {cfg}")
    ref_db = dy.astype(np.float64).sum(axis=(0, 1, 2))
    assert_close_scaled(db, ref_db, np.abs(dy).astype(np.float64).sum(axis=(0, 1, 2)),
                        f"conv2d db {cfg}")
    record(f"torch configurations: conv2d ({conv_algorithm})")


def test_conv2d_layer_fused_relu_matches_torch(conv_algorithm):
    """The layer path (bias + ReLU fused into the kernel epilogue) on a larger convolution."""
    rng = np.random.default_rng(7)
    layer = cf.layers.Conv2D(32, 3, padding="same", activation="relu")
    x = rng.standard_normal((4, 16, 16, 24)).astype(np.float32)
    layer.build(x.shape[1:])
    layer.weights_["bias"][:] = rng.standard_normal(32)
    y = layer(x)
    ref = F.relu(torch_conv(t64(x), t64(layer.weights_["kernel"]), t64(layer.weights_["bias"]),
                            (1, 1), (1, 1, 1, 1), 1)).numpy()
    mag = torch_conv(t64(np.abs(x)), t64(np.abs(layer.weights_["kernel"])),
                     t64(np.abs(layer.weights_["bias"])), (1, 1), (1, 1, 1, 1), 1).numpy()
    assert_close_scaled(y, ref, mag, "Conv2D layer with fused ReLU")
    record(f"torch configurations: conv2d ({conv_algorithm})")


# -- pooling ------------------------------------------------------------------------------------

@st.composite
def pool_configs(draw):
    ph = draw(st.integers(1, 4))
    pw = draw(st.sampled_from([ph, ph, 1, 2, 3]))
    strides = draw(st.sampled_from([None, None, (1, 1), (2, 2), (1, 2), (3, 2)]))
    padding = draw(st.sampled_from(["valid", "same", "explicit"]))
    if padding == "explicit":
        padding = (draw(st.integers(0, ph - 1)), draw(st.integers(0, pw - 1)))
    h = draw(st.integers(ph, 12))
    w = draw(st.integers(pw, 12))
    return {"n": draw(st.integers(1, 3)), "h": h, "w": w, "c": draw(st.integers(1, 9)), "pool": (ph, pw),
                "strides": strides, "padding": padding, "seed": draw(st.integers(0, 2**31 - 1))}


def torch_pool(x, kind, pool, strides, pads):
    """NHWC float64 x -> pooled NHWC, with padding excluded (max: -inf pads; avg: real count)."""
    xc = nchw(x)
    if kind == "max":
        y = F.max_pool2d(F.pad(xc, pads, value=-np.inf), pool, strides)
        return nhwc(y)
    total = F.avg_pool2d(F.pad(xc, pads), pool, strides, divisor_override=1)
    count = F.avg_pool2d(F.pad(torch.ones_like(xc), pads), pool, strides, divisor_override=1)
    return nhwc(total / count)


@settings(max_examples=200, **SETTINGS)
@given(cfg=pool_configs(), kind=st.sampled_from(["max", "avg"]))
def test_pooling_forward_backward_match_torch(cfg, kind):
    rng = np.random.default_rng(cfg["seed"])
    # Distinct values (a permutation), so no max ties: tie-breaking is a convention, not math.
    size = cfg["n"] * cfg["h"] * cfg["w"] * cfg["c"]
    x = (rng.permutation(size).reshape(cfg["n"], cfg["h"], cfg["w"], cfg["c"]) / size - 0.5)
    x = x.astype(np.float32)
    strides = cfg["strides"] or cfg["pool"]
    pads = torch_pads(cfg["h"], cfg["w"], *cfg["pool"], strides, cfg["padding"])
    args = {"pool_size": cfg["pool"], "strides": cfg["strides"], "padding": cfg["padding"]}
    fwd, bwd = ((ops.max_pool2d, ops.max_pool2d_backward) if kind == "max"
                else (ops.avg_pool2d, ops.avg_pool2d_backward))
    y = fwd(x, **args)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = bwd(x, dy, **args)
    ref_y, (ref_dx,) = vjp(lambda t: torch_pool(t, kind, cfg["pool"], strides, pads), [x], dy)
    # Max: exact selection. Avg: a float32 mean of <= 16 terms and a scatter of <= 16 shares.
    assert_close_scaled(y, ref_y, np.abs(ref_y) + 1, f"{kind} pool forward {cfg}")
    assert_close_scaled(dx, ref_dx, np.abs(ref_dx) + 1, f"{kind} pool dx {cfg}")
    record("torch configurations: pooling")


# -- dense --------------------------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(n=st.integers(1, 9), fin=st.integers(1, 300), fout=st.integers(1, 70),
       lead=st.sampled_from([(), (), (2,), (3, 2)]), seed=st.integers(0, 2**31 - 1))
def test_dense_forward_backward_match_torch(n, fin, fout, lead, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *lead, fin)).astype(np.float32)
    w = rng.standard_normal((fin, fout)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    y = ops.dense(x, w, b)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = ops.dense_backward(x, w, dy)

    def fn(xt, wt):
        return xt @ wt

    ref_y, (ref_dx, ref_dw) = vjp(fn, [x, w], dy)
    mag_y, (mag_dx, mag_dw) = vjp(fn, [np.abs(x), np.abs(w)], np.abs(dy))
    assert_close_scaled(y, ref_y + b, mag_y + np.abs(b), "dense forward")
    assert_close_scaled(dx, ref_dx, mag_dx, "dense dx")
    assert_close_scaled(dw, ref_dw, mag_dw, "dense dw")
    axes = tuple(range(dy.ndim - 1))
    assert_close_scaled(db, dy.astype(np.float64).sum(axes), np.abs(dy).astype(np.float64).sum(axes),
                        "dense db")
    record("torch configurations: dense")


# -- activations --------------------------------------------------------------------------------

ACTIVATIONS = {
    # name: (cnnfast forward, cnnfast backward(x, y, dy), torch function)
    "relu": (ops.relu, lambda x, y, dy: ops.relu_backward(x, dy), F.relu),
    "sigmoid": (ops.sigmoid, lambda x, y, dy: ops.sigmoid_backward(x, dy), torch.sigmoid),
    "tanh": (ops.tanh, lambda x, y, dy: ops.tanh_backward(x, dy), torch.tanh),
    "elu": (ops.elu, lambda x, y, dy: ops.elu_backward(x, dy), F.elu),
    "elu_alpha_0.3": (lambda x: ops.elu(x, 0.3), lambda x, y, dy: ops.elu_backward(x, dy, 0.3),
                      lambda t: F.elu(t, 0.3)),
    "swish": (ops.swish, lambda x, y, dy: ops.swish_backward(x, dy), F.silu),
    "leaky_relu": (ops.leaky_relu, lambda x, y, dy: ops.leaky_relu_backward(x, dy),
                   lambda t: F.leaky_relu(t, 0.2)),
    "leaky_relu_0.3": (lambda x: ops.leaky_relu(x, 0.3),
                       lambda x, y, dy: ops.leaky_relu_backward(x, dy, 0.3),
                       lambda t: F.leaky_relu(t, 0.3)),
    "linear": (ops.linear, lambda x, y, dy: ops.linear_backward(x, dy), lambda t: t),
    "softmax": (ops.softmax, lambda x, y, dy: ops.softmax_backward(y, dy),
                lambda t: torch.softmax(t, dim=-1)),
}


@settings(max_examples=200, **SETTINGS)
@given(name=st.sampled_from(sorted(ACTIVATIONS)),
       shape=st.sampled_from([(1, 1), (3, 7), (2, 5, 5, 3), (4, 33), (1, 70001), (2, 3, 4, 17)]),
       scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]), seed=st.integers(0, 2**31 - 1))
def test_activations_match_torch(name, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    fwd, bwd, tfn = ACTIVATIONS[name]
    y = fwd(x)
    dx = bwd(x, y, dy)
    ref_y, (ref_dx,) = vjp(tfn, [x], dy)
    # Element-wise: a few ulps of the value (polynomial exp/tanh approximations in the SIMD
    # paths are accurate to ~2 ulps, 1e-6 absolute near 0); softmax rows sum <= 70001 terms.
    mag = np.abs(ref_y) + (1e-1 if name == "softmax" else 1.0) * np.abs(x > -np.inf)
    assert_close_scaled(y, ref_y, mag, f"{name} forward {shape} x{scale}")
    dmag = np.abs(ref_dx) + np.abs(dy)
    if name == "softmax":
        dmag = dmag + np.abs(y * dy).sum(-1, keepdims=True)  # the row sum in the backward
    assert_close_scaled(dx, ref_dx, dmag, f"{name} backward {shape} x{scale}")
    record("torch configurations: activations")


@settings(max_examples=40, **SETTINGS)
@given(shape=st.sampled_from([(2, 4, 4, 3), (3, 10), (1, 6, 5, 8)]),
       shared=st.sampled_from(["none", "spatial"]), seed=st.integers(0, 2**31 - 1))
def test_prelu_matches_torch(shape, shared, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    ashape = shape[1:] if shared == "none" or len(shape) == 2 else (1, 1, shape[-1])
    alpha = rng.uniform(-0.5, 0.5, ashape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = ops.prelu(x, alpha)
    dx, dalpha = ops.prelu_backward(x, alpha, dy)

    def fn(xt, at):
        return torch.where(xt > 0, xt, at * xt)  # Keras PReLU with alpha broadcast

    ref_y, (ref_dx, ref_da) = vjp(fn, [x, alpha], dy)
    assert_close_scaled(y, ref_y, np.abs(ref_y), "prelu forward")
    assert_close_scaled(dx, ref_dx, np.abs(ref_dx), "prelu dx")
    _, (_, mag_da) = vjp(fn, [-np.abs(x), alpha], np.abs(dy))  # sum |dy||x| over shared positions
    assert_close_scaled(dalpha, ref_da, np.abs(mag_da), "prelu dalpha")
    record("torch configurations: prelu")


# -- local response normalization ----------------------------------------------------------------

@settings(max_examples=80, **SETTINGS)
@given(c=st.integers(1, 20), radius=st.integers(0, 4),
       bias=st.sampled_from([1.0, 2.0, 0.5]), alpha=st.sampled_from([1e-4, 1e-2, 0.3]),
       beta=st.sampled_from([0.75, 0.5, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_lrn_matches_torch_with_alpha_times_size(c, radius, bias, alpha, beta, seed):
    """TensorFlow/cnnfast alpha equals PyTorch's alpha / size with size = 2 * radius + 1."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 3, 4, c)) * 2).astype(np.float32)
    y, scale = ops.lrn(x, radius, bias, alpha, beta, return_scale=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.lrn_backward(dy, x, y, scale, radius, bias, alpha, beta)
    size = 2 * radius + 1

    def fn(xt):
        return nhwc(F.local_response_norm(nchw(xt), size, alpha=alpha * size, beta=beta, k=bias))

    ref_y, (ref_dx,) = vjp(fn, [x], dy)
    assert_close_scaled(y, ref_y, np.abs(ref_y) + 1e-3, "lrn forward")
    mag = np.abs(ref_dx) + np.abs(dy) + np.abs(x) * np.abs(dy).sum(-1, keepdims=True) * alpha
    assert_close_scaled(dx, ref_dx, mag, "lrn backward")
    record("torch configurations: lrn")


# -- losses -------------------------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(n=st.integers(1, 40), classes=st.integers(2, 30),
       kind=st.sampled_from(["onehot", "sparse", "soft"]), seed=st.integers(0, 2**31 - 1))
def test_softmax_cross_entropy_matches_torch(n, classes, kind, seed):
    rng = np.random.default_rng(seed)
    # Logits within +-4: every probability stays inside Keras' clip [1e-7, 1 - 1e-7], where the
    # clipped loss equals torch's unclipped one.
    logits = rng.uniform(-4, 4, (n, classes)).astype(np.float32)
    idx = rng.integers(0, classes, n)
    if kind == "soft":
        labels = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    else:
        labels = np.eye(classes, dtype=np.float32)[idx]
    if kind == "sparse":
        loss, dlogits = ops.sparse_softmax_cross_entropy(logits, idx)
    else:
        loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    lt = t64(logits, grad=True)
    ref = F.cross_entropy(lt, t64(labels))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-6, abs=1e-6)  # double accumulation
    assert_close_scaled(dlogits, lt.grad.numpy(), 1.0 / n, f"softmax-CE gradient {kind}")
    # The unfused loss on probabilities (Keras categorical_crossentropy, from_logits=False).
    probs = ops.softmax(logits)
    loss2, dprobs = ops.categorical_crossentropy(probs, labels)
    pt = t64(probs, grad=True)
    ref2 = -(t64(labels) * torch.log(pt / pt.sum(-1, keepdim=True))).sum(-1).mean()
    ref2.backward()
    assert loss2 == pytest.approx(ref2.item(), rel=1e-6, abs=1e-6)
    assert_close_scaled(dprobs, pt.grad.numpy(), np.abs(pt.grad.numpy()) + 1.0 / n,
                        f"categorical_crossentropy gradient {kind}")
    record("torch configurations: softmax-CE")


@settings(max_examples=40, **SETTINGS)
@given(shape=st.sampled_from([(1, 1), (5, 3), (7, 2, 2, 3), (3, 40000)]),
       seed=st.integers(0, 2**31 - 1))
def test_mse_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    loss, dpred = ops.mse(pred, target)
    pt = t64(pred, grad=True)
    ref = F.mse_loss(pt, t64(target))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-6)  # double accumulation
    assert_close_scaled(dpred, pt.grad.numpy(), np.abs(pt.grad.numpy()), "mse gradient")
    record("torch configurations: mse")


# -- whole training runs ------------------------------------------------------------------------

STEPS = 12


def small_cnn(variant: str):
    L = cf.layers
    if variant == "plain":
        layers = [L.Input((10, 10, 3)), L.Conv2D(6, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dropout(0.0), L.Dense(16, activation="relu"),
                  L.Dense(5, activation="softmax")]
    elif variant == "issue19":  # Rescaling, dilation, leaky ReLU, depthwise and separable
        layers = [L.Input((10, 10, 3)), L.Rescaling(0.5, offset=0.25),
                  L.Conv2D(6, 3, padding="same", dilation_rate=2, activation="leaky_relu"),
                  L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
                  L.LeakyReLU(0.1), L.SeparableConv2D(8, 3, activation="tanh"),
                  L.Flatten(), L.Dense(5, activation="softmax")]
    else:  # every other layer kind, in one net
        layers = [L.Input((10, 10, 3)), L.Conv2D(8, (3, 2), strides=(2, 1), padding="same",
                                                 activation="tanh", groups=1),
                  L.LocalResponseNormalization(2, 1.0, 1e-2, 0.75),
                  L.Conv2D(8, 3, padding=(1, 1), groups=2, activation="swish"),
                  L.AveragePooling2D(2, padding="same"), L.ELU(0.7),
                  L.PReLU(shared_axes=[1, 2], alpha_initializer="ones"),
                  L.Flatten(), L.Dense(12, activation="sigmoid"), L.Dense(5, activation="softmax")]
    return cf.Sequential(layers)


def torch_forward(variant: str, w: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The same network in torch (float64, NHWC in, logits out)."""
    if variant == "plain":
        h = F.relu(torch_conv(x, w[0], w[1], (1, 1), (0, 0, 0, 0), 1))
        h = nhwc(F.max_pool2d(nchw(h), 2))
        h = h.reshape(len(x), -1)  # NHWC flatten order, as cnnfast/Keras
        h = F.relu(h @ w[2] + w[3])
        return h @ w[4] + w[5]
    if variant == "issue19":
        def conv(h, k, b, stride, pads, dilation=1, groups=1):
            y = F.conv2d(F.pad(nchw(h), pads), k.permute(3, 2, 0, 1), b, stride=stride,
                         dilation=dilation, groups=groups)
            return nhwc(y)

        h = x * 0.5 + 0.25
        h = F.leaky_relu(conv(h, w[0], w[1], 1, (2, 2, 2, 2), dilation=2), 0.2)
        depthwise = w[2].reshape(3, 3, 1, 12)  # Keras (3, 3, 6, 2) as a grouped kernel
        h = F.leaky_relu(conv(h, depthwise, w[3], 2, (0, 1, 0, 1), groups=6), 0.1)
        h = conv(h, w[4].reshape(3, 3, 1, 12), None, 1, (0, 0, 0, 0), groups=12)
        h = torch.tanh(h @ w[5][0, 0] + w[6])
        return h.reshape(len(x), -1) @ w[7] + w[8]
    h = torch.tanh(torch_conv(x, w[0], w[1], (2, 1), torch_pads(10, 10, 3, 2, (2, 1), "same"), 1))
    h = nhwc(F.local_response_norm(nchw(h), 5, alpha=1e-2 * 5, beta=0.75, k=1.0))
    h = F.silu(torch_conv(h, w[2], w[3], (1, 1), (1, 1, 1, 1), 2))
    pads = torch_pads(h.shape[1], h.shape[2], 2, 2, (2, 2), "same")
    h = torch_pool(h, "avg", (2, 2), (2, 2), pads)
    h = F.elu(h, 0.7)
    h = torch.where(h > 0, h, w[4] * h)
    h = torch.sigmoid(h.reshape(len(x), -1) @ w[5] + w[6])
    return h @ w[7] + w[8]


class KerasRule:
    """A float64 optimizer on torch tensors that applies Keras's update rule (tests/reference.py)
    to their .grad: the reference where torch places epsilon elsewhere than Keras."""

    def __init__(self, params, step_fn, slots: int, stepped: bool = False, init: float = 0.0,
                 **kwargs) -> None:
        self.params, self.step_fn, self.stepped, self.kwargs = params, step_fn, stepped, kwargs
        self.state = [[np.full(p.shape, init) for _ in range(slots)] for p in params]
        self.t = 0
        self.param_groups = [{}]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for p, state in zip(self.params, self.state):
            args = (p.numpy(), p.grad.numpy(), *state) + ((self.t,) if self.stepped else ())
            w, *state[:] = self.step_fn(*args, **self.kwargs)
            p.copy_(torch.from_numpy(np.asarray(w, np.float64)))


def make_optimizers(kind: str):
    if kind == "sgd":
        return cf.optimizers.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)
    if kind == "momentum":
        return (cf.optimizers.SGD(0.05, momentum=0.9),
                lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    if kind == "nesterov":
        return (cf.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True))
    if kind == "adagrad":
        # Keras: lr g / sqrt(acc + eps); torch: lr g / (sqrt(acc) + eps). With eps = 0 on the
        # torch side the two differ by lr |g| eps / (2 acc^1.5) <= 1.6e-6 lr |g| per step
        # (acc >= initial 0.1): under float32 rounding, so torch (eps 0) is the reference.
        return (cf.optimizers.Adagrad(0.05, initial_accumulator_value=0.1),
                lambda p: torch.optim.Adagrad(p, lr=0.05, initial_accumulator_value=0.1, eps=0.0))
    if kind == "adadelta":  # the same rule and epsilon placement (inside both square roots)
        return (cf.optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6),
                lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6))
    if kind == "nadam":
        # torch's NAdam with momentum_decay=1 has Keras's schedule beta_1 (1 - 0.5 * 0.96^t)
        # (torch's default 4e-3 scales the exponent); both add eps to sqrt(v / (1 - b2^t)).
        return (cf.optimizers.Nadam(0.01),
                lambda p: torch.optim.NAdam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7,
                                            momentum_decay=1.0))
    if kind == "adamw":  # Adam's epsilon, rescaled every step as for "adam" below
        return (cf.optimizers.AdamW(0.01, weight_decay=0.05),
                lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7,
                                            weight_decay=0.05))
    if kind == "rmsprop":
        # torch adds eps to sqrt(v), Keras inside the root (sqrt(v + eps)); for the small v of
        # these gradients that moves the weights well beyond the tolerance (torch.optim.RMSprop
        # fails this test), so the reference is Keras's rule in float64 on torch's gradients.
        return (cf.optimizers.RMSprop(0.005),
                lambda p: KerasRule(p, R.rmsprop_step, 3, lr=0.005))
    if kind == "rmsprop_centered":  # the same, centered and with momentum
        return (cf.optimizers.RMSprop(0.005, momentum=0.5, centered=True),
                lambda p: KerasRule(p, R.rmsprop_step, 3, lr=0.005, momentum=0.5,
                                    centered=True))
    if kind == "adamax":
        # torch takes max(b2 u, |g| + eps), Keras max(b2 u, |g|) + eps: Keras's rule in float64.
        return (cf.optimizers.Adamax(0.01),
                lambda p: KerasRule(p, R.adamax_step, 2, stepped=True, lr=0.01))
    # Keras adds epsilon to sqrt(v) before the bias correction, torch after it:
    #   keras: lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)
    #   torch: lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps_t)
    # which are identical for eps_t = eps / sqrt(1-b2^t); the torch side sets that every step.
    return (cf.optimizers.Adam(0.01, epsilon=1e-7),
            lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7))


# Adaptive optimizers normalise the step by a running gradient scale, which magnifies the
# relative error of gradients near their rounding floor (see the test's docstring).
ADAPTIVE = {"adam", "adamw", "nadam", "adamax", "adagrad", "adadelta", "rmsprop",
            "rmsprop_centered"}


@pytest.mark.parametrize("variant", ["plain", "every_layer", "issue19"])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam", "adamw", "nadam",
                                 "adamax", "adagrad", "adadelta", "rmsprop", "rmsprop_centered"])
def test_training_steps_match_torch(variant, opt):
    """Identical initial weights and batches through STEPS updates give the same weights.

    Tolerance: cnnfast runs in float32, torch in float64, so the difference is cnnfast's
    rounding compounded over STEPS updates. Observed (AVX-512 machine): <= 2.5e-7 of the largest
    weight for SGD variants, 4e-6 for Adam and AdamW, 8e-6 for Adamax and Nadam, <= 8e-7 for
    RMSprop, Adagrad and Adadelta; the adaptive optimizers' normalised steps (m/sqrt(v), m/u)
    magnify the relative error of gradients near their rounding floor. Allowed: 2e-6 and 3e-5.
    """
    cf.set_seed(123)
    model = small_cnn(variant)
    cf_opt, torch_opt = make_optimizers(opt)
    model.compile(optimizer=cf_opt, loss="categorical_crossentropy")
    rng = np.random.default_rng(5)
    init = model.get_weights()
    # PReLU starts at ones (a linear layer); nudge it so its gradient matters.
    init = [w + rng.uniform(-0.3, 0.3, w.shape).astype(np.float32) * (w.ndim == 3) for w in init]
    model.set_weights(init)
    weights = [t64(w, grad=True) for w in init]
    topt = torch_opt(weights)
    batches = [(rng.standard_normal((8, 10, 10, 3)).astype(np.float32),
                np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]) for _ in range(STEPS)]
    for t, (xb, yb) in enumerate(batches, start=1):
        loss = model.train_on_batch(xb, yb)
        topt.zero_grad()
        ref_loss = F.cross_entropy(torch_forward(variant, weights, t64(xb)), t64(yb))
        ref_loss.backward()
        if opt in ("adam", "adamw"):
            topt.param_groups[0]["eps"] = 1e-7 / np.sqrt(1 - 0.999 ** t)
        topt.step()
        assert loss == pytest.approx(ref_loss.item(), rel=1e-4), f"loss at step {t}"
    tol = 3e-5 if opt in ADAPTIVE else 2e-6
    for i, (got, ref) in enumerate(zip(model.get_weights(), weights)):
        ref = ref.detach().numpy()
        scale = max(np.abs(ref).max(), 1.0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * scale,
                                   err_msg=f"{variant}/{opt}: weight {i} after {STEPS} steps")
    record("torch configurations: training runs")
    record("torch training steps compared", STEPS)
