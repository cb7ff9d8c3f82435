"""Hostile and malformed input thrown at the public API and the file loaders.

Every case must end either in a correct result (inputs accepted by copying: other numeric
dtypes, non-contiguous, Fortran-order and read-only arrays) or in a Python exception whose
message names the problem; none may crash the interpreter, hang or leak. Calls that reach C++
with sizes or pointers the Python layer did not make (direct ``_core`` calls, the C API through
ctypes, huge dimensions) run in a child process, so a crash fails the test instead of killing
pytest; the child prints one line per case and must exit 0. Each case is counted
(tests/counts.py, printed in the pytest summary).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from counts import record

import cnnfast as cf
from cnnfast import _core, ops

L = cf.layers
PACKAGE = pathlib.Path(cf.__file__).resolve().parent
TESTS = pathlib.Path(__file__).resolve().parent


def _neutral_dir() -> str:
    import tempfile

    return tempfile.gettempdir()
ERRORS = (ValueError, TypeError, NotImplementedError, OverflowError, FloatingPointError,
          MemoryError, RuntimeError)


def expect_error(fn, *args, match: str | None = None, **kwargs) -> BaseException:
    """fn(*args) must raise one of ERRORS with a non-empty message (containing `match`)."""
    with pytest.raises(ERRORS) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert len(msg) >= 10, f"{fn.__name__}: unhelpful message {msg!r}"
    if match is not None:
        assert match.lower() in msg.lower(), f"{fn.__name__}: {msg!r} does not mention {match!r}"
    record("hostile inputs tried")
    return info.value


def run_child(code: str, timeout: float = 120) -> list[str]:
    """Run `code` in a fresh interpreter importing this cnnfast; it must exit 0 (no crash)."""
    # The cnnfast this test run imported (installed, or the in-place build), never the bare
    # source tree: `-c` would put the cwd first on sys.path, so run from a neutral directory.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), str(TESTS),
                                                      os.environ.get("PYTHONPATH", "")]))
    prelude = "import numpy as np, cnnfast as cf\nfrom cnnfast import _core, ops\n"
    source = prelude + CHILD_HELPERS + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", source], env=env, check=False, cwd=_neutral_dir(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"child crashed or failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout.splitlines()


# Shared by the child processes: run a case, print "ok <name>: <Exception>: <message>".
CHILD_HELPERS = """
import sys
ERRORS = (ValueError, TypeError, NotImplementedError, OverflowError, FloatingPointError,
          MemoryError, RuntimeError)
def case(name, fn, *args, **kwargs):
    print("start", name, flush=True)
    try:
        fn(*args, **kwargs)
    except ERRORS as e:
        msg = str(e).replace(chr(10), " ")
        assert len(msg) >= 10, (name, msg)
        print("ok", name, type(e).__name__, msg[:200], flush=True)
    else:
        print("accepted", name, flush=True)
