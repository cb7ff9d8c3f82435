"""Seeing inside a CNN: the lecture's hand-made filters, learned filters, feature maps and
attribution maps (saliency, SmoothGrad, Grad-CAM, occlusion), on the model API and the same
kernels that train it.

>>> from cnnfast import inside
>>> inside.apply_filter(image, "vertical_edge")          # cross-correlation, as in CNNs
>>> inside.grad_cam(model, x_test[0])                     # (H, W) in [0, 1]

Gradients with respect to the input come from the layers' own backward passes (the walk
below); the score of a class is its logit, the input of the final softmax, as in Simonyan et
al. (2014) and Selvaraju et al. (2017).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnfast import callbacks as callbacks_module
from cnnfast.layers import BatchNormalization, Conv2D, Dropout, Layer
from cnnfast.ops.conv import conv2d

__all__ = [
    "KERNELS", "TrainingDiagnostics", "apply_filter", "conv_layers", "feature_maps",
    "filter_grid", "filter_tiles", "grad_cam", "input_gradient", "layer_outputs",
    "load_diagnostics", "occlusion", "overlay", "saliency", "save_png", "smoothgrad",
    "top_activating",
]

# -- the lecture's filters ------------------------------------------------------------------

_KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "vertical_edge": [[1, 0, -1], [1, 0, -1], [1, 0, -1]],
    "horizontal_edge": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "laplacian_4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian_8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": [[1 / 9] * 3] * 3,
    "gaussian_blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
}
#: Named 3x3 kernels of the classic lectures (float32, read-only).
KERNELS: dict[str, np.ndarray] = {}
for _name, _rows in _KERNELS.items():
    KERNELS[_name] = np.array(_rows, np.float32)
    KERNELS[_name].setflags(write=False)


def apply_filter(image: Any, kernel: Any, stride: int = 1, padding: int | str = 0) -> np.ndarray:
    """Slide a 2-D kernel over an image (cross-correlation, as "convolution" in CNNs).

    Parameters
    ----------
    image : array (H, W) grayscale or (H, W, C) colour
        Any real values; an RGB image is filtered channel by channel.
    kernel : array (KH, KW) or a name in :data:`KERNELS`
    stride : int
    padding : int, "valid" or "same"
        Zero padding on each side (an int smaller than the kernel), or the Keras names.

    Returns
    -------
    float32 array (OH, OW) for a grayscale image, (OH, OW, C) for a colour one, with
    OH = (H + 2 padding - KH) // stride + 1.

    Examples
    --------
    >>> img = np.zeros((6, 6)); img[:, :3] = 10
    >>> apply_filter(img, "vertical_edge")[0]
    array([ 0., 30., 30.,  0.], dtype=float32)
    """
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"apply_filter: unknown kernel {kernel!r}; known: {sorted(KERNELS)}")
        kernel = KERNELS[kernel]
    img = np.asarray(image)
    k = np.asarray(kernel)
    if img.dtype.kind not in "uifb" or img.ndim not in (2, 3):
        raise ValueError(f"apply_filter: image must be a real array (H, W) or (H, W, C), got "
                         f"{img.dtype} {img.shape}")
    if k.dtype.kind not in "uifb" or k.ndim != 2:
        raise ValueError(f"apply_filter: kernel must be a real 2-D array (KH, KW), got "
                         f"{k.dtype} {k.shape}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"apply_filter: stride must be a positive int, got {stride!r}")
    gray = img.ndim == 2
    x = img[None, :, :, None] if gray else img[None]
    channels = x.shape[-1]
    # One depthwise convolution: group c sees channel c alone and has the same 2-D kernel.
    w = np.repeat(k.astype(np.float32)[:, :, None, None], channels, axis=3)
    try:
        y = conv2d(x, w, strides=int(stride), padding=padding, groups=channels)
    except ValueError as err:
        raise ValueError(f"apply_filter: image {img.shape}, kernel {k.shape}, stride {stride}, "
                         f"padding {padding!r}: {err}") from None
    return y[0, :, :, 0] if gray else y[0]


# -- the walk: forward and backward through the layers, input gradients included ------------

def _resolve_layer(model: Any, layer: Any, what: str) -> Layer:
    if isinstance(layer, Layer):
        if not any(layer is l for l in model.layers):
            raise ValueError(f"{what}: {layer.describe()} is not a layer of model {model.name!r}")
        return layer
    if isinstance(layer, str):
        return model.get_layer(name=layer)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        return model.get_layer(index=int(layer))
    raise TypeError(f"{what}: layer must be a layer, its name or its index, got {layer!r}")


def conv_layers(model: Any) -> list[Conv2D]:
    """The model's Conv2D layers, input side first."""
    return [l for l in model.layers if isinstance(l, Conv2D)]


