"""Keras's utility functions: to_categorical and plot_model."""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np


def to_categorical(y: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels as float32, like ``keras.utils.to_categorical``.

    A trailing axis of size 1 is dropped first, so labels of shape ``(N,)`` and ``(N, 1)``
    (CIFAR-10's) both give ``(N, num_classes)``; in general ``(..., 1)`` or ``(...)`` gives
    ``(..., num_classes)``. ``num_classes`` defaults to ``max(y) + 1``.

    Where Keras would silently truncate or wrap, this raises ValueError: labels must be whole
    numbers in ``[0, num_classes)``.
    """
    arr = np.asarray(y)
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"to_categorical: labels must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise ValueError("to_categorical: labels must be whole numbers")
    labels = arr.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None:
        if labels.size == 0:
            raise ValueError("to_categorical: cannot infer num_classes from empty labels")
        num_classes = int(labels.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive integer, got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"to_categorical: labels must lie in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    out = np.zeros((labels.size, int(num_classes)), np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out.reshape(shape + (int(num_classes),))


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "?"
    return "(None, " + ", ".join(map(str, shape)) + ")"


def plot_model(model: Any, to_file: str | os.PathLike = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB",
               expand_nested: bool = False, dpi: int = 200, show_layer_activations: bool = False,
               show_trainable: bool = False) -> None:
    """Draw the model's layers as a diagram of boxes and arrows and save it (PNG by default).

    Each box names the layer and its type; ``show_shapes`` adds the input and output shapes
    (batch axis ``None``), ``show_dtype`` the dtype (always float32), ``show_layer_activations``
    the activation, ``show_trainable`` whether it trains. ``rankdir`` "TB" stacks the boxes
    top to bottom, "LR" left to right. Drawn with matplotlib (``pip install 'cnnfast[plot]'``),
    not Graphviz as Keras does. ``expand_nested`` has no effect (cnnfast models are flat).
    """
    from cnnfast._plotting import new_figure

    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model: rankdir must be 'TB' or 'LR', got {rankdir!r}")
    if not hasattr(model, "layers") or not hasattr(model, "shapes"):
        raise TypeError(f"plot_model: expected a cnnfast Sequential model, got {type(model).__name__}")
    if model.input_shape_ is None:
        raise ValueError("plot_model: the model's input shape is unknown; start it with "
                         "Input(shape) or input_shape=..., or call model.build(shape)")
    rows = model.shapes()
    nodes: list[list[str]] = []
    first = ["input_layer (InputLayer)" if show_layer_names else "InputLayer"]
    if show_shapes:
        first.append(f"output: {_shape_text(model.input_shape_)}")
    if show_dtype:
        first.append("dtype: float32")
    nodes.append(first)
    for layer, in_shape, out_shape in rows:
        kind = type(layer).__name__
        lines = [f"{layer.name} ({kind})" if show_layer_names else kind]
        if show_shapes:
            lines.append(f"input: {_shape_text(in_shape)}")
            lines.append(f"output: {_shape_text(out_shape)}")
        act = getattr(layer, "act", None)
        if show_layer_activations and act is not None:
            lines.append(f"activation: {act.kind}")
        if show_dtype:
            lines.append("dtype: float32")
        if show_trainable:
            lines.append(f"trainable: {bool(layer.trainable) and layer.num_params() > 0}")
        nodes.append(lines)

    # Layout in inches: box size from the longest text, fixed gap for the arrows.
    char_w, line_h, pad, gap = 0.085, 0.2, 0.12, 0.35
    box_w = max(len(line) for lines in nodes for line in lines) * char_w + 2 * pad
    heights = [len(lines) * line_h + 2 * pad for lines in nodes]
    if rankdir == "TB":
        width = box_w + 0.4
        height = sum(heights) + gap * (len(nodes) - 1) + 0.4
    else:
        width = len(nodes) * box_w + gap * (len(nodes) - 1) + 0.4
        height = max(heights) + 0.4
    fig = new_figure("plot_model", (width, height), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")

    from matplotlib.patches import FancyBboxPatch

    boxes = []  # (x0, y0, w, h) per node
    x, y = 0.2, height - 0.2
    for lines, h in zip(nodes, heights):
        if rankdir == "TB":
            x0, y0 = 0.2, y - h
            y = y0 - gap
        else:
            x0, y0 = x, height - 0.2 - h
            x = x0 + box_w + gap
        boxes.append((x0, y0, box_w, h))
        ax.add_patch(FancyBboxPatch((x0, y0), box_w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor="#eef3fb", edgecolor="#35507a", linewidth=1.0))
        for i, line in enumerate(lines):
            ax.text(x0 + box_w / 2, y0 + h - pad - (i + 0.5) * line_h, line, ha="center",
                    va="center", fontsize=9, family="monospace",
                    weight="bold" if i == 0 else "normal")
    for (ax0, ay0, aw, ah), (bx0, by0, bw, bh) in itertools.pairwise(boxes):
        if rankdir == "TB":
            start, end = (ax0 + aw / 2, ay0), (bx0 + bw / 2, by0 + bh)
        else:
            start, end = (ax0 + aw, ay0 + ah / 2), (bx0, by0 + bh / 2)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "-|>", "color": "#35507a", "lw": 1.0})
    fig.savefig(os.fspath(to_file), dpi=dpi)


__all__ = ["plot_model", "to_categorical"]