"""


def child_results(lines: list[str], expect_all_raise: bool = True) -> int:
    started = [ln.split()[1] for ln in lines if ln.startswith("start ")]
    done = [ln for ln in lines if ln.startswith(("ok ", "accepted "))]
    assert len(started) == len(done), f"case {started[len(done)]} did not finish"
    if expect_all_raise:
        accepted = [ln for ln in done if ln.startswith("accepted")]
        assert not accepted, f"expected exceptions, these were accepted: {accepted}"
    record("hostile inputs tried", len(done))
    return len(done)


# -- ops: ranks, dtypes, memory layouts -----------------------------------------------------------

rng = np.random.default_rng(0)
X4 = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
W4 = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)
X2 = rng.standard_normal((3, 7)).astype(np.float32)
W2 = rng.standard_normal((7, 5)).astype(np.float32)

# name -> (function of one array x, a valid x): the op on the argument being abused.
UNARY_OPS = {
    "conv2d": (lambda x: ops.conv2d(x, W4, padding="same"), X4),
    "conv2d_backward": (lambda x: ops.conv2d_backward(x, W4, np.ones((2, 4, 3, 3)))[1], X4),
    "conv2d_w": (lambda w: ops.conv2d(X4, w), W4),
    "dense": (lambda x: ops.dense(x, W2), X2),
    "dense_w": (lambda w: ops.dense(X2, w), W2),
    "max_pool2d": (lambda x: ops.max_pool2d(x, 2), X4),
    "avg_pool2d": (lambda x: ops.avg_pool2d(x, 3, 1, "same"), X4),
    "max_pool2d_backward": (lambda x: ops.max_pool2d_backward(x, np.ones((2, 3, 2, 4)), 2), X4),
    "relu": (ops.relu, X2),
    "elu_backward": (lambda x: ops.elu_backward(x, X2), X2),
    "swish": (ops.swish, X4),
    "softmax": (ops.softmax, X2),
    "prelu": (lambda x: ops.prelu(x, np.full(7, 0.1)), X2),
    "lrn": (lambda x: ops.lrn(x, 2), X4),
    "softmax_cross_entropy": (lambda x: ops.softmax_cross_entropy(x, np.eye(3, 7))[1], X2),
    "sparse_softmax_cross_entropy": (lambda x: ops.sparse_softmax_cross_entropy(x, [0, 1, 6])[1], X2),
    "mse": (lambda x: ops.mse(x, X2)[1], X2),
}


def wrong_rank(x: np.ndarray, delta: int) -> np.ndarray:
    return x.reshape(x.shape + (1,)) if delta > 0 else x.reshape(x.shape[:-2] + (-1,))


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_ops_refuse_wrong_ranks(name):
    fn, x = UNARY_OPS[name]
    for bad in (wrong_rank(x, +1), np.float32(1.0), np.zeros((2,) * 6, np.float32)):
        if name in ("relu", "elu_backward", "swish", "lrn") and bad.ndim >= 1 and \
                bad.shape[:x.ndim] == x.shape:
            continue  # element-wise ops take any rank (LRN: any rank >= 1)
        try:
            fn(bad)
        except ERRORS as e:
            assert len(str(e)) >= 10
            record("hostile inputs tried")
        else:
            # Only element-wise ops may accept another rank, and then must keep the shape.
            assert name in ("relu", "elu_backward", "swish", "lrn", "softmax"), (name, bad.shape)
            record("hostile inputs tried")


DTYPES = [np.int32, np.int64, np.uint8, np.float16, np.float64, bool, object, np.complex64, "U3"]


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_ops_dtypes_are_converted_or_refused(name):
    fn, x = UNARY_OPS[name]
    for dtype in DTYPES:
        if np.dtype(dtype).kind in "iub":
            arg = np.clip(np.round(x * 3), 0 if np.dtype(dtype).kind in "ub" else -9, 9)
            arg = arg.astype(dtype)
        elif np.dtype(dtype).kind in "U":
            arg = x.astype("U3")
        else:
            arg = x.astype(dtype)
        try:
            got = fn(arg)
        except ERRORS as e:
            # Refused: must say why (the dtype) - bool/object/complex/str are not real numbers.
            assert "dtype" in str(e) or "numeric" in str(e) or "integer" in str(e), (name, dtype, e)
        else:
            # Accepted by copying: the result must equal the float32 conversion's.
            assert np.dtype(dtype).kind in "iuf", f"{name} accepted dtype {np.dtype(dtype)}"
            np.testing.assert_array_equal(got, fn(np.asarray(arg, np.float32)))
        record("hostile inputs tried")


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_ops_accept_noncontiguous_fortran_and_readonly(name):
    fn, x = UNARY_OPS[name]
    ref = fn(x.copy())
    wide = np.repeat(x, 2, axis=-1)[..., ::2]  # a strided view with x's values
    fortran = np.asfortranarray(x)
    readonly = x.copy()
    readonly.setflags(write=False)
    for arg in (wide, fortran, readonly):
        np.testing.assert_array_equal(fn(arg), ref)
        record("hostile inputs tried")
    assert not readonly.flags.writeable  # never written through


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_ops_zero_sized_batch(name):
    fn, x = UNARY_OPS[name]
    if name.endswith("_w") or name.startswith(("softmax_cross", "sparse_softmax", "mse",
                                               "conv2d_backward", "max_pool2d_backward")):
        pytest.skip("the batch axis is tied to another argument's")
    empty = x[:0]
    try:
        out = fn(empty)
    except ERRORS as e:
        assert len(str(e)) >= 10
    else:
        assert out.shape[0] == 0
    record("hostile inputs tried")


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_ops_nan_and_inf_propagate_without_crashing(name):
    fn, x = UNARY_OPS[name]
    for value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad.reshape(-1)[:: max(1, bad.size // 5)] = value
        try:
            out = fn(bad)
        except ERRORS as e:  # losses may refuse non-finite input
            assert len(str(e)) >= 10
        else:
            assert out.shape == fn(x).shape
        record("hostile inputs tried")


def test_ops_mismatched_shapes_raise_with_shapes():
    cases = [
        (ops.conv2d, X4, W4[:, :, :3]),            # channels 4 vs kernel 3
        (ops.conv2d, X4, np.zeros((9, 9, 4, 2))),  # kernel larger than the input
        (ops.conv2d, X4, W4, np.zeros(5)),         # bias length
        (ops.dense, X2, W2[:6]),
        (ops.dense, X2, W2, np.zeros(6)),
        (ops.prelu, X2, np.zeros(5)),
        (ops.softmax_cross_entropy, X2, np.eye(4, 7)),
        (ops.mse, X2, X2[:, :3]),
        (ops.max_pool2d_backward, X4, np.ones((2, 2, 2, 4))),
        (ops.sparse_softmax_cross_entropy, X2, [0, 1, 7]),    # label out of range
        (ops.sparse_softmax_cross_entropy, X2, [0, -1, 2]),
        (ops.sparse_softmax_cross_entropy, X2, [0.5, 1, 2]),  # not integral
        (ops.sparse_softmax_cross_entropy, X2, [0, 1]),       # length
    ]
    for fn, *args in cases:
        expect_error(fn, *args)
    for kw in [{"strides": 0}, {"strides": (1, -1)}, {"padding": "bogus"}, {"padding": -1},
               {"padding": (5, 0)}, {"groups": 0}, {"groups": 3}, {"groups": 2.0},
               {"strides": (1, 2, 3)}, {"padding": None}]:
        expect_error(ops.conv2d, X4, W4, **kw)
    for kw in [{"pool_size": 0}, {"pool_size": (2, 0)}, {"pool_size": 99}, {"strides": 0},
               {"padding": (2, 0)}, {"padding": "full"}]:
        expect_error(ops.max_pool2d, X4, **kw)
        expect_error(ops.avg_pool2d, X4, **kw)
    for kw in [{"depth_radius": -1}, {"bias": 0.0}, {"alpha": -1.0}, {"depth_radius": 1.5}]:
        expect_error(ops.lrn, X4, **kw)


def test_optimizer_ops_refuse_bad_state():
    w = np.zeros(5, np.float32)
    ro = np.zeros(5, np.float32)
    ro.setflags(write=False)
    expect_error(ops.sgd_update, ro, np.ones(5))                       # read-only weights
    expect_error(ops.sgd_update, w.astype(np.float64), np.ones(5))     # not float32
    expect_error(ops.sgd_update, np.zeros((5, 2), np.float32).T, np.ones((2, 5)))  # strided
    expect_error(ops.sgd_update, w, np.ones(4))
    expect_error(ops.sgd_update, w, np.ones(5), momentum=0.9)          # no velocity
    expect_error(ops.adam_update, w, np.ones(5), np.zeros(5, np.float32), np.zeros(5, np.float32), 0)
    expect_error(ops.adam_update, w, np.ones(5), np.zeros(4, np.float32), np.zeros(5, np.float32), 1)


# -- direct _core calls: the bindings' own checks (child process) -------------------------------

def test_core_bindings_refuse_bad_buffers_in_a_child_process():
    lines = run_child("""
    f = np.float32
    x = np.ones((2, 5, 5, 3), f); w = np.ones((3, 3, 3, 4), f); y = np.empty((2, 3, 3, 4), f)
    case("conv y wrong shape", _core.conv2d_forward, np.empty((2, 3, 3, 5), f), x, w, None)
    case("conv x float64", _core.conv2d_forward, y, x.astype(np.float64), w, None)
    ro = np.empty((2, 3, 3, 4), f); ro.setflags(write=False)
    case("conv y read-only", _core.conv2d_forward, ro, x, w, None)
    case("conv y strided", _core.conv2d_forward, np.empty((2, 3, 3, 8), f)[..., ::2], x, w, None)
    case("conv x strided", _core.conv2d_forward, y, np.ones((2, 5, 5, 6), f)[..., ::2], w, None)
    case("conv stride 0", _core.conv2d_forward, y, x, w, None, 0, 1)
    case("conv stride -1", _core.conv2d_forward, y, x, w, None, -1, 1)
    case("conv negative pad", _core.conv2d_forward, y, x, w, None, 1, 1, -1, 0)
    case("conv pad >= kernel", _core.conv2d_forward, y, x, w, None, 1, 1, 3, 3)
    case("conv huge pad", _core.conv2d_forward, y, x, w, None, 1, 1, 2**62, 0)
    case("conv huge stride", _core.conv2d_forward, y, x, w, None, 2**62, 1)
    case("conv groups 0", _core.conv2d_forward, y, x, w, None, 1, 1, 0, 0, 0)
    case("conv groups 5", _core.conv2d_forward, y, x, w, None, 1, 1, 0, 0, 5)
    case("conv groups -3", _core.conv2d_forward, y, x, w, None, 1, 1, 0, 0, -3)
    case("conv bias length", _core.conv2d_forward, y, x, w, np.ones(3, f))
    case("conv None x", _core.conv2d_forward, y, None, w, None)
    case("conv list x", _core.conv2d_forward, y, [[1.0]], w, None)
    case("conv activation", _core.conv2d_forward, y, x, w, None, activation="bogus")
    case("conv bwd data shape", _core.conv2d_backward_data, x[:, :4], y, w)
    case("conv bwd weights shape", _core.conv2d_backward_weights, w[:2], None, x, y)
    p = np.empty((2, 2, 2, 3), f); a = np.empty((2, 2, 2, 3), np.int32)
    case("maxpool argmax dtype", _core.max_pool2d_forward, p, a.astype(np.int64), x)
    case("maxpool window 0", _core.max_pool2d_forward, p, a, x, 0, 2)
    case("maxpool stride 0", _core.max_pool2d_forward, p, a, x, 2, 2, 0, 2)
    case("maxpool wrong out", _core.max_pool2d_forward, np.empty((2, 3, 2, 3), f), a, x)
    bad = np.full((2, 2, 2, 3), 2**30, np.int32)
    case("maxpool bwd argmax out of range", _core.max_pool2d_backward, np.empty_like(x),
         np.ones_like(p), bad)
    case("avgpool huge pad", _core.avg_pool2d_forward, p, x, 2, 2, 2, 2, 2**40, 0)
    case("dense wrong shape", _core.dense_forward, np.empty((2, 5), f), np.ones((2, 3), f),
         np.ones((4, 5), f), None)
    case("dense_backward shape", _core.dense_backward, None, np.empty((3, 5), f), None,
         np.ones((2, 3), f), np.ones((3, 5), f), np.ones((2, 4), f))
    case("activation kind", _core.activation_forward, np.empty(4, f), np.ones(4, f), "bogus", 1.0)
    case("activation sizes", _core.activation_forward, np.empty(3, f), np.ones(4, f), "relu", 1.0)
    case("prelu alpha size", _core.prelu_forward, np.empty(6, f), np.ones(6, f), np.ones(4, f))
    case("prelu alpha empty", _core.prelu_forward, np.empty(6, f), np.ones(6, f), np.ones(0, f))
    case("softmax shapes", _core.softmax_forward, np.empty((2, 3), f), np.ones((3, 2), f))
    case("softmax_xent label range", _core.softmax_xent, np.empty((2, 3), f), None,
         np.ones((2, 3), f), np.array([0, 3], np.int32))
    case("softmax_xent label negative", _core.softmax_xent, np.empty((2, 3), f), None,
         np.ones((2, 3), f), np.array([-1, 0], np.int32))
    case("lrn radius", _core.lrn_forward, np.empty((2, 4), f), None, np.ones((2, 4), f), -1,
         1.0, 1e-4, 0.75)
    case("sgd shapes", _core.sgd_update, np.zeros(4, f), np.ones(3, f), None, 0.1, 0.0, False, 0.0)
    case("adam step 0", _core.adam_update, np.zeros(4, f), np.ones(4, f), np.zeros(4, f),
         np.zeros(4, f), 0, 0.1, 0.9, 0.999, 1e-7, 0.0)
    case("dropout rate", _core.dropout_forward, np.empty(4, f), np.empty(4, np.uint8),
         np.ones(4, f), 1.5, 0)
    case("threads", _core.set_num_threads, 2**40)
    """)
    assert child_results(lines) >= 40


# -- layers, models: configs, shapes, labels, non-finite values ---------------------------------

BAD_LAYERS = [
    lambda: L.Conv2D(0, 3), lambda: L.Conv2D(4, 0), lambda: L.Conv2D(4, 3, strides=0),
    lambda: L.Conv2D(4, (3, 3, 3)), lambda: L.Conv2D(4, 3, padding="full"),
    lambda: L.Conv2D(4, 3, padding=-1), lambda: L.Conv2D(4, 3, groups=3),
    lambda: L.Conv2D(4, 3, groups=0), lambda: L.Conv2D(4.5, 3), lambda: L.Conv2D("4", 3),
    lambda: L.Conv2D(True, 3), lambda: L.Conv2D(4, 3, activation="gelu"),
    lambda: L.Conv2D(4, 3, dilation_rate=0), lambda: L.Conv2D(4, 3, data_format="channels_first"),
    lambda: L.Conv2D(4, 3, bogus=1), lambda: L.Dense(0), lambda: L.Dense(-3),
    lambda: L.Dense(2.5), lambda: L.Dense(None), lambda: L.Dense(4, activation=3),
    lambda: L.MaxPooling2D(0), lambda: L.MaxPooling2D((2, -1)), lambda: L.AveragePooling2D(2, 0),
    lambda: L.MaxPooling2D(2, padding="full"), lambda: L.Dropout(1.0), lambda: L.Dropout(-0.1),
    lambda: L.Dropout("0.5"), lambda: L.Dropout(0.5, seed=1.5), lambda: L.Activation("bogus"),
    lambda: L.Activation(3), lambda: L.ELU("a"), lambda: L.Softmax(axis=1),
    lambda: L.LocalResponseNormalization(-1), lambda: L.LocalResponseNormalization(2, bias=0),
    lambda: L.LocalResponseNormalization(2, alpha=float("nan")),
    lambda: L.LocalResponseNormalization(2, beta=float("inf")), lambda: L.Input(()),
    lambda: L.Input((0, 3)), lambda: L.Input((-1, 3)), lambda: L.Input((2.5,)),
    lambda: L.Input(None), lambda: L.PReLU(bogus=1),
    lambda: cf.optimizers.SGD(float("nan")), lambda: cf.optimizers.SGD(-1.0),
    lambda: cf.optimizers.SGD(0.1, momentum=2.0), lambda: cf.optimizers.Adam(beta_1=1.0),
    lambda: cf.optimizers.Adam(epsilon=0.0), lambda: cf.optimizers.get("ftrl"),
    lambda: cf.optimizers.RMSprop(rho=float("nan")), lambda: cf.optimizers.Adagrad(epsilon=-1),
    lambda: cf.optimizers.Lion(beta_2=1.5), lambda: cf.optimizers.Nadam(clipnorm=float("inf")),
    lambda: cf.optimizers.SGD(global_clipnorm=0.0),
    lambda: cf.optimizers.Adam(cf.optimizers.schedules.CosineDecay(0.1, -5)),
    lambda: cf.optimizers.deserialize({"class_name": "SGD", "config": {"bogus": 1}}),
    lambda: cf.optimizers.deserialize({"class_name": "SGD", "config": {
        "learning_rate": {"class_name": "Bogus", "config": {}}}}),
    lambda: cf.optimizers.get("bogus"), lambda: cf.optimizers.get(None),
    lambda: cf.losses.get("bogus"), lambda: cf.Sequential([1, 2]),
    lambda: cf.layers.deserialize({"class_name": "Conv2D"}),
    lambda: cf.layers.deserialize({"class_name": "Bogus", "config": {}}),
    lambda: cf.layers.deserialize({"class_name": "Dense", "config": []}),
    lambda: cf.layers.deserialize({"class_name": "Dense", "config": {"units": "x"}}),
    lambda: cf.layers.deserialize({"class_name": "Dense", "config": {"units": 2, "x": 1}}),
    lambda: cf.layers.deserialize({"class_name": "Dense",
                                   "config": {"units": 2, "trainable": "yes"}}),
    lambda: cf.saving.model_from_config({"input_shape": [3], "layers": []}),
    lambda: cf.saving.model_from_config({"input_shape": [0], "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}),
    lambda: cf.saving.model_from_config({"input_shape": [4, 4, 3], "layers": [
        {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": [9, 9]}}]}),
    lambda: cf.saving.model_from_config([]),
]


def test_malformed_layer_and_model_configs_raise():
    for i, make in enumerate(BAD_LAYERS):
        try:
            expect_error(make)
        except BaseException as e:  # noqa: BLE001 - pytest.fail is a BaseException
            raise AssertionError(f"BAD_LAYERS[{i}]: {e}") from None


def test_layer_build_with_huge_or_bad_input_shapes():
    """Shapes that do not fit, or whose sizes overflow 64-bit products, are refused or (shape
    arithmetic only, in Python integers) computed exactly; nothing allocates terabytes."""
    expect_error(L.Conv2D(4, 3).build, (2, 2, 3))           # kernel larger than input
    expect_error(L.Conv2D(4, 3).build, (8, 8))              # wrong rank
    expect_error(L.Conv2D(4, 3, groups=2).build, (8, 8, 3))  # channels not divisible
    expect_error(L.MaxPooling2D(3).build, (2, 2, 1))
    expect_error(L.PReLU(shared_axes=[5]).build, (4, 4, 3))
    expect_error(L.PReLU(shared_axes=[3]).build, (4, 4, 3))
    expect_error(L.Dense(4).build, ())
    # Huge claimed inputs: the analyzer and the shape formulas work in exact Python integers.
    big = cf.Sequential([L.Input((2**20, 2**20, 3)), L.Conv2D(8, 3, padding="same"),
                         L.MaxPooling2D(2), L.Flatten()])
    report = cf.analyze(big, optimizer="adam", batch_size=64)
    assert report.totals["flops_forward_per_image"] > 2**40
    record("hostile inputs tried")
    assert L.Conv2D(2, 1).output_shape((2**31, 2**31, 2**31)) == (2**31, 2**31, 2)
    record("hostile inputs tried")
    # Weights that cannot be allocated: a clear error, not a crash.
    expect_error(L.Dense(2**62).build, (16,))
    expect_error(L.Dense(16).build, (2**62,))
    expect_error(L.Conv2D(2**40, 3).build, (8, 8, 2**30))


def test_huge_shapes_through_the_executor_in_a_child_process():
    """Zero-sample batches with shapes whose element counts overflow int64: the C++ inference
    network is built for them (predict) and must refuse, not wrap around."""
    lines = run_child("""
    L = cf.layers
    # Zero-sample arrays NumPy can describe (< 2^63 bytes), more than 2^40 elements per sample.
    for shape in [(2**21, 2**21, 1), (2**41,)]:
        layers = [L.Input(shape)] + ([L.Conv2D(2, 1), L.MaxPooling2D(2), L.Flatten()]
                                     if len(shape) == 3 else [L.Activation("relu")])
        model = cf.Sequential(layers)
        case(f"predict_{len(shape)}d", model.predict, np.empty((0,) + shape, np.float32))
    # Shapes whose element count wraps int64 (reachable from a model file's input_shape).
    import json

    def network(shape):
        flatten = {"class_name": "Flatten", "config": {"name": "f"}}
        config = {"input_shape": list(shape), "layers": [flatten]}
        return _core.Network.from_config(json.dumps(config), {})

    for shape in [(2**31 - 1, 2**31 - 1, 3), (2**40, 2**40, 1), (2**62, 4, 1), (2**63 - 1, 2)]:
        case(f"network_{shape[0]}", network, shape)
    case("network_empty", network, [])
    case("network_negative", network, [3, -1])
    """)
    child_results(lines, expect_all_raise=False)
    # The constructor itself must refuse overflowing sizes.
    refused = [ln for ln in lines if ln.startswith("ok network")]
    assert len(refused) == 6, lines


def small_model(loss="sparse_categorical_crossentropy"):
    cf.set_seed(0)
    model = cf.Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"),
                           L.Flatten(), L.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    return model


def test_fit_evaluate_predict_refuse_bad_data():
    model = small_model()
    x = np.random.default_rng(0).random((10, 6, 6, 2)).astype(np.float32)
    y = np.arange(10) % 4
    expect_error(model.fit, x, y[:9], verbose=0)                   # lengths
    expect_error(model.fit, x[:0], y[:0], verbose=0)               # empty
    expect_error(model.fit, x, y + 4, verbose=0, match="label")    # out of range
    expect_error(model.fit, x, y - 1, verbose=0)                   # negative
    expect_error(model.fit, x, y + 0.5, verbose=0)                 # not integral
    expect_error(model.fit, x, np.full(10, np.nan), verbose=0)
    expect_error(model.fit, x, y.astype(str), verbose=0)
    expect_error(model.fit, x[..., :1], y, verbose=0, match="shape")
    expect_error(model.fit, x[0], y, verbose=0)
    expect_error(model.fit, x.astype(object), y, verbose=0)
    expect_error(model.fit, x.astype(np.complex64), y, verbose=0)
    expect_error(model.fit, x.astype("U4"), y, verbose=0)
    for bs in (0, -1, 2.5, True, "8"):
        expect_error(model.fit, x, y, batch_size=bs, verbose=0)
    expect_error(model.fit, x, y, epochs=-1, verbose=0)
    expect_error(model.fit, x, y, validation_split=1.0, verbose=0)
    expect_error(model.fit, x, y, validation_data=(x, y[:3]), verbose=0)
    expect_error(model.fit, x, y, validation_data=x, verbose=0)
    expect_error(model.evaluate, x, y[:3], verbose=0)
    expect_error(model.evaluate, x[:0], y[:0], verbose=0)
    expect_error(model.predict, x, batch_size=0)
    expect_error(model.predict, x[..., :1])
    expect_error(model.predict, np.float32(3.0))
    expect_error(model.train_on_batch, x[:0], y[:0])
    expect_error(model.set_weights, [np.zeros(3)])
    expect_error(model.set_weights, [np.zeros((1, 1))] * len(model.get_weights()))
    onehot = small_model("categorical_crossentropy")
    expect_error(onehot.fit, x, np.eye(5)[y], verbose=0)           # 5 classes for 4 outputs
    expect_error(onehot.fit, x, y, verbose=0)                      # sparse for one-hot loss
    # Accepted by copying: float64, Fortran-order, read-only, strided, int pixels.
    ref = model.predict(x)
    ro = x.copy()
    ro.setflags(write=False)
    for arg in (x.astype(np.float64), np.asfortranarray(x), ro, np.repeat(x, 2, 0)[::2]):
        np.testing.assert_array_equal(model.predict(arg), ref)
        record("hostile inputs tried")
    model.fit(ro, y.astype(np.uint8), epochs=1, batch_size=4, verbose=0)
    model.fit(np.asfortranarray(x), y.astype(np.float32), epochs=1, batch_size=3, verbose=0)
    record("hostile inputs tried", 2)
    assert model.predict(x[:0]).shape == (0, 4)
    record("hostile inputs tried")


def test_non_finite_inputs_and_weights():
    model = small_model()
    x = np.random.default_rng(0).random((8, 6, 6, 2)).astype(np.float32)
    y = np.arange(8) % 4
    before = model.get_weights()
    for value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[3, 2, 2, 1] = value
        expect_error(model.fit, bad, y, epochs=1, batch_size=8, verbose=0, match="non-finite")
        for w0, w1 in zip(before, model.get_weights()):
            np.testing.assert_array_equal(w0, w1)  # not updated
        out = model.predict(bad)
        assert np.isfinite(out[[0, 1, 2, 4]]).all()  # other samples unaffected
        record("hostile inputs tried")
    # NaN weights: predictions are NaN (no crash); training refuses with a clear error.
    model.set_weights([np.full_like(w, np.nan) for w in before])
    assert np.isnan(model.predict(x)).all()
    record("hostile inputs tried")
    expect_error(model.fit, x, y, epochs=1, verbose=0, match="non-finite")
    big = [np.full_like(w, 3e38) for w in before]
    model.set_weights(big)
    out = model.predict(x)  # overflows to inf/nan inside; must not crash
    assert out.shape == (8, 4)
    record("hostile inputs tried")


# -- files: models, IDX, CIFAR ------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "m.cnnfast"
    m = small_model()
    m.fit(np.zeros((4, 6, 6, 2), np.float32), np.arange(4) % 4, epochs=1, verbose=0)
    m.save(path)
    return path.read_bytes()


def corruptions(data: bytes, rng: np.random.Generator, count: int):
    """Truncations, bit flips, byte overwrites, random bytes and length-field edits."""
    n = len(data)
    yield "empty", b""
    yield "random 100", rng.bytes(100)
    yield "random same size", rng.bytes(n)
    yield "zeros", bytes(n)
    for cut in sorted(set(rng.integers(0, n, count // 4).tolist()) | {1, 7, 8, 9, n - 1}):
        yield f"truncated at {cut}", data[:cut]
    for _ in range(count // 2):
        b = bytearray(data)
        for pos in rng.integers(0, n, rng.integers(1, 4)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        yield "bit flips", bytes(b)
    for _ in range(count // 4):
        b = bytearray(data)
        pos = int(rng.integers(0, min(n, 64)))
        b[pos] = int(rng.integers(0, 256))
        yield f"byte {pos} overwritten", bytes(b)
    yield "appended", data + b"\0" * 7
    yield "doubled", data + data


def test_corrupt_model_files_raise_value_error(tmp_path, model_bytes):
    rng = np.random.default_rng(1)
    path = tmp_path / "bad.cnnfast"
    loaded = 0
    for what, data in corruptions(model_bytes, rng, 200):
        path.write_bytes(data)
        try:
            cf.load_model(path)
            loaded += 1  # a flip inside a float's bytes is still a valid file
        except ValueError as e:
            assert str(path) in str(e) and len(str(e)) > len(str(path)) + 10, (what, e)
        record("hostile inputs tried")
    assert loaded < 200  # most corruptions are detected


def test_corrupt_dataset_files_raise_value_error(tmp_path):
    from cnnfast.datasets import cifar, idx

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    good_idx = header + images.tobytes()
    np.testing.assert_array_equal(idx.parse_idx(good_idx), images)
    record_bytes = bytes([3]) + bytes(range(256)) * 12
    good_cifar = record_bytes * 3
    for good, parse, fname in [(good_idx, idx.parse_idx, "f.idx"),
                               (good_cifar, cifar.parse_cifar10_batch, "f.bin")]:
        for what, data in corruptions(good, rng, 120):
            try:
                parse(data, fname)
            except ValueError as e:
                assert fname in str(e), (what, e)
            record("hostile inputs tried")
    # Headers claiming huge shapes are refused before allocating anything.
    for dims in [(2**32 - 1,) * 3, (2**31, 2**31), (0xFFFFFFFF,)]:
        h = bytes([0, 0, 0x0D, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        expect_error(idx.parse_idx, h + b"\0" * 64, "huge.idx", match="huge.idx")
    # gzip-wrapped garbage
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + rng.bytes(200))
    expect_error(idx.read_idx, gz, match=str(gz))


def test_corrupt_model_files_through_the_c_api_in_a_child_process(tmp_path, model_bytes):
    lib = PACKAGE / "lib" / "libcnnfast.so"
    if not lib.exists():
        pytest.skip(f"{lib} not built (./dev/build.sh)")
    rng = np.random.default_rng(3)
    folder = tmp_path / "files"
    folder.mkdir()
    cases = list(corruptions(model_bytes, rng, 200))
    for i, (_, data) in enumerate(cases):
        (folder / f"{i:04d}.cnnfast").write_bytes(data)
    lines = run_child(f"""
    import ctypes, pathlib
    lib = ctypes.CDLL({str(lib)!r})
    lib.cnnfast_model_load.restype = ctypes.c_void_p
    lib.cnnfast_last_error.restype = ctypes.c_char_p
    lib.cnnfast_model_free.argtypes = [ctypes.c_void_p]
    lib.cnnfast_model_input_size.argtypes = [ctypes.c_void_p]
    lib.cnnfast_model_input_size.restype = ctypes.c_int64
    lib.cnnfast_model_output_size.argtypes = [ctypes.c_void_p]
    lib.cnnfast_model_output_size.restype = ctypes.c_int64
    lib.cnnfast_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                          ctypes.c_void_p]
    for path in sorted(pathlib.Path({str(folder)!r}).iterdir()):
        m = lib.cnnfast_model_load(str(path).encode())
        if m:
            n_in, n_out = lib.cnnfast_model_input_size(m), lib.cnnfast_model_output_size(m)
            x = np.zeros(n_in, np.float32); y = np.zeros(n_out, np.float32)
            rc = lib.cnnfast_model_predict(m, x.ctypes.data, 1, y.ctypes.data)
            lib.cnnfast_model_free(m)
            print("loaded", path.name, rc, flush=True)
        else:
            msg = lib.cnnfast_last_error().decode(errors="replace")
            assert path.name in msg and len(msg) > len(str(path)) + 10, msg
            print("refused", path.name, msg[:100], flush=True)
    print("done", flush=True)
    """)
    assert lines[-1] == "done"
    results = [ln for ln in lines if ln.startswith(("loaded", "refused"))]
    assert len(results) == len(cases)
    assert sum(ln.startswith("refused") for ln in results) > len(cases) // 2
    record("hostile inputs tried", len(cases))


# -- leaks --------------------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not pathlib.Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_failing_calls_do_not_leak(tmp_path, model_bytes):
    """Each failing call repeated thousands of times: resident memory must stay flat (a leak of
    even 100 bytes per call would grow it by > 300 KB over 3000 calls; we allow 2 MB of
    allocator noise)."""
    bad_file = tmp_path / "bad.cnnfast"
    bad_file.write_bytes(model_bytes[:len(model_bytes) // 2])
    x = np.ones((2, 5, 5, 3), np.float32)
    w = np.ones((3, 3, 3, 4), np.float32)
    y_bad = np.empty((2, 3, 3, 5), np.float32)
    model = small_model()
    calls = {
        "core conv2d invalid_argument": lambda: _core.conv2d_forward(y_bad, x, w, None),
        "ops.conv2d ValueError": lambda: ops.conv2d(x, w[:, :, :2]),
        "load_model truncated": lambda: cf.load_model(bad_file),
        "fit label out of range": lambda: model.fit(np.zeros((2, 6, 6, 2)), [0, 9], verbose=0),
        "Network bad step": lambda: _core.Network.from_config(
            '{"input_shape": [4, 4, 3], "layers": [{"class_name": "Dense", "config": '
            '{"name": "d", "units": 5}}]}', {"d/kernel": w}),
    }
    for name, fn in calls.items():
        def run(k, fn=fn):
            for _ in range(k):
                try:
                    fn()
                except ERRORS:
                    pass
        run(300)  # warm-up: caches, interned strings, allocator pools
        before = rss_bytes()
        run(3000)
        grown = rss_bytes() - before
        assert grown < 2 * 2**20, f"{name}: RSS grew by {grown / 2**20:.1f} MiB over 3000 calls"
        record("failing calls repeated for the leak check", 3300)


def test_window_sizes_beyond_the_file_format_limit_are_refused():
    """A pool of 2**64 with "same" padding once loaded in Python (the C reader refused it) and
    then failed in the kernel call: found by tests/fuzz/fuzz_parsers.py."""
    L = cf.layers
    for make in (lambda: L.AveragePooling2D(2**64, strides=2, padding="same"),
                 lambda: L.MaxPooling2D(2, strides=2**31),
                 lambda: L.Conv2D(4, (3, 2**40)),
                 lambda: L.Conv2D(4, 3, padding=(2**33, 0))):
        with pytest.raises(ValueError, match="at most 2147483647"):
            make()
