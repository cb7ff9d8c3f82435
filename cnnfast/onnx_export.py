"""Export a model (stack or graph) to ONNX (standard operators only; needs the optional `onnx` package).

The graph takes cnnfast's channels-last input, float32 [N, H, W, C] with a dynamic batch N,
and transposes it once to NCHW, the layout of ONNX's Conv/Pool/LRN operators. The tensor stays
NCHW through the convolutional part and is transposed back to NHWC before Flatten (or any
Dense or the graph output), so Flatten sees Keras' (H, W, C) row-major order and the Dense
weights need no permutation. Layer by layer:

=================  ==========================================================================
Conv2D             Conv, kernel (KH, KW, C/g, K) transposed to (K, C/g, KH, KW); pads [top,
                   left, bottom, right] as cnnfast computes them ("same": the odd row/column
                   at the bottom/right, i.e. SAME_UPPER); strides; group
MaxPooling2D       MaxPool with the same explicit pads
AveragePooling2D   AveragePool, count_include_pad=0 (padded cells are not counted, as Keras)
Flatten            Flatten(axis=1) after the NCHW -> NHWC Transpose
Dense              Gemm (2-D input) or MatMul + Add
Dropout            nothing (identity at inference)
activations        Relu, Sigmoid, Tanh, Elu(alpha), Softmax (axis 1 on NCHW maps, else -1),
                   swish as Mul(x, Sigmoid(x)); PReLU as PRelu with the slope transposed to CHW
LRN                LRN(size=2r+1, alpha=alpha*size, beta, bias): ONNX divides alpha by the
                   window size (as PyTorch and Caffe), cnnfast/TensorFlow do not
BatchNormalization BatchNormalization (inference: the moving statistics) on NCHW maps and
                   (N, C) rows, ones/zeros for an absent gamma/beta; on other ranks Mul + Add
                   by the per-channel scale and shift
GlobalAvg/MaxPool  GlobalAveragePool / GlobalMaxPool, then Flatten unless keepdims
ZeroPadding2D      Pad (constant 0); Cropping2D: Slice on H and W
UpSampling2D       Resize(nearest, asymmetric, floor) by scales [1, 1, sh, sw]
Reshape            Reshape to [-1, *target] after the NCHW -> NHWC Transpose
=================  ==========================================================================
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnfast import layers as L
from cnnfast.model import Model
from cnnfast.shapes import conv_padding


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "export_onnx needs the 'onnx' package: pip install onnx (or cnnfast[onnx])"
        ) from None
    return onnx


class _GraphBuilder:
    """Collects nodes and initializers; tracks whether the running tensor is NCHW."""

    def __init__(self, onnx: Any, input_name: str, per_sample: tuple[int, ...]) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.const_names: set[str] = set()
        self.counter = 0
        self.x = input_name
        self.shape = per_sample  # cnnfast (channels-last) per-sample shape of the running tensor
        self.nchw = False

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        if name in self.const_names:  # a shared layer's weights, already stored
            return name
        self.const_names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32),
                                                         name))
        return name

    def const_int64(self, name: str, values: list[int]) -> str:
        from onnx import numpy_helper

        if name not in self.const_names:
            self.const_names.add(name)
            self.initializers.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        self.x = out
        return out

    def to_nchw(self, who: str) -> None:
        if self.nchw:
            return
        if len(self.shape) != 3:
            raise NotImplementedError(f"export_onnx: {who} needs (H, W, C) input, got {self.shape}")
        self.node("Transpose", [self.x], "to_nchw", perm=[0, 3, 1, 2])
        self.nchw = True

    def to_nhwc(self) -> None:
        if self.nchw:
            self.node("Transpose", [self.x], "to_nhwc", perm=[0, 2, 3, 1])
            self.nchw = False

    def activation(self, act: L._Activation, hint: str) -> None:
        kind = act.kind
        if kind == "linear":
            return
        if kind == "swish":
            x = self.x
            sig = self.node("Sigmoid", [x], f"{hint}_sigmoid")
            self.node("Mul", [x, sig], f"{hint}_swish")
        elif kind == "softmax":
            self.node("Softmax", [self.x], f"{hint}_softmax", axis=1 if self.nchw else -1)
        elif kind == "elu":
            self.node("Elu", [self.x], f"{hint}_elu", alpha=float(act.alpha))
        elif kind == "leaky_relu":
            self.node("LeakyRelu", [self.x], f"{hint}_leaky_relu", alpha=float(act.alpha))
        else:
            op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[kind]
            self.node(op, [self.x], f"{hint}_{kind}")


def _pads(layer, in_shape: tuple[int, ...], kernel: tuple[int, int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] reproducing cnnfast's output size."""
    h, w = in_shape[0], in_shape[1]
    mode = layer.padding
    if isinstance(mode, str):
        _, bottom, oh = conv_padding(h, kernel[0], layer.strides[0], mode)
        _, right, ow = conv_padding(w, kernel[1], layer.strides[1], mode)
    else:
        _, bottom, oh = conv_padding(h, kernel[0], layer.strides[0], (mode[0], mode[0]))
        _, right, ow = conv_padding(w, kernel[1], layer.strides[1], (mode[1], mode[1]))
    if (oh, ow) != (layer.oh, layer.ow):  # the shape formulas are shared; this cannot drift
        raise RuntimeError(f"export_onnx: {layer.describe()} pads disagree with its output size")
    return [layer.pad_top, layer.pad_left, bottom, right]


