"""Merge kernels (Add, Subtract, Multiply, Average, Maximum, Concatenate) against the float64
reference, finite differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from gradcheck import numerical_gradient

from cnnfast import ops

SHAPES = [(1,), (7, 5), (2, 9, 9, 3), (3, 33, 17, 40)]  # the last one spans several threads
COUNTS = {"add": [1, 2, 3], "subtract": [2], "multiply": [2, 3], "average": [2, 4],
          "maximum": [2, 3]}
CASES = [(op, n, shape) for op, ns in COUNTS.items() for n in ns for shape in SHAPES]


def inputs(rng, n, shape):
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    if n > 1:  # exact ties, where maximum's gradient rule matters
        xs[1].reshape(-1)[::5] = xs[0].reshape(-1)[::5]
    return xs


@pytest.mark.parametrize("op, n, shape", CASES)
def test_merge_matches_reference(op, n, shape, rng):
    xs = inputs(rng, n, shape)
    # fp32 sums/products of <= 4 terms of unit scale: a few ulps.
    np.testing.assert_allclose(ops.merge(xs, op), ref.merge_forward(xs, op), rtol=1e-6, atol=1e-6)
    dy = rng.standard_normal(shape).astype(np.float32)
    for got, want in zip(ops.merge_backward(dy, xs, op), ref.merge_backward(dy, xs, op)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", list(COUNTS))
def test_merge_backward_finite_differences(op, rng):
    n = COUNTS[op][-1]
    xs = [rng.standard_normal((3, 4, 5)).astype(np.float64) for _ in range(n)]
    if op == "maximum":  # values 0.05 apart, so no +-eps step crosses a kink
        xs = list((rng.permutation(n * 60) * 0.05 - 1.5).reshape(n, 3, 4, 5))
    dy = rng.standard_normal((3, 4, 5))
    grads = ops.merge_backward(dy, xs, op)
    for k, x in enumerate(xs):
        idx, num = numerical_gradient(lambda: float(np.sum(ops.merge(xs, op) * dy)), x)
        # Away from ties (random normals), eps 1e-2 central differences in fp32 (gradcheck.py).
        np.testing.assert_allclose(grads[k].reshape(-1)[idx], num, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("widths", [[1], [3, 5], [16, 1, 7], [64, 64, 32]])
def test_concatenate_matches_numpy_and_splits_back(widths, rng):
    xs = [rng.standard_normal((2, 5, 6, w)).astype(np.float32) for w in widths]
    out = ops.concatenate(xs)
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=-1))  # a copy: exact
    dy = rng.standard_normal(out.shape).astype(np.float32)
    for got, want in zip(ops.concatenate_backward(dy, widths),
                         np.split(dy, np.cumsum(widths)[:-1], axis=-1)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", list(COUNTS))
def test_merge_matches_torch(op, rng):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference (test extra)")
    xs = [rng.standard_normal((4, 6, 6, 8)).astype(np.float32) for _ in range(COUNTS[op][-1])]
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    if op == "subtract":
        out = ts[0] - ts[1]
    elif op == "maximum":
        out = torch.stack(ts).amax(0)  # no ties in random normals
    else:
        out = ts[0]
        for t in ts[1:]:
            out = out * t if op == "multiply" else out + t
        if op == "average":
            out = out / len(ts)
    dy = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(torch.tensor(dy))
    # Same fp32 operations in the same order, except torch's average divides where we multiply
    # by 1/n: one rounding apart.
    np.testing.assert_allclose(ops.merge(xs, op), out.detach().numpy(), rtol=1e-6, atol=1e-6)
    for got, t in zip(ops.merge_backward(dy, xs, op), ts):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda x: ops.merge([x, x[:, :2]], "add"), r"inputs\[1\] has shape \(3, 2\), inputs\[0\] \(3, 4\)"),
    (lambda x: ops.merge([x, x, x], "subtract"), "subtract takes 2"),
    (lambda x: ops.merge([x], "divide"), "unknown merge op 'divide'"),
    (lambda x: ops.merge(x, "add"), "expected a list of arrays"),
    (lambda x: ops.merge([], "add"), "needs at least one input"),
    (lambda x: ops.concatenate([x, x[:2]]), r"leading shape \(3,\)"),
    (lambda x: ops.concatenate_backward(x, [1, 2]), r"widths \[1, 2\] do not sum"),
])
def test_bad_merge_inputs_raise(call, message):
    x = np.zeros((3, 4), np.float32)
    with pytest.raises((ValueError, TypeError), match=message):
        call(x)


@pytest.mark.parametrize("shape", [(7, 5), (3, 33, 17, 40)])
def test_add_with_fused_relu_is_bit_identical_to_the_relu_kernels_apart(shape, rng):
    """The train plan's add + relu fusion (ResNet's join): the ReLU inside the join's forward,
    and its mask applied while the join hands dy to both inputs."""
    from cnnfast import _core
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    z, y, relu = np.empty_like(a), np.empty_like(a), np.empty_like(a)
    _core.merge_forward(z, [a, b], "add")
    _core.activation_forward(relu, z, "relu")
    _core.merge_forward(y, [a, b], "add", relu=True)
    np.testing.assert_array_equal(y, relu)
    dy = rng.standard_normal(shape).astype(np.float32)
    masked = np.empty_like(dy)
    _core.activation_backward(masked, z, relu, dy, "relu")
    da, db = np.empty_like(a), np.empty_like(a)
    _core.merge_backward([da, db], dy, [a, b], "add", relu_y=y)
    np.testing.assert_array_equal(da, masked)
    np.testing.assert_array_equal(db, masked)
    with pytest.raises(ValueError, match="only for op 'add'"):
        _core.merge_backward([da, db], dy, [a, b], "multiply", relu_y=y)
    with pytest.raises(ValueError, match="only for a 2-input add"):
        _core.merge_forward(z, [a, b], "multiply", relu=True)
    with pytest.raises(ValueError, match="only for a 2-input add"):
        _core.merge_forward(z, [a, b, b], "add", relu=True)
