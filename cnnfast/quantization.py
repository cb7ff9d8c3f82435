"""int8 inference: post-training static quantization of a trained model.

``cnnfast.quantize(model, calibration_x)`` returns a :class:`QuantizedModel` whose ``predict``
runs every Conv2D and Dense layer on 8-bit integers, in the C++ inference executor that runs
float models (and, from a saved file, the C API):

- weights: int8, symmetric, one scale per output channel,
  ``wq = clip(round(w / w_scale), -127, 127)``, ``w_scale = max|w[..., k]| / 127``;
- activations: each quantized layer's input is quantized per tensor to uint8 with a scale and
  a zero point, ``xq = clip(round(x / x_scale) + x_zero_point, 0, 255)``;
- products: summed exactly in int32 (vpdpbusd on CPUs with AVX512-VNNI, a portable kernel
  elsewhere), and the float result recovered in the kernel's epilogue,
  ``y = (acc - x_zero_point * sum(wq[:, k])) * x_scale * w_scale[k] + bias[k]`` (then ReLU
  when the layer has it);
- everything else (pooling, flatten, other activations, dropout as the identity) stays float32
  between the int8 layers (in a functional model the joins, such as a residual Add, too). A
  BatchNormalization that alone reads a linear Conv2D is folded into the convolution's weights
  and bias before they are quantized.

Calibration: the activation range of each quantized layer is the minimum and maximum of its
input over ``calibration_x`` run through the float model (per-tensor min/max, widened to
include 0 so that 0.0 - the padding and ReLU's floor - is exactly representable). Min/max
keeps every calibration value inside the grid (no clipping), which suits the small, bounded
activations of these CNNs (standardised pixels, ReLU and tanh outputs); ranges with rare
outliers would favour a percentile or entropy choice, not implemented.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast import layers as L
from cnnfast.model import Model, Sequential

# Weights use the symmetric range [-127, 127] (not -128), so that w and -w quantize alike.
_W_MAX = 127


@dataclass
class Int8Layer:
    """The int8 form of one Conv2D or Dense layer."""

    kernel: np.ndarray        # int8, the layer's kernel shape ((KH, KW, C, K) or (IN, OUT))
    kernel_scale: np.ndarray  # float32 (K,)
    bias: np.ndarray | None   # float32 (K,): the layer's bias (with a folded batch norm's shift)
    input_scale: float        # a float32 value
    input_zero_point: int     # in [0, 255]
    folded_batchnorm: str | None = None  # the BatchNormalization folded into this Conv2D

    def network_entry(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "kernel_scale": self.kernel_scale, "bias": self.bias,
                "input_scale": float(self.input_scale),
                "input_zero_point": int(self.input_zero_point),
                "folded_batchnorm": self.folded_batchnorm}


class QuantizedModel:
    """A model whose Conv2D and Dense layers run in int8 (made by :func:`quantize` or read by
    :func:`cnnfast.load_model`). Inference only: ``predict``, ``save``, ``summary``."""

    def __init__(self, config: dict[str, Any], float_weights: dict[str, np.ndarray],
                 int8_layers: dict[str, Int8Layer], input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...], calibration: dict[str, Any]) -> None:
        self.config = config
        self.name = str(config.get("name", "model"))
        self.float_weights = float_weights
        self.int8_layers = int8_layers
        self.input_shape_ = tuple(input_shape)
        self.output_shape_ = tuple(output_shape)
        self.calibration = calibration
        self._network: Any = None

    def _net(self) -> Any:
        if self._network is None:
            self._network = _core.Network.from_config(
                json.dumps(self.config), self.float_weights,
                {name: q.network_entry() for name, q in self.int8_layers.items()})
            if tuple(self._network.output_shape) != self.output_shape_:
                raise RuntimeError(f"int8 network output shape {self._network.output_shape} "
                                   f"differs from the model's {self.output_shape_}")
        return self._network

    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Model outputs for x (N, *input_shape), batch by batch (default 32 samples).

        Raises
        ------
        ValueError
            x does not have the model's per-sample shape.
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}.predict: inputs must be numeric, got dtype {arr.dtype}")
        if arr.ndim != len(self.input_shape_) + 1 or arr.shape[1:] != self.input_shape_:
            raise ValueError(f"{self.name}.predict: expected x of shape "
                             f"(None, {', '.join(map(str, self.input_shape_))}), got {arr.shape}")
        batch = 32 if batch_size is None else int(batch_size)
        if batch < 1:
            raise ValueError(f"{self.name}.predict: batch_size must be >= 1, got {batch_size!r}")
        arr = np.ascontiguousarray(arr, np.float32)
        net = self._net()
        out = np.empty((len(arr),) + self.output_shape_, np.float32)
        for start in range(0, len(arr), batch):
            net.forward(out[start:start + batch], arr[start:start + batch])
        return out

    def describe(self) -> list[str]:
        """The executor's plan, one line per step (the int8 steps say how their input is
        quantized)."""
        return list(self._net().describe())

    def summary(self, print_fn: Callable[[str], None] | None = None) -> None:
        show = print_fn or print
        show(f"Quantized model \"{self.name}\": {len(self.int8_layers)} int8 layers "
             f"({', '.join(self.int8_layers)}); calibration {self.calibration}")
        for line in self.describe():
            show(f"  {line}")

    def save(self, filepath: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
        """Write the quantized model to one file (docs/model-format.md, section 8), atomically;
        :func:`cnnfast.load_model` and the C API read it. `metadata`: extra header entries, as
        :func:`cnnfast.save_model` takes them (``cnnfast quantize`` carries the float file's
        class names and input scaling over)."""
        save_quantized_model(self, filepath, metadata)


def _fold_batchnorm(conv: L.Layer, bn: L.Layer) -> tuple[np.ndarray, np.ndarray]:
    """Conv2D kernel and bias with the batch normalization after it folded in:
    w' = w * scale, b' = b * scale + shift, scale = gamma / sqrt(moving_variance + epsilon),
    shift = beta - moving_mean * scale (as the float inference plan folds it)."""
    wts = bn.weights_
    var = wts["moving_variance"].astype(np.float64)
    gamma = wts["gamma"].astype(np.float64) if "gamma" in wts else 1.0
    beta = wts["beta"].astype(np.float64) if "beta" in wts else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    shift = beta - wts["moving_mean"].astype(np.float64) * scale
    w = conv.weights_["kernel"].astype(np.float64) * scale
    b = conv.weights_["bias"].astype(np.float64) if "bias" in conv.weights_ else 0.0
    return w, b * scale + shift


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 symmetric per output channel (the last axis): (wq, scale), w ~= wq * scale.
    A channel of zeros gets scale 1 (its wq are 0)."""
    w64 = np.asarray(w, np.float64)
    absmax = np.abs(w64.reshape(-1, w64.shape[-1])).max(axis=0)
    scale = np.where(absmax > 0, absmax / _W_MAX, 1.0).astype(np.float32)
    wq = np.clip(np.rint(w64 / scale.astype(np.float64)), -_W_MAX, _W_MAX).astype(np.int8)
    return wq, scale


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """uint8 scale and zero point for values in [lo, hi] (widened to include 0, so 0.0 is
    exactly the zero point): scale = (hi - lo) / 255 as float32, zero_point = round(-lo /
    scale). A range of only zeros gets scale 1."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32((hi - lo) / 255.0)
    if not scale > 0:
        return 1.0, 0
    zero_point = int(np.clip(np.rint(-lo / float(scale)), 0, 255))
    return float(scale), zero_point


def _readers(model: Model) -> tuple[dict[int, int], dict[int, list[L.Layer]]]:
    """Per layer (by id): how many times the model calls it, and the layers that read its
    output (a Sequential's next layer; a graph's calls that take it as an input)."""
    if isinstance(model, Sequential):
        layers = model.layers
        return ({id(layer): 1 for layer in layers},
                {id(layer): layers[i + 1:i + 2] for i, layer in enumerate(layers)})
    calls: dict[int, int] = {}
    readers: dict[int, list[L.Layer]] = {}
    for node in model._nodes[1:]:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        readers.setdefault(id(node.layer), [])
        for t in node.inputs:
            readers.setdefault(id(t.node.layer), []).append(node.layer)
    return calls, readers


def _quantized_layers(model: Model, skip: set[str]) -> list[tuple[L.Layer, L.Layer | None]]:
    """(each Conv2D and Dense not in `skip`, the BatchNormalization folded into it or None):
    a batch normalization is folded where the inference plan folds it, after a linear Conv2D
    whose only reader it is (network_builder.cpp folded_batchnorm). Raises ValueError naming
    the first layer the int8 executor cannot run."""
    layers = [layer for layer in model.layers if type(layer) is not L.InputLayer]
    names = {layer.name: layer for layer in layers}
    for name in sorted(skip):
        if name not in names or type(names[name]) not in (L.Conv2D, L.Dense):
            raise ValueError(f"quantize: skip names {name!r}, which is not a Conv2D or Dense "
                             f"layer of model '{model.name}'")
    calls, readers = _readers(model)
    chosen = []
    for layer in layers:
        if type(layer) not in L.BUILTIN_LAYERS:
            raise ValueError(f"quantize: layer '{layer.name}' ({type(layer).__name__}) is not a "
                             "built-in layer; the int8 executor cannot run it")
        if layer.name in skip or type(layer) not in (L.Conv2D, L.Dense):
            continue
        if calls[id(layer)] > 1:
            raise ValueError(f"quantize: layer '{layer.name}' is called {calls[id(layer)]} "
                             "times (shared weights); quantize takes layers called once (skip "
                             "it to keep it in float32)")
        if type(layer) is L.Conv2D and layer.groups != 1:
            raise ValueError(f"quantize: layer '{layer.name}' is a grouped Conv2D "
                             f"(groups={layer.groups}); int8 convolutions take one group "
                             "(skip it to keep it in float32)")
        reads = readers[id(layer)]
        folds = (type(layer) is L.Conv2D and layer.act.kind == "linear" and len(reads) == 1
                 and type(reads[0]) is L.BatchNormalization and calls[id(reads[0])] == 1)
        chosen.append((layer, reads[0] if folds else None))
    if not chosen:
        raise ValueError(f"quantize: model '{model.name}' has no Conv2D or Dense layer to "
                         "quantize")
    return chosen


def quantize(model: Model, calibration_x: Any, batch_size: int = 128,
             skip: Iterable[str] = ()) -> QuantizedModel:
    """The int8 form of a trained model (see the module's docstring for the scheme).

    Parameters
    ----------
    model : Model
        A built (trained) model of built-in layers, Sequential or functional (ResNets too);
        its Conv2D layers must have one group and each quantized layer be called once. The
        model itself is not changed.
    calibration_x : array (N, *input_shape)
        Representative inputs (a few hundred training images), preprocessed as for
        ``predict``; each quantized layer's input range is their min/max.
    batch_size : int
        Samples per calibration forward.
    skip : iterable of str
        Names of Conv2D and Dense layers to keep in float32: layers where int8 does not pay,
        such as LeNet-5's first convolution (one input channel, six filters: its int8 product
        fills a fifth of the kernel's 32-column tile: with it in float32 the quantized LeNet-5
        ran 1.2x faster than float32 at batch 128 on one core of an AMD EPYC (Zen 5), fully
        quantized 0.75x).

    Returns
    -------
    QuantizedModel

    Raises
    ------
    ValueError
        The model is not built, a layer cannot run in the int8 executor, or
        calibration_x has another per-sample shape, no samples or non-finite values; the message
        names the layer or the shapes.
    """
    if not isinstance(model, Model):
        raise TypeError(f"quantize: expected a cnnfast Model, got {type(model).__name__}")
    if model.input_shape_ is None or not model.built:
        raise ValueError(f"quantize: model '{model.name}' is not built (it has no weights); "
                         "train it (or build it and load weights) first")
    chosen = _quantized_layers(model, {skip} if isinstance(skip, str) else set(skip))
    x = np.asarray(calibration_x)
    if x.dtype.kind not in "fiub" or x.ndim != len(model.input_shape_) + 1 or \
            x.shape[1:] != model.input_shape_ or len(x) == 0:
        raise ValueError(f"quantize: calibration_x must be numeric of shape (N, "
                         f"{', '.join(map(str, model.input_shape_))}) with N >= 1, got "
                         f"{x.shape} of dtype {x.dtype} for the input of layer "
                         f"'{model.layers[0].name}'")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"quantize: calibration_x {x.shape} has non-finite values")
    if int(batch_size) < 1:
        raise ValueError(f"quantize: batch_size must be >= 1, got {batch_size!r}")

    # Min/max of each quantized layer's input, from the float model's forward (each layer's
    # forward wrapped for the calibration only).
    ranges = {layer.name: [math.inf, -math.inf] for layer, _ in chosen}

    def recording(layer: L.Layer) -> Callable[..., Any]:
        forward = layer.forward

        def record(h: np.ndarray, training: bool) -> Any:
            r = ranges[layer.name]
            r[0], r[1] = min(r[0], float(h.min())), max(r[1], float(h.max()))
            return forward(h, training)
        return record

    for layer, _ in chosen:
        layer.forward = recording(layer)
    try:
        for start in range(0, len(x), int(batch_size)):
            model._forward(x[start:start + int(batch_size)], False)
    finally:
        for layer, _ in chosen:
            del layer.forward  # the class's method again

    config = model.get_config()
    int8_layers: dict[str, Int8Layer] = {}
    # Layers whose float tensors the quantized model no longer needs.
    replaced: set[str] = set()
    for layer, norm in chosen:
        if norm is not None:
            w, b = _fold_batchnorm(layer, norm)
            replaced.add(norm.name)
        else:
            w = layer.weights_["kernel"]
            b = layer.weights_.get("bias")
        wq, w_scale = quantize_weights(w)
        x_scale, x_zero_point = activation_params(*ranges[layer.name])
        int8_layers[layer.name] = Int8Layer(
            wq, w_scale, None if b is None else np.asarray(b, np.float32).copy(),
            x_scale, x_zero_point, None if norm is None else norm.name)
        replaced.add(layer.name)
    float_weights = {f"{layer.name}/{n}": np.array(w, np.float32)
                     for layer in model.layers if layer.name not in replaced
                     for n, w in layer.weights_.items()}
    calibration = {"method": "minmax", "samples": len(x)}
    return QuantizedModel(config, float_weights, int8_layers, model.input_shape_,
                          model.output_shape_, calibration)


# -- the model file (docs/model-format.md, section 8) ---------------------------------------

QUANTIZATION_SCHEME = "int8"


def save_quantized_model(qmodel: QuantizedModel, filepath: str | os.PathLike,
                         metadata: dict[str, str] | None = None) -> None:
    """Write `qmodel` to `filepath` atomically (format_version 2: float tensors, then the int8
    kernels last so that every 4-byte tensor stays 4-byte aligned), with `metadata`'s extra
    header entries (str to str, not the keys cnnfast writes)."""
    from cnnfast import saving

    saving.check_save_path(filepath, "save_quantized_model")
    reserved = saving.RESERVED_METADATA
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or key in reserved:
            raise ValueError(f"save_quantized_model: metadata must map str to str, without the "
                             f"keys {sorted(reserved)}; got {key!r}: {type(value).__name__}")
    meta = {**(metadata or {}),
            "format": saving.FORMAT, "format_version": saving.QUANTIZED_FORMAT_VERSION,
            "architecture": saving._dumps(qmodel.config),
            "quantization": saving._dumps({
                "scheme": QUANTIZATION_SCHEME, "calibration": qmodel.calibration,
                "layers": {name: {"folded_batchnorm": q.folded_batchnorm}
                           for name, q in qmodel.int8_layers.items()}})}
    words: list[tuple[str, np.ndarray]] = list(qmodel.float_weights.items())
    kernels: list[tuple[str, np.ndarray]] = []
    for name, q in qmodel.int8_layers.items():
        words.append((f"{name}/kernel_scale", q.kernel_scale))
        if q.bias is not None:
            words.append((f"{name}/bias", q.bias))
        words.append((f"{name}/input_scale", np.array(q.input_scale, np.float32)))
        words.append((f"{name}/input_zero_point", np.array(q.input_zero_point, np.int32)))
        kernels.append((f"{name}/kernel", q.kernel))
    saving._write_atomic(filepath, lambda f: saving._write_safetensors(f, meta, words + kernels))


def _load_quantized(f: Any, header: Any) -> QuantizedModel:
    """The QuantizedModel of a validated format_version 2 header (saving._load_model)."""
    from cnnfast import saving

    fail = saving._fail
    architecture = saving._loads(header.metadata["architecture"], "architecture")
    try:
        model = saving.model_from_config(architecture)
        expected = saving._expected_weights(model)
        shapes = model.shapes()
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        fail(f"invalid architecture: {type(err).__name__}: {err}")
    quant = saving._loads(header.metadata["quantization"], "quantization metadata")
    if not isinstance(quant, dict) or quant.get("scheme") != QUANTIZATION_SCHEME or \
            not isinstance(quant.get("layers"), dict):
        fail(f"quantization metadata must be an object with scheme {QUANTIZATION_SCHEME!r} and "
             f"layers, got {str(quant)[:200]}")
    by_name = {layer.name: (layer, in_shape, out) for layer, in_shape, out in shapes}
    dtypes: dict[str, str] = {}
    skip: set[str] = set()
    for name, entry in quant["layers"].items():
        if name not in by_name or type(by_name[name][0]) not in (L.Conv2D, L.Dense):
            fail(f"quantization names layer {name!r}, which is not a Conv2D or Dense layer")
        folded = entry.get("folded_batchnorm") if isinstance(entry, dict) else 0
        if not isinstance(entry, dict) or set(entry) != {"folded_batchnorm"} or \
                not (folded is None or isinstance(folded, str)):
            fail(f"quantization layer {name!r} must be {{\"folded_batchnorm\": null or a name}}")
        if folded is not None:
            if folded not in by_name or type(by_name[folded][0]) is not L.BatchNormalization:
                fail(f"layer {name!r} folds {folded!r}, which is not a BatchNormalization")
            skip.add(folded)
        kernel_shape = expected[f"{name}/kernel"]
        k = kernel_shape[-1]
        for key, shape, dtype in (("kernel", kernel_shape, "I8"), ("kernel_scale", (k,), "F32"),
                                  ("input_scale", (), "F32"), ("input_zero_point", (), "I32")):
            expected[f"{name}/{key}"] = shape
            dtypes[f"{name}/{key}"] = dtype
        has_bias = f"{name}/bias" in header.tensors
        expected.pop(f"{name}/bias", None)
        if has_bias:
            expected[f"{name}/bias"] = (k,)
    for name in skip:
        for key in [key for key in expected if key.startswith(f"{name}/")]:
            del expected[key]
    saving._check_weights(header, expected, None)
    for name, entry in header.tensors.items():
        if entry.dtype != dtypes.get(name, "F32"):
            fail(f"tensor {name!r} has dtype {entry.dtype}, expected {dtypes.get(name, 'F32')}")
    arrays = {}
    for name, shape in expected.items():
        arrays[name] = np.empty(shape, {"F32": np.float32, "I32": np.int32,
                                        "I8": np.int8}[dtypes.get(name, "F32")])
        saving._read_into(f, header, header.tensors[name], arrays[name])
    int8_layers = {}
    for name, entry in quant["layers"].items():
        scale, zero_point = float(arrays.pop(f"{name}/input_scale")), \
            int(arrays.pop(f"{name}/input_zero_point"))
        if not (scale > 0 and math.isfinite(scale)) or not 0 <= zero_point <= 255:
            fail(f"layer {name!r}: input scale {scale} and zero point {zero_point} must be "
                 "positive and finite, and in [0, 255]")
        int8_layers[name] = Int8Layer(arrays.pop(f"{name}/kernel"),
                                      arrays.pop(f"{name}/kernel_scale"),
                                      arrays.pop(f"{name}/bias", None), scale, zero_point,
                                      entry["folded_batchnorm"])
    calibration = quant.get("calibration", {})
    return QuantizedModel(architecture, arrays, int8_layers, shapes[0][1], shapes[-1][2],
                          calibration if isinstance(calibration, dict) else {})


__all__ = ["Int8Layer", "QuantizedModel", "activation_params", "quantize", "quantize_weights",
           "save_quantized_model"]