def _export_layer(g: _GraphBuilder, layer: L.Layer, in_shape, out_shape) -> None:
    hint = layer.name
    if isinstance(layer, (L.Dropout, L.GaussianNoise, L.SpatialDropout2D, L.RandomFlip,
                          L._RandomAffine)):
        return  # the identity at inference
    if isinstance(layer, L.SeparableConv2D):  # depthwise Conv of C groups, then a 1x1 Conv
        g.to_nchw(layer.describe())
        depthwise = layer._conv_kernel(layer.weights_["depthwise_kernel"]).transpose(3, 2, 0, 1)
        g.node("Conv", [g.x, g.const(f"{layer.name}/depthwise_kernel", depthwise)],
               f"{hint}_depthwise", kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), pads=_pads(layer, in_shape, layer.window),
               group=layer.groups, dilations=list(layer.dilation_rate))
        pointwise = layer.weights_["pointwise_kernel"].transpose(3, 2, 0, 1)
        inputs = [g.x, g.const(f"{layer.name}/pointwise_kernel", pointwise)]
        if layer.use_bias:
            inputs.append(g.const(f"{layer.name}/bias", layer.weights_["bias"]))
        g.node("Conv", inputs, hint, kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0])
        g.activation(layer.act, hint)
    elif isinstance(layer, L.Conv2D):  # DepthwiseConv2D too: a Conv of C groups
        g.to_nchw(layer.describe())
        # (K, C/g, KH, KW)
        kernel = layer._conv_kernel(layer.weights_[layer._kernel_key]).transpose(3, 2, 0, 1)
        inputs = [g.x, g.const(f"{layer.name}/{layer._kernel_key}", kernel)]
        if layer.use_bias:
            inputs.append(g.const(f"{layer.name}/bias", layer.weights_["bias"]))
        g.node("Conv", inputs, hint, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), pads=_pads(layer, in_shape, layer.window),
               group=layer.groups, dilations=list(layer.dilation_rate))
        g.activation(layer.act, hint)
    elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        g.to_nchw(layer.describe())
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
                 "pads": _pads(layer, in_shape, layer.pool_size)}
        if isinstance(layer, L.MaxPooling2D):
            g.node("MaxPool", [g.x], hint, **attrs)
        else:
            g.node("AveragePool", [g.x], hint, count_include_pad=0, **attrs)
    elif isinstance(layer, L.Flatten):
        g.to_nhwc()
        g.node("Flatten", [g.x], hint, axis=1)
    elif isinstance(layer, L.Dense):
        g.to_nhwc()
        w = g.const(f"{layer.name}/kernel", layer.weights_["kernel"])
        if len(in_shape) == 1:
            inputs = [g.x, w]
            if layer.use_bias:
                inputs.append(g.const(f"{layer.name}/bias", layer.weights_["bias"]))
            g.node("Gemm", inputs, hint)
        else:  # Dense on the last axis of a higher-rank input
            g.node("MatMul", [g.x, w], hint)
            if layer.use_bias:
                g.node("Add", [g.x, g.const(f"{layer.name}/bias", layer.weights_["bias"])],
                       f"{hint}_bias")
        g.activation(layer.act, hint)
    elif isinstance(layer, L.Activation):
        g.activation(layer.act, hint)
    elif isinstance(layer, L.RandomCrop):  # inference: resize to the window's size
        if tuple(in_shape[:2]) != (layer.height, layer.width):
            g.to_nchw(layer.describe())
            x = g.x
            n = g.node("Slice", [g.node("Shape", [x], f"{hint}_shape"),
                                 g.const_int64(f"{hint}/zero", [0]),
                                 g.const_int64(f"{hint}/one", [1])], f"{hint}_batch")
            sizes = g.node("Concat", [n, g.const_int64(f"{hint}/size",
                                                       [in_shape[2], layer.height, layer.width])],
                           f"{hint}_sizes", axis=0)
            g.node("Resize", [x, "", "", sizes], hint, mode="linear",
                   coordinate_transformation_mode="half_pixel")
    elif isinstance(layer, L.Rescaling):
        scale, offset = layer._vectors(in_shape[-1])
        if g.nchw:  # per-channel values broadcast over (C, 1, 1)
            scale, offset = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
        g.node("Mul", [g.x, g.const(f"{layer.name}/scale", scale)], f"{hint}_scale")
        g.node("Add", [g.x, g.const(f"{layer.name}/offset", offset)], hint)
    elif isinstance(layer, L.PReLU):
        alpha = layer.weights_["alpha"]
        if g.nchw:
            alpha = alpha.transpose(2, 0, 1)  # (H|1, W|1, C|1) -> (C|1, H|1, W|1)
        g.node("PRelu", [g.x, g.const(f"{layer.name}/alpha", alpha)], hint)
    elif isinstance(layer, L.LocalResponseNormalization):
        g.to_nchw(layer.describe())
        size = 2 * layer.depth_radius + 1
        g.node("LRN", [g.x], hint, size=size, alpha=layer.alpha * size, beta=layer.beta,
               bias=layer.bias)
    elif isinstance(layer, L._NORMALIZATION_AND_SPATIAL):
        _export_normalization_or_spatial(g, layer, in_shape, out_shape)
    else:
        raise NotImplementedError(f"export_onnx: no ONNX mapping for {layer.describe()}")
    g.shape = tuple(out_shape)