class _Walk:
    """Runs a model layer by layer, keeping every intermediate value, and back again from a
    seed at the output, keeping every gradient (the input's included).

    While it is open every layer gives its input a gradient, and a softmax at the output
    passes its gradient through (its layer's ``backward(..., activation_done=True)``: the seed
    is then d/dlogits). Each layer runs on its own (the Python walk has no cross-layer fusions),
    so the gradient at a conv output is d/dA. Weight gradients the walk writes are put back on
    close: a callback may use it between training steps.
    """

    def __init__(self, model: Any, what: str) -> None:
        model._require_built()
        self.model, self.what = model, what
        from cnnfast.model import Sequential

        self.graph = not isinstance(model, Sequential)
        if self.graph:
            for l in model.layers:
                if model._calls.get(id(l), 1) > 1:
                    raise NotImplementedError(f"{what}: {l.describe()} is called more than once "
                                              f"(a shared layer); the walk takes each layer once")
            self.steps = [n.layer for n in model._nodes[1:]]
            self.reads = [[r for r in reads] for reads in model._reads[1:]]
        else:
            self.steps = list(model.layers)
            self.reads = [[i] for i in range(len(self.steps))]

    def __enter__(self):  # -> the walk itself
        self.saved: list[tuple[Any, str, Any]] = []

        def set_attr(obj: Any, name: str, value: Any) -> None:
            self.saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)

        for layer in self.model.layers:
            set_attr(layer, "need_input_grad", True)
        out_act = getattr(self.steps[-1], "act", None)
        # A subclass whose backward cannot skip its softmax is walked on probabilities.
        self.logits = (out_act is not None and out_act.kind == "softmax" and "activation_done"
                       in inspect.signature(type(self.steps[-1]).backward).parameters)
        self.grads_saved = [(l, {k: v.copy() for k, v in l.gradients_.items()})
                            for l in self.model.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        for layer, grads in self.grads_saved:
            for k, v in grads.items():
                np.copyto(layer.gradients_[k], v)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Every value: [input, output of step 1, ...]; the last is the score (logits when the
        output is a softmax). Layers keep what backward needs (max-pool: training=True), but
        dropout stays off, and BatchNormalization normalizes with its moving statistics (what
        the model computes at inference; batch statistics would also move them)."""
        values: list[Any] = [x]
        for layer, reads in zip(self.steps, self.reads):
            ins = [values[r] for r in reads]
            y = layer.forward(ins if layer.takes_many_inputs else ins[0],
                              not isinstance(layer, (Dropout, BatchNormalization)))
            values.append(y)
        if self.logits:
            z = self.steps[-1].act.z
            values[-1] = z.reshape(values[-1].shape)
        return [v.copy() for v in values]

    def backward(self, seed: np.ndarray) -> list[np.ndarray | None]:
        """d(sum(seed * score))/d(value) for every value of the last forward."""
        grads: list[Any] = [None] * (len(self.steps) + 1)
        grads[-1] = seed.astype(np.float32)
        for i in range(len(self.steps), 0, -1):
            g = grads[i]
            if g is None:
                continue
            layer = self.steps[i - 1]
            # Backward passes write into the gradient they are given: hand them a copy.
            g = np.array(g, np.float32, copy=True)
            dx = (layer.backward(g, activation_done=True) if self.logits and i == len(self.steps)
                  else layer.backward(g))
            if dx is None:
                continue
            parts = dx if layer.takes_many_inputs else [dx]
            for r, part in zip(self.reads[i - 1], parts):
                part = np.array(part, np.float32, copy=True)
                grads[r] = part if grads[r] is None else grads[r] + part
        return grads

    def index_of(self, layer: Layer) -> int:
        """Position in the value list of `layer`'s output."""
        for i, l in enumerate(self.steps):
            if l is layer:
                return i + 1
        raise ValueError(f"{self.what}: {layer.describe()} is not in the model")


def _batch(model: Any, x: Any, what: str) -> tuple[np.ndarray, bool]:
    """(float32 batch, whether x was one sample)."""
    model._require_built()
    arr = np.asarray(x)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{what}: x must be a real array, got dtype {arr.dtype}")
    shape = tuple(model.input_shape_)
    if arr.shape == shape:
        return np.ascontiguousarray(arr[None], np.float32), True
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
        if len(arr) == 0:
            raise ValueError(f"{what}: x is an empty batch {arr.shape}")
        return np.ascontiguousarray(arr, np.float32), False
    raise ValueError(f"{what}: model {model.name!r} takes samples of shape {shape} (or a batch "
                     f"(N, {', '.join(map(str, shape))})), got x of shape {arr.shape}")


def _classes(model: Any, scores: np.ndarray, class_index: Any, what: str) -> np.ndarray:
    """One class per sample: the given index (one or per sample), or the predicted class."""
    n, k = scores.shape[0], scores.reshape(len(scores), -1).shape[1]
    if class_index is None:
        return scores.reshape(n, -1).argmax(axis=1)
    c = np.asarray(class_index)
    if c.dtype.kind not in "ui" or c.ndim > 1 or (c.ndim == 1 and len(c) != n):
        raise ValueError(f"{what}: class_index must be an int or {n} ints, got {class_index!r}")
    c = np.broadcast_to(c, (n,)).astype(np.int64)
    if c.min() < 0 or c.max() >= k:
        raise ValueError(f"{what}: class_index {class_index!r} is outside the model's {k} "
                         f"outputs (output layer {model.layers[-1].describe()})")
    return c


def layer_outputs(model: Any, x: Any, layers: Sequence[Any] | None = None) -> list[np.ndarray]:
    """Outputs of `layers` (default: every layer) for x, as the model computes them at
    inference (dropout off); each float32 with the batch axis (one sample gets a batch of 1)."""
    xb, _ = _batch(model, x, "layer_outputs")
    wanted = list(model.layers) if layers is None else [
        _resolve_layer(model, l, "layer_outputs") for l in layers]
    with _Walk(model, "layer_outputs") as walk:
        values = walk.forward(xb)
        if walk.logits:  # the caller asked for outputs, not logits
            values[-1] = walk.steps[-1].act.y.reshape(values[-1].shape).copy()
        return [values[walk.index_of(l)] for l in wanted]


def feature_maps(model: Any, x: Any, layer: Any) -> np.ndarray:
    """The feature maps of `layer` (name, index or layer) for one input: (H, W, C), or
    (N, H, W, C) for a batch."""
    xb, single = _batch(model, x, "feature_maps")
    out = layer_outputs(model, xb, [layer])[0]
    return out[0] if single else out


def top_activating(model: Any, x: Any, layer: Any, channel: int, k: int = 9,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The `k` inputs of the batch `x` that most activate `channel` of `layer`.

    An input's activation is the channel's largest value over positions (over units for a
    flat layer's output, the channel is then the unit).

    Returns
    -------
    indices : int64 array (k,), into x, strongest first (ties keep data order)
    scores : float32 array (k,)
    """
    xb, _ = _batch(model, x, "top_activating")
    target = _resolve_layer(model, layer, "top_activating")
    shape = {id(l): o for l, _, o in model.shapes()}.get(id(target))
    channels = shape[-1] if shape else None
    if channels is None or isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) \
            or not 0 <= channel < channels:
        raise ValueError(f"top_activating: channel {channel!r} is outside {target.describe()}'s "
                         f"{channels} channels (output {shape})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_activating: k must be a positive int, got {k!r}")
    scores = np.empty(len(xb), np.float32)
    for i in range(0, len(xb), batch_size):
        out = layer_outputs(model, xb[i:i + batch_size], [target])[0]
        scores[i:i + batch_size] = out[..., channel].reshape(len(out), -1).max(axis=1)
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


# -- attribution ----------------------------------------------------------------------------

def input_gradient(model: Any, x: Any, class_index: Any = None) -> np.ndarray:
    """d(score of the class)/d(input): the raw material of saliency maps.

    Parameters
    ----------
    model : a built cnnfast model
    x : one input (model.input_shape_) or a batch
    class_index : int, ints per sample, or None for the predicted class
        The score is the class's logit when the model ends in a softmax, else its output.

    Returns
    -------
    float32 array of x's shape
    """
    xb, single = _batch(model, x, "input_gradient")
    with _Walk(model, "input_gradient") as walk:
        score = walk.forward(xb)[-1]
        classes = _classes(model, score, class_index, "input_gradient")
        seed = np.zeros(score.shape, np.float32).reshape(len(xb), -1)
        seed[np.arange(len(xb)), classes] = 1.0
        g = walk.backward(seed.reshape(score.shape))[0]
    return g[0] if single else g


def _abs_max_channels(g: np.ndarray) -> np.ndarray:
    return np.abs(g).max(axis=-1) if g.ndim >= 3 else np.abs(g)


def saliency(model: Any, x: Any, class_index: Any = None) -> np.ndarray:
    """Input-gradient saliency (Simonyan, Vedaldi, Zisserman 2014): |d score / d x|, the
    largest over colour channels. (H, W) for one image, (N, H, W) for a batch."""
    return _abs_max_channels(input_gradient(model, x, class_index))


def smoothgrad(model: Any, x: Any, class_index: Any = None, samples: int = 25,
               noise_level: float = 0.15, seed: int = 0) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): the input gradient averaged over `samples` copies of x
    with Gaussian noise of standard deviation noise_level * (max(x) - min(x)) per image, then
    |.| and the largest over channels, as :func:`saliency`. The class is fixed from the
    noiseless input."""
    xb, single = _batch(model, x, "smoothgrad")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"smoothgrad: samples must be a positive int, got {samples!r}")
    if not noise_level >= 0:
        raise ValueError(f"smoothgrad: noise_level must be >= 0, got {noise_level!r}")
    with _Walk(model, "smoothgrad") as walk:
        classes = _classes(model, walk.forward(xb)[-1], class_index, "smoothgrad")
    rng = np.random.default_rng(seed)
    span = (xb.reshape(len(xb), -1).max(axis=1) - xb.reshape(len(xb), -1).min(axis=1))
    sigma = (noise_level * span).reshape((-1,) + (1,) * (xb.ndim - 1))
    total = np.zeros(xb.shape, np.float64)
    for _ in range(samples):
        noisy = xb + (sigma * rng.standard_normal(xb.shape)).astype(np.float32)
        total += input_gradient(model, noisy, classes)
    out = _abs_max_channels((total / samples).astype(np.float32))
    return out[0] if single else out


def _last_conv(model: Any) -> Layer:
    """The last Conv2D whose maps have more than one position (LeNet-5's C5 is 1x1: a dense
    layer in all but name), else the last Conv2D."""
    shapes = {id(l): o for l, _, o in model.shapes()}
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"grad_cam: model {model.name!r} has no Conv2D layer; name a layer "
                         f"with a (H, W, C) output")
    spatial = [l for l in convs if shapes[id(l)][0] * shapes[id(l)][1] > 1]
    return (spatial or convs)[-1]


def _resize_bilinear(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, h0, w0) -> (N, h, w), sampling at pixel centres (half-pixel, as image libraries)."""
    _, h0, w0 = a.shape

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, pos - lo

    r0, r1, fr = axis(h0, h)
    c0, c1, fc = axis(w0, w)
    top = a[:, r0][:, :, c0] * (1 - fc) + a[:, r0][:, :, c1] * fc
    bottom = a[:, r1][:, :, c0] * (1 - fc) + a[:, r1][:, :, c1] * fc
    return (top * (1 - fr[:, None]) + bottom * fr[:, None]).astype(np.float32)


def grad_cam(model: Any, x: Any, class_index: Any = None, layer: Any = None,
             upsample: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): relu(sum_k alpha_k A_k) with A the feature maps of
    `layer` (default: the last Conv2D with more than one position) and alpha_k the mean over positions of d score / d A_k,
    divided by its maximum (an all-zero map stays zero).

    Returns
    -------
    float32 array in [0, 1]: (H, W) of the input for one image when `upsample` (bilinear),
    else at the layer's resolution; a leading batch axis for a batch.
    """
    xb, single = _batch(model, x, "grad_cam")
    target = (_last_conv(model) if layer is None
              else _resolve_layer(model, layer, "grad_cam"))
    with _Walk(model, "grad_cam") as walk:
        values = walk.forward(xb)
        i = walk.index_of(target)
        if values[i].ndim != 4:
            raise ValueError(f"grad_cam: {target.describe()} gives {values[i].shape[1:]}, not "
                             f"(H, W, C) feature maps")
        score = values[-1]
        classes = _classes(model, score, class_index, "grad_cam")
        seed = np.zeros(score.shape, np.float32).reshape(len(xb), -1)
        seed[np.arange(len(xb)), classes] = 1.0
        grads = walk.backward(seed.reshape(score.shape))
    a, g = values[i].astype(np.float64), grads[i].astype(np.float64)
    alpha = g.mean(axis=(1, 2))
    cam = np.maximum((a * alpha[:, None, None, :]).sum(axis=-1), 0.0)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = (cam / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)
    if upsample and len(xb.shape) == 4:
        cam = np.clip(_resize_bilinear(cam, xb.shape[1], xb.shape[2]), 0.0, 1.0)
    return cam[0] if single else cam


def occlusion(model: Any, x: Any, class_index: Any = None, patch: int = 4, stride: int = 2,
              fill: float = 0.0, batch_size: int = 256) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): how much the model's output for the class
    drops when a `patch` x `patch` square (all channels) is set to `fill`, averaged over the
    squares that cover each pixel.

    Returns
    -------
    float32 array (H, W) for one image ((N, H, W) for a batch); positive where hiding the
    pixel lowers the class's output (a probability for softmax models).
    """
    xb, single = _batch(model, x, "occlusion")
    if xb.ndim != 4:
        raise ValueError(f"occlusion: needs image inputs (H, W, C), model takes "
                         f"{model.input_shape_}")
    n, h, w, _ = xb.shape
    for name, v in (("patch", patch), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"occlusion: {name} must be a positive int, got {v!r}")
    if patch > min(h, w):
        raise ValueError(f"occlusion: patch {patch} is larger than the image {(h, w)}")
    base = model.predict(xb, batch_size=batch_size).reshape(n, -1)
    classes = _classes(model, base, class_index, "occlusion")
    tops = list(range(0, h - patch + 1, stride))
    lefts = list(range(0, w - patch + 1, stride))
    # Patches that would leave the last rows or columns uncovered get one more position.
    if tops[-1] != h - patch:
        tops.append(h - patch)
    if lefts[-1] != w - patch:
        lefts.append(w - patch)
    out = np.zeros((n, h, w), np.float64)
    for j in range(n):
        spots = [(t, l) for t in tops for l in lefts]
        hidden = np.repeat(xb[j:j + 1], len(spots), axis=0)
        for s, (t, l) in enumerate(spots):
            hidden[s, t:t + patch, l:l + patch, :] = fill
        probs = model.predict(hidden, batch_size=batch_size).reshape(len(spots), -1)
        drop = base[j, classes[j]] - probs[:, classes[j]].astype(np.float64)
        total = np.zeros((h, w))
        count = np.zeros((h, w))
        for (t, l), d in zip(spots, drop):
            total[t:t + patch, l:l + patch] += d
            count[t:t + patch, l:l + patch] += 1
        out[j] = total / count
    out = out.astype(np.float32)
    return out[0] if single else out


# -- pictures ---------------------------------------------------------------------------------

def _unit(a: np.ndarray) -> np.ndarray:
    """a scaled to [0, 1] by its own range (a constant array gives 0.5)."""
    a = np.asarray(a, np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.full(a.shape, 0.5) if hi <= lo else (a - lo) / (hi - lo)


def filter_tiles(layer: Layer) -> np.ndarray:
    """A Conv2D's filters as pictures in [0, 1], each scaled by its own range.

    Returns
    -------
    (K, KH, KW, 3) colour tiles when the layer sees 3 input channels per group (the first
    layer of an RGB network), else (K, C, KH, KW) grayscale tiles, one per input channel.
    """
    if not isinstance(layer, Conv2D) or not layer.built:
        raise ValueError(f"filter_tiles: expected a built Conv2D layer, got {layer!r}")
    # (KH, KW, C, K); a depthwise kernel as its (KH, KW, 1, C*M) grouped form
    w = np.asarray(layer._conv_kernel(layer.weights_[layer._kernel_key]), np.float64)
    tiles = np.stack([_unit(w[..., k]) for k in range(w.shape[-1])])  # (K, KH, KW, C)
    if w.shape[2] == 3:
        return tiles.astype(np.float32)
    return tiles.transpose(0, 3, 1, 2).astype(np.float32)


def filter_grid(layer: Layer, gap: int = 1) -> np.ndarray:
    """All of a Conv2D's filters in one picture, `gap` white pixels apart: one row of colour
    tiles for RGB inputs, else one row per filter and one column per input channel.
    (H, W, 3) or (H, W) float32 in [0, 1]."""
    tiles = filter_tiles(layer)
    if layer.weights_["kernel"].shape[2] == 3:
        k, kh, kw, _ = tiles.shape
        cols = int(np.ceil(np.sqrt(k)))
        rows = int(np.ceil(k / cols))
        grid = np.ones((rows * (kh + gap) + gap, cols * (kw + gap) + gap, 3), np.float32)
        for i in range(k):
            r, c = divmod(i, cols)
            grid[gap + r * (kh + gap):gap + r * (kh + gap) + kh,
                 gap + c * (kw + gap):gap + c * (kw + gap) + kw] = tiles[i]
        return grid
    k, ch, kh, kw = tiles.shape
    grid = np.ones((k * (kh + gap) + gap, ch * (kw + gap) + gap), np.float32)
    for i in range(k):
        for j in range(ch):
            grid[gap + i * (kh + gap):gap + i * (kh + gap) + kh,
                 gap + j * (kw + gap):gap + j * (kw + gap) + kw] = tiles[i, j]
    return grid


# A small perceptual colour map (dark blue -> teal -> yellow, viridis-like) for heat maps.
_HEAT = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                 np.float64)


def heat_colors(a: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) to uint8 RGB (..., 3) through a viridis-like map."""
    t = np.clip(np.nan_to_num(np.asarray(a, np.float64)), 0, 1) * (len(_HEAT) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_HEAT) - 2)
    f = (t - lo)[..., None]
    return np.round(_HEAT[lo] * (1 - f) + _HEAT[lo + 1] * f).astype(np.uint8)


