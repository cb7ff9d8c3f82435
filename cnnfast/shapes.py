"""Output-size and padding arithmetic shared by the layers, the ops and the analyzer.

Sizes follow floor((n - f + 2p) / s) + 1, as Keras and PyTorch do; "same" padding gives
ceil(n / s) outputs with the odd padding row/column at the bottom/right (TensorFlow's rule).
"""

from __future__ import annotations

Padding = str | int | tuple[int, int]


# Window, stride and padding sizes must fit the kernels' int64 arithmetic and the model-file
# reader's limit (2**31 - 1, as for every dimension in docs/model-format.md).
MAX_WINDOW = 2**31 - 1


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence of ints to a (rows, cols) tuple of Python ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int,)) and not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if abs(int(v)) > MAX_WINDOW:
            raise ValueError(f"{name} must be at most {MAX_WINDOW}, got {value!r}")
    return int(a), int(b)


def conv_padding(n: int, f: int, stride: int, padding: Padding) -> tuple[int, int, int]:
    """Return (pad_before, pad_after, out_size) along one spatial axis.

    `padding` is "valid", "same", an int p (p zeros on both sides) or a pair (before, after).
    `pad_after` is what the formula adds; rows a stride never reaches are simply ignored.
    Raises ValueError when the sizes cannot work (non-positive sizes, kernel larger than
    the padded input).
    """
    if n <= 0 or f <= 0 or stride <= 0:
        raise ValueError(
            f"sizes must be positive: input {n}, kernel {f}, stride {stride}"
        )
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            before = after = 0
        elif mode == "same":
            out = -(-n // stride)
            total = max((out - 1) * stride + f - n, 0)
            before = total // 2
            after = total - before
        else:
            raise ValueError(f'padding must be "valid", "same", an int or a pair, got {padding!r}')
    else:
        before, after = pair(padding, "padding")
        if before < 0 or after < 0:
            raise ValueError(f"padding must be non-negative, got {padding!r}")
    padded = n + before + after
    if f > padded:
        raise ValueError(
            f"kernel size {f} is larger than the padded input size {padded} "
            f"(input {n}, padding {before}+{after})"
        )
    out = (padded - f) // stride + 1
    return before, after, out


def conv_output_size(n: int, f: int, stride: int = 1, padding: Padding = 0) -> int:
    """Output size of a convolution along one axis: floor((n - f + 2p) / s) + 1.

    >>> conv_output_size(227, 11, 4, 0)
    55
    >>> conv_output_size(7, 3, 3, 0)   # (7-3)/3 is not exact: the last row is ignored
    2
    """
    return conv_padding(n, f, stride, padding)[2]


def pool_output_size(n: int, pool: int, stride: int | None = None, padding: Padding = "valid") -> int:
    """Output size of a pooling window along one axis; stride defaults to the pool size (Keras)."""
    return conv_padding(n, pool, pool if stride is None else stride, padding)[2]


def is_exact(n: int, f: int, stride: int, padding: Padding) -> bool:
    """True when the stride tiles the padded input exactly (no trailing rows ignored)."""
    before, after, out = conv_padding(n, f, stride, padding)
    return (out - 1) * stride + f == n + before + after