def _int64_const(g: _GraphBuilder, name: str, values: list[int]) -> str:
    from onnx import numpy_helper

    if name not in g.const_names:
        g.const_names.add(name)
        g.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def _export_normalization_or_spatial(g: _GraphBuilder, layer: L.Layer, in_shape,
                                     out_shape) -> None:
    """The issue-19 layers: BatchNormalization, global pooling, padding, cropping, upsampling
    and Reshape."""
    hint = layer.name
    if isinstance(layer, L.BatchNormalization):
        w = layer.weights_
        c = in_shape[-1]
        gamma = w.get("gamma", np.ones(c, np.float32))
        beta = w.get("beta", np.zeros(c, np.float32))
        if len(in_shape) == 3:
            g.to_nchw(layer.describe())
        if len(in_shape) in (1, 3):
            inputs = [g.x, g.const(f"{hint}/gamma", gamma), g.const(f"{hint}/beta", beta),
                      g.const(f"{hint}/moving_mean", w["moving_mean"]),
                      g.const(f"{hint}/moving_variance", w["moving_variance"])]
            g.node("BatchNormalization", inputs, hint, epsilon=layer.epsilon)
        else:  # channels last on another rank: ONNX's BatchNormalization normalizes axis 1
            g.to_nhwc()
            var = w["moving_variance"].astype(np.float64)
            scale = gamma / np.sqrt(var + np.float32(layer.epsilon))
            shift = beta - w["moving_mean"] * scale
            g.node("Mul", [g.x, g.const(f"{hint}/scale", scale)], f"{hint}_scale")
            g.node("Add", [g.x, g.const(f"{hint}/shift", shift)], f"{hint}_shift")
    elif isinstance(layer, L._GlobalPooling2D):
        g.to_nchw(layer.describe())
        op = "GlobalMaxPool" if isinstance(layer, L.GlobalMaxPooling2D) else "GlobalAveragePool"
        g.node(op, [g.x], hint)
        if not layer.keepdims:
            g.node("Flatten", [g.x], f"{hint}_flatten", axis=1)
            g.nchw = False
    elif isinstance(layer, L.ZeroPadding2D):
        g.to_nchw(layer.describe())
        (t, b), (l_, r) = layer.padding
        g.node("Pad", [g.x, _int64_const(g, f"{hint}/pads", [0, 0, t, l_, 0, 0, b, r])], hint,
               mode="constant")
    elif isinstance(layer, L.Cropping2D):
        g.to_nchw(layer.describe())
        (t, _), (l_, _) = layer.cropping
        oh, ow = out_shape[0], out_shape[1]
        g.node("Slice", [g.x, _int64_const(g, f"{hint}/starts", [t, l_]),
                         _int64_const(g, f"{hint}/ends", [t + oh, l_ + ow]),
                         _int64_const(g, f"{hint}/axes", [2, 3])], hint)
    elif isinstance(layer, L.UpSampling2D):
        g.to_nchw(layer.describe())
        scales = g.const(f"{hint}/scales", np.array([1, 1, *layer.size], np.float32))
        g.node("Resize", [g.x, "", scales], hint, mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif isinstance(layer, L.Reshape):
        g.to_nhwc()
        g.node("Reshape", [g.x, _int64_const(g, f"{hint}/shape", [-1, *out_shape])], hint)
    else:
        raise NotImplementedError(f"export_onnx: no ONNX mapping for {layer.describe()}")


def _export_merge(g: _GraphBuilder, layer: L._Merge, inputs: list[tuple[str, bool, tuple]],
                  out_shape) -> None:
    """A merge on values that may differ in layout: all NCHW when they all are, else NHWC."""
    nchw = all(is_nchw for _, is_nchw, _ in inputs)
    names = []
    for name, is_nchw, shape in inputs:
        g.x, g.nchw, g.shape = name, is_nchw, shape
        if not nchw:
            g.to_nhwc()
        names.append(g.x)
    g.nchw = nchw
    hint = layer.name
    if isinstance(layer, L.Concatenate):
        g.node("Concat", names, hint, axis=1 if nchw else -1)
    elif isinstance(layer, L.Subtract):
        g.node("Sub", names, hint)
    elif isinstance(layer, L.Multiply):  # ONNX Mul is binary: multiply in order, as cnnfast does
        g.x = names[0]
        for k, other in enumerate(names[1:]):
            g.node("Mul", [g.x, other], f"{hint}_{k}")
    else:
        op = {L.Add: "Sum", L.Average: "Mean", L.Maximum: "Max"}[type(layer)]
        g.node(op, names, hint)
    g.shape = tuple(out_shape)


def to_onnx(model: Model, opset: int = 17, input_name: str = "input",
            output_name: str = "output"):
    """The ONNX ModelProto of `model` (see :func:`export_onnx`)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    if not isinstance(model, Model):
        raise TypeError(f"export_onnx: expected a cnnfast Model or Sequential, got "
                        f"{type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        # Softmax's single-axis semantics and the attribute forms used here need opset >= 13.
        raise ValueError(f"export_onnx: opset must be an int >= 13, got {opset!r}")
    model._require_built()
    g = _GraphBuilder(onnx, input_name, model.input_shape_)
    if len(model.input_shape_) == 3:
        g.to_nchw("input")
    if model._nodes:  # a graph: each call reads its inputs' (name, layout, shape)
        values = [(g.x, g.nchw, g.shape)]
        for reads, (layer, in_shape, out_shape) in zip(model._reads[1:], model.shapes()[1:]):
            if layer.takes_many_inputs:
                _export_merge(g, layer, [values[r] for r in reads], out_shape)
            else:
                g.x, g.nchw, g.shape = values[reads[0]]
                _export_layer(g, layer, in_shape, out_shape)
            values.append((g.x, g.nchw, g.shape))
        g.x, g.nchw, g.shape = values[-1]
    else:
        for layer, in_shape, out_shape in model.shapes():
            _export_layer(g, layer, in_shape, out_shape)
    g.to_nhwc()
    # The last node writes the graph output directly (or an Identity when there is no node).
    if g.nodes and g.x != input_name:
        g.nodes[-1].output[0] = output_name
    else:
        g.nodes.append(helper.make_node("Identity", [g.x], [output_name], name="identity"))
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *model.input_shape_])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       ["N", *model.output_shape_])],
        initializer=g.initializers,
    )
    opset_id = helper.make_opsetid("", opset)
    from cnnfast import __version__

    proto = helper.make_model(graph, opset_imports=[opset_id], producer_name="cnnfast",
                              producer_version=__version__)
    # The oldest IR version that carries this opset, so older runtimes accept the file.
    proto.ir_version = helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Model, path: str | os.PathLike, opset: int = 17,
                input_name: str = "input", output_name: str = "output") -> None:
    """Write `model` as an ONNX file for inference (Dropout removed).

    Parameters
    ----------
    model : Model or Sequential
        A model with a known input shape (built if needed); graphs too.
    path : str or path-like
        Destination, written atomically.
    opset : int
        ONNX opset of the default domain (>= 13; 17 by default).
    input_name, output_name : str
        Graph input float32 [N, *input_shape] (channels-last, as ``model.predict`` takes it)
        and output float32 [N, *output_shape].

    The graph is checked with ``onnx.checker.check_model(full_check=True)``. Needs the
    optional ``onnx`` package (``pip install cnnfast[onnx]``).
    """
    from cnnfast.saving import _write_atomic

    proto = to_onnx(model, opset, input_name, output_name)
    data = proto.SerializeToString()
    _write_atomic(path, lambda f: f.write(data))


__all__ = ["export_onnx", "to_onnx"]