def overlay(image: Any, heatmap: Any, alpha: float = 0.5) -> np.ndarray:
    """A heat map (H, W), scaled by its own range, blended over an image (H, W) or (H, W, C)
    (scaled likewise): uint8 RGB (H, W, 3)."""
    img = np.asarray(image, np.float64)
    heat = np.asarray(heatmap, np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.shape[:2] != heat.shape or heat.ndim != 2:
        raise ValueError(f"overlay: heatmap {heat.shape} must be (H, W) of image {img.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha!r}")
    base = _unit(img) * 255
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    elif base.shape[-1] != 3:
        base = np.repeat(base.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.round(base * (1 - alpha) + heat_colors(_unit(heat)) * alpha).astype(np.uint8)


def save_png(picture: Any, path: str | os.PathLike, cmap: str = "gray",
             scale: int = 8) -> None:
    """Write a picture of this module ((H, W) in [0, 1] through `cmap`, or (H, W, 3) RGB in
    [0, 1] or uint8) to a PNG file through matplotlib (``pip install 'cnnfast[plot]'``),
    each pixel `scale` x `scale`."""
    from cnnfast._plotting import new_figure

    a = np.asarray(picture)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"save_png: picture must be (H, W) or (H, W, 3), got {a.shape}")
    h, w = a.shape[:2]
    dpi = 100.0
    fig = new_figure("save_png", (w * scale / dpi, h * scale / dpi), dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=0 if a.ndim == 2 else None,
              vmax=1 if a.ndim == 2 else None, interpolation="nearest")
    fig.savefig(os.fspath(path), dpi=dpi)


# -- training diagnostics ---------------------------------------------------------------------

DIAGNOSTICS_FORMAT = "cnnfast-diagnostics"
DIAGNOSTICS_VERSION = 1


def _histogram(a: np.ndarray, bins: int) -> dict[str, Any]:
    a = np.asarray(a, np.float64).ravel()
    counts, edges = np.histogram(a, bins=bins)
    return {"counts": counts.tolist(), "lo": float(edges[0]), "hi": float(edges[-1]),
            "mean": float(a.mean()), "std": float(a.std()), "abs_max": float(np.abs(a).max())}


def _is_relu(layer: Layer) -> bool:
    act = getattr(layer, "act", None)
    return act is not None and act.kind == "relu"


class TrainingDiagnostics(callbacks_module.Callback):
    """Records each epoch into one small JSON file (rewritten after every epoch, so an
    interrupted run keeps its log): the epoch's logs (loss, metrics), per layer a histogram of
    each weight and of its gradient over the epoch's last batch, the fraction of dead ReLU
    units (never positive on the probe inputs), and the first conv layer's filters.

    Parameters
    ----------
    path : file to write (JSON), or None to keep the record in memory only (``.record``)
    x_probe : a few inputs (a batch) for the dead-ReLU count; None skips that count
    bins : histogram bins
    max_filters : how many of the first conv layer's filters to snapshot
    """

    def __init__(self, path: str | os.PathLike | None, x_probe: Any = None, bins: int = 30,
                 max_filters: int = 64) -> None:
        super().__init__()
        self.path = None if path is None else os.fspath(path)
        self.x_probe = None if x_probe is None else np.asarray(x_probe, np.float32)
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"TrainingDiagnostics: bins must be a positive int, got {bins!r}")
        self.bins, self.max_filters = int(bins), int(max_filters)
        self.record: dict[str, Any] = {}

    def on_train_begin(self, logs=None):
        model = self.model
        self.record = {"format": DIAGNOSTICS_FORMAT, "version": DIAGNOSTICS_VERSION,
                       "model": model.name, "epochs": [], "filters": []}
        if self.x_probe is not None:
            _batch(model, self.x_probe, "TrainingDiagnostics x_probe")
        self._snapshot_filters(-1)

    def _snapshot_filters(self, epoch: int) -> None:
        convs = conv_layers(self.model)
        if convs:
            w = np.asarray(convs[0].weights_["kernel"])[..., :self.max_filters]
            self.record["filters"].append({"epoch": epoch + 1, "layer": convs[0].name,
                                           "kernel": np.round(w, 6).tolist()})

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        layers = []
        relus = [l for l in model.layers if _is_relu(l)]
        dead: dict[str, float] = {}
        if relus and self.x_probe is not None:
            outs = layer_outputs(model, self.x_probe, relus)
            for l, o in zip(relus, outs):
                dead[l.name] = float(np.mean(~(o > 0).any(axis=0)))
        for l in model.layers:
            if not l.weights_:
                continue
            entry: dict[str, Any] = {"name": l.name, "type": type(l).__name__, "weights": {},
                                     "gradients": {}}
            for k, v in l.weights_.items():
                entry["weights"][k] = _histogram(v, self.bins)
                if k in l.gradients_:
                    entry["gradients"][k] = _histogram(l.gradients_[k], self.bins)
            if l.name in dead:
                entry["dead_relu"] = dead[l.name]
            layers.append(entry)
        for l in relus:  # ReLU layers without weights
            if not l.weights_ and l.name in dead:
                layers.append({"name": l.name, "type": type(l).__name__, "weights": {},
                               "gradients": {}, "dead_relu": dead[l.name]})
        logs = {k: float(v) for k, v in (logs or {}).items()
                if isinstance(v, (int, float, np.floating, np.integer))}
        self.record["epochs"].append({"epoch": int(epoch) + 1, "logs": logs, "layers": layers})
        self._snapshot_filters(epoch)
        self.write()

    def write(self) -> None:
        """Write the record to `path` (through a temporary file: a reader never sees half)."""
        if self.path is None:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.record, f, separators=(",", ":"))
        os.replace(tmp, self.path)


def load_diagnostics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :class:`TrainingDiagnostics`; ValueError when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{os.fspath(path)}: not a training log (not JSON text: {err})") from None
    if not isinstance(record, dict) or record.get("format") != DIAGNOSTICS_FORMAT:
        raise ValueError(f"{os.fspath(path)}: not a cnnfast training log (written by "
                         f"cnnfast.inside.TrainingDiagnostics)")
    if record.get("version") != DIAGNOSTICS_VERSION:
        raise ValueError(f"{os.fspath(path)}: training log version {record.get('version')!r}, "
                         f"this cnnfast reads version {DIAGNOSTICS_VERSION}")
    return record
