"""Keras-style layers: plain classes holding parameters and reusable buffers.

Every layer has `build(input_shape)`, `output_shape(input_shape)`, `forward(x, training)`,
`backward(dy)`, `params()`, `grads()` and `num_params()`. Shapes exclude the batch axis.
The math runs in cnnfast._core; buffers for outputs and gradients are kept between batches
so a training step does not allocate once shapes settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from cnnfast import _core, _sealing, graph, initializers, regularizers
from cnnfast.random import mask_seed, next_seed
from cnnfast.shapes import conv_padding, pair

Shape = tuple[int, ...]

_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "elu", "swish", "leaky_relu", "softmax")


def _positive_int(value: Any, what: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return int(value)


def _positive_pair(value: Any, what: str, layer: str) -> tuple[int, int]:
    try:
        a, b = pair(value, what)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{layer}: {err}") from None
    if a <= 0 or b <= 0:
        raise ValueError(f"{layer}: {what} must be positive, got {value!r}")
    return a, b


def _aligned_copy(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of a float32 array whose data starts on an `alignment`-byte boundary:
    the SIMD kernels read weight rows with full-width loads, and a load straddling two cache lines
    costs two (unaligned weights are copied to an aligned scratch on every call)."""
    raw = np.empty(a.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + a.nbytes].view(np.float32).reshape(a.shape)
    out[...] = a
    return out


def _float_weight(layer: Layer, name: str, value: Any, shape: Shape, what: str) -> np.ndarray:
    """`value` as float32 after checking it is numeric and has exactly `shape`."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: {layer.describe()} weight '{name}' must be numeric, "
                        f"got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{what}: {layer.describe()} weight '{name}' has shape {tuple(shape)}, "
                         f"got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


class _WeightAttribute:
    """A layer's weight as an attribute (``layer.kernel``, ``layer.bias``), as in Keras.

    Reading gives the live float32 array (in-place edits take effect). Assigning copies the new
    values into that array after a shape check instead of rebinding the name: the kernels, the
    optimizer's slots and the C++ inference executor all hold the array itself, so a rebound
    attribute would be silently ignored by every one of them.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: Layer | None, owner: type | None = None) -> Any:
        if layer is None:
            return self
        if not layer.built:
            raise AttributeError(f"{layer.describe()} has no '{self.name}' before it is built "
                                 "(give the model an input shape or call build())")
        return layer.weights_.get(self.name)

    def __set__(self, layer: Layer, value: Any) -> None:
        where = f"layer.{self.name} = ..."
        if not layer.built:
            raise ValueError(f"{where}: {layer.describe()} is not built yet, so it has no "
                             f"'{self.name}' to assign; build the model first (Input(shape) or "
                             "model.build)")
        target = layer.weights_.get(self.name)
        if target is None:
            if value is None:
                return
            raise ValueError(f"{where}: {layer.describe()} has no '{self.name}' (use_bias=False)")
        if value is None:
            raise ValueError(f"{where}: {layer.describe()} weight '{self.name}' cannot be removed "
                             "by assigning None")
        np.copyto(target, _float_weight(layer, self.name, value, target.shape, where))


class Layer:
    """Base class. Subclasses set `self.weights_` (name -> array) in build.

    Calling a layer on a symbolic tensor (``Conv2D(8, 3)(Input((28, 28, 1)))``) records a node
    of a functional graph (cnnfast.graph); calling it on an array computes the output.
    """

    # Merge layers take a list of inputs; every other layer one.
    takes_many_inputs = False

    def __init__(self, name: str | None = None, input_shape: Sequence[int] | None = None,
                 trainable: bool = True) -> None:
        self.name = name
        self.trainable = trainable
        self.built = False
        self.input_shape: Shape | None = None
        self.declared_input_shape = tuple(input_shape) if input_shape is not None else None
        # The first layer of a model need not propagate gradients to the data.
        self.need_input_grad = True
        self.weights_: dict[str, np.ndarray] = _sealing.WeightDict()
        self.gradients_: dict[str, np.ndarray] = {}
        self.regularizers_: dict[str, regularizers.Regularizer] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._nodes: list[graph.Node] = []  # symbolic calls, in order

    # -- naming -----------------------------------------------------------------------------
    @classmethod
    def default_name(cls) -> str:
        base = "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")
        base = base.replace("2_d", "2d").replace("p_re_l_u", "prelu").replace("e_l_u", "elu")
        base = base.replace("re_l_u", "relu")
        return base

    def describe(self) -> str:
        return f"{type(self).__name__} '{self.name or self.default_name()}'"

    # -- construction -----------------------------------------------------------------------
    def build(self, input_shape: Shape) -> None:
        self.output_shape(input_shape)  # validates
        self.input_shape = tuple(input_shape)
        self.built = True

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def _add_weight(self, name: str, shape: Shape, initializer, regularizer=None) -> np.ndarray:
        value = np.ascontiguousarray(initializers.get(initializer)(tuple(shape)), np.float32)
        if value.shape != tuple(shape):
            raise ValueError(
                f"{self.describe()}: initializer returned shape {value.shape} for weight "
                f"'{name}' of shape {tuple(shape)}"
            )
        value = _aligned_copy(value)
        self.weights_[name] = value
        self.gradients_[name] = np.zeros_like(value)
        reg = regularizers.get(regularizer)
        if reg is not None:
            self.regularizers_[name] = reg
        return value

    # -- parameters -------------------------------------------------------------------------
    # Weights no optimizer updates even while the layer is trainable: statistics the layer's
    # training forward updates itself (BatchNormalization's moving mean and variance).
    non_trainable_names: tuple[str, ...] = ()

    def trainable_names(self) -> list[str]:
        """The names of the weights the optimizer updates (none while ``trainable`` is False)."""
        if not self.trainable:
            return []
        return [n for n in self.weights_ if n not in self.non_trainable_names]

    def params(self) -> list[np.ndarray]:
        return list(self.weights_.values())

    def grads(self) -> list[np.ndarray]:
        return list(self.gradients_.values())

    def num_params(self) -> int:
        return int(sum(w.size for w in self.weights_.values()))

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """Shapes of this layer's weights for a given input shape (no build needed)."""
        return {}

    def get_weights(self) -> list[np.ndarray]:
        """Copies of this layer's weights, in Keras order (kernel, then bias); [] before build."""
        return [w.copy() for w in self.weights_.values()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Copy new values into this layer's weights (same count, order and shapes as
        :meth:`get_weights`); nothing changes unless every array fits.

        Raises
        ------
        ValueError
            The count or a shape differs; the message names the layer, the weight and the shapes.
        """
        names = list(self.weights_)
        if len(weights) != len(names):
            shapes = [tuple(w.shape) for w in self.weights_.values()]
            raise ValueError(f"set_weights: {self.describe()} has {len(names)} weight arrays "
                             f"{names} of shapes {shapes}, got {len(weights)}")
        converted = [_float_weight(self, n, new, self.weights_[n].shape, "set_weights")
                     for n, new in zip(names, weights)]
        for n, new in zip(names, converted):
            np.copyto(self.weights_[n], new)

    def regularization_loss(self) -> float:
        return sum(reg.loss(self.weights_[n]) for n, reg in self.regularizers_.items())

    def add_regularization_gradients(self) -> None:
        for n, reg in self.regularizers_.items():
            reg.add_gradient(self.gradients_[n], self.weights_[n])

    # -- compute ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: Any, training: bool = False) -> Any:
        if graph.is_symbolic(x):
            return graph.call(self, x)
        if self.takes_many_inputs:
            xs = [np.ascontiguousarray(a, np.float32) for a in x]
            if not self.built:
                self.build([a.shape[1:] for a in xs])
            return self.forward(xs, training).copy()
        x = np.ascontiguousarray(x, np.float32)
        if not self.built:
            self.build(x.shape[1:])
        return self.forward(x, training).copy()

    def _buffer(self, key: str, shape: Shape, dtype=np.float32) -> np.ndarray:
        """A reusable array of the given shape (reallocated only when the shape changes)."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[key] = buf
        return buf

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (JSON-ready), plus name and trainable."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """The layer `get_config` describes (weights are created by build, as for a new layer)."""
        config = dict(config)
        trainable = config.pop("trainable", True)
        if not isinstance(trainable, bool):
            raise TypeError(f"{cls.__name__}.from_config: trainable must be a bool, got {trainable!r}")
        for key, value in config.items():
            if key.endswith("_regularizer") and value is not None:
                config[key] = regularizers.get(value)
        layer = cls(**config)
        layer.trainable = trainable
        return layer

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class _Activation:
    """An activation applied after a layer's linear part, with its backward, on layer buffers."""

    def __init__(self, identifier: str | None, layer: str) -> None:
        kind = "linear" if identifier is None else identifier
        if not isinstance(kind, str) or kind.lower() not in _ACTIVATIONS:
            raise ValueError(f"{layer}: unknown activation {identifier!r}; known: {list(_ACTIVATIONS)}")
        self.kind = kind.lower()
        # ELU's alpha (Keras default 1.0); leaky_relu's negative slope (keras.activations
        # default 0.2; the LeakyReLU layer sets its own, 0.3 by default).
        self.alpha = 0.2 if self.kind == "leaky_relu" else 1.0
        self.z: np.ndarray | None = None  # pre-activation of the last forward pass
        self.y: np.ndarray | None = None

    @property
    def fused_kernel_activation(self) -> str:
        """What conv/dense kernels can apply in their epilogue: "relu" or "linear"."""
        return "relu" if self.kind == "relu" else "linear"

    @property
    def conv_kernel_activation(self) -> str:
        """What the conv kernel applies to its output while in cache: the activations whose
        backward reads the output alone (the pre-activation is then never stored)."""
        return self.kind if self.kind in ("relu", "tanh", "sigmoid") else "linear"

    def forward(self, owner: Layer, z: np.ndarray, applied: bool = False) -> np.ndarray:
        """Apply the activation to z; `applied` means the kernel already did (fused ReLU)."""
        self.z = z
        if self.kind == "linear" or applied:
            self.y = z
        elif self.kind == "softmax":
            self.y = owner._buffer("act", z.shape)
            _core.softmax_forward(self.y.reshape(-1, z.shape[-1]), z.reshape(-1, z.shape[-1]))
        else:
            self.y = owner._buffer("act", z.shape)
            _core.activation_forward(self.y, z, self.kind, self.alpha)
        return self.y

    def backward(self, dy: np.ndarray, done: bool = False) -> np.ndarray:
        """d(loss)/dz from d(loss)/dy, written into dy's buffer (dy is not used afterwards).
        ``done``: dy is already d(loss)/dz (the loss differentiated the softmax)."""
        if self.kind == "linear" or done:
            return dy
        if self.kind == "softmax":
            c = dy.shape[-1]
            _core.softmax_backward(dy.reshape(-1, c), self.y.reshape(-1, c), dy.reshape(-1, c))
            return dy
        _core.activation_backward(dy, self.z, self.y, dy, self.kind, self.alpha)
        return dy


class InputLayer(Layer):
    """Declares the per-sample input shape; the first element of a Sequential model."""

    def __init__(self, shape: Sequence[int], name: str | None = None) -> None:
        if shape is None or not isinstance(shape, (tuple, list)) or not shape:
            raise ValueError(f"Input: shape must be a non-empty tuple, got {shape!r}")
        for s in shape:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
                raise ValueError(f"Input: every dimension must be a positive int, got {tuple(shape)}")
        super().__init__(name=name, input_shape=tuple(int(s) for s in shape))

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy

    def get_config(self):
        return {**super().get_config(), "shape": list(self.declared_input_shape)}


def Input(shape: Sequence[int], name: str | None = None) -> graph.SymbolicTensor:
    """Keras-style ``Input(shape)``: the per-sample shape, batch axis excluded.

    Returns the symbolic tensor a functional model starts from (``cf.Model(inputs, outputs)``);
    as the first element of a Sequential it declares the input shape.
    """
    layer = InputLayer(shape, name=name)
    layer.name = layer.name or "input_layer"
    layer.build(layer.declared_input_shape)
    node = graph.Node(layer, [], 0)
    node.output = graph.SymbolicTensor(node, layer.declared_input_shape)
    layer._nodes.append(node)
    return node.output


class Conv2D(Layer):
    """2-D convolution on NHWC inputs with a (KH, KW, C_in/groups, filters) kernel.

    Parameters follow Keras: `filters`, `kernel_size`, `strides=(1, 1)`, `padding="valid"`
    ("valid", "same", or explicit ints / (pad_h, pad_w) as in PyTorch), `activation=None`,
    `use_bias=True`, Glorot-uniform kernel and zero bias. `groups` splits channels into
    independent groups (AlexNet's two-tower connectivity). `dilation_rate` spaces the kernel
    taps (atrous convolution): a (k, k) kernel with rate d spans (k - 1) * d + 1 inputs.
    """

    kernel = _WeightAttribute()
    bias = _WeightAttribute()
    # The name of the convolution's kernel weight (DepthwiseConv2D: "depthwise_kernel").
    _kernel_key = "kernel"

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding="valid",
                 activation: str | None = None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, groups: int = 1,
                 dilation_rate=(1, 1), input_shape=None, name: str | None = None,
                 **kwargs) -> None:
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        who = f"{type(self).__name__} '{name}'" if name else type(self).__name__
        self.filters = _positive_int(filters, "filters", who)
        self.kernel_size = _positive_pair(kernel_size, "kernel_size", who)
        self.strides = _positive_pair(strides, "strides", who)
        self.dilation_rate = _positive_pair(dilation_rate, "dilation_rate", who)
        self.groups = _positive_int(groups, "groups", who)
        if self.filters % self.groups:
            raise ValueError(f"{who}: filters={self.filters} is not divisible by groups={self.groups}")
        if isinstance(padding, str):
            if padding.lower() not in ("valid", "same"):
                raise ValueError(f'{who}: padding must be "valid", "same" or ints, got {padding!r}')
            self.padding: Any = padding.lower()
        else:
            ph, pw = pair(padding, "padding")
            if ph < 0 or pw < 0:
                raise ValueError(f"{who}: padding must be non-negative, got {padding!r}")
            self.padding = (ph, pw)
        self.act = _Activation(activation, who)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _geometry(self, input_shape: Shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.describe()}: expects input of shape (H, W, C) per sample, got {tuple(input_shape)}"
            )
        h, w, c = input_shape
        if c % self.groups:
            raise ValueError(
                f"{self.describe()}: input channels {c} (input shape {tuple(input_shape)}) "
                f"not divisible by groups={self.groups}"
            )
        pads = self.padding if isinstance(self.padding, str) else None
        ph, pw = (0, 0) if pads else self.padding
        kh, kw = self.window
        try:
            top, _, oh = conv_padding(h, kh, self.strides[0], pads or (ph, ph))
            left, _, ow = conv_padding(w, kw, self.strides[1], pads or (pw, pw))
        except ValueError as err:
            raise ValueError(
                f"{self.describe()}: kernel {self.kernel_size}"
                f"{'' if self.dilation_rate == (1, 1) else f' with dilation_rate {self.dilation_rate}'}"
                f" with strides {self.strides} and padding "
                f"{self.padding!r} does not fit input shape {tuple(input_shape)}: {err}"
            ) from None
        return top, left, oh, ow

    @property
    def window(self) -> tuple[int, int]:
        """The input positions the (dilated) kernel spans per axis: (k - 1) * rate + 1."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def output_shape(self, input_shape: Shape) -> Shape:
        _, _, oh, ow = self._geometry(input_shape)
        return (oh, ow, self.filters)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kh, kw = self.kernel_size
        shapes = {"kernel": (kh, kw, input_shape[-1] // self.groups, self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def build(self, input_shape: Shape) -> None:
        self.pad_top, self.pad_left, self.oh, self.ow = self._geometry(input_shape)
        shapes = self.param_shapes(input_shape)
        self._add_weight(self._kernel_key, shapes[self._kernel_key], self.kernel_initializer,
                         self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", shapes["bias"], self.bias_initializer, self.bias_regularizer)
        super().build(input_shape)

    def _conv_kernel(self, kernel: np.ndarray) -> np.ndarray:
        """The kernel weight (or its gradient) as the kernels read it, (KH, KW, C/groups, K)."""
        return kernel

    def _args(self):
        return (self.strides[0], self.strides[1], self.pad_top, self.pad_left, self.groups,
                self.dilation_rate[0], self.dilation_rate[1])

    def forward(self, x, training=False):
        self.x = x
        z = self._buffer("z", (x.shape[0], self.oh, self.ow, self.filters))
        fused = self.act.conv_kernel_activation
        _core.conv2d_forward(z, x, self._conv_kernel(self.weights_[self._kernel_key]),
                             self.weights_.get("bias"), *self._args(), activation=fused)
        # The derivatives of the fused activations are read off the output (relu: y > 0 iff
        # z > 0; tanh: 1 - y^2; sigmoid: y (1 - y)), so the fused output serves as z.
        return self.act.forward(self, z, applied=fused != "linear")

    def backward(self, dy, activation_done=False):
        # activation_done: dy is the gradient of the pre-activation (softmax + cross-entropy).
        dz = self.act.backward(dy, activation_done)
        _core.conv2d_backward_weights(self._conv_kernel(self.gradients_[self._kernel_key]),
                                      self.gradients_.get("bias"), self.x, dz, *self._args())
        if not self.need_input_grad:
            return None
        dx = self._buffer("dx", self.x.shape)
        _core.conv2d_backward_data(dx, dz, self._conv_kernel(self.weights_[self._kernel_key]),
                                   *self._args())
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "activation": self.act.kind, "use_bias": self.use_bias, "groups": self.groups,
                "dilation_rate": list(self.dilation_rate),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class DepthwiseConv2D(Conv2D):
    """Depthwise 2-D convolution (Keras ``DepthwiseConv2D``): each input channel convolved with
    its own ``depth_multiplier`` filters, output channel ``c * depth_multiplier + m``.

    The weight ``depthwise_kernel`` has Keras' shape (KH, KW, C, depth_multiplier); ``bias``
    (C * depth_multiplier,). Strides, padding, dilation_rate and activation as in
    :class:`Conv2D`. It runs as a convolution of C groups on the depthwise kernels.
    """

    depthwise_kernel = _WeightAttribute()
    _kernel_key = "depthwise_kernel"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier: int = 1,
                 activation: str | None = None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, dilation_rate=(1, 1),
                 input_shape=None, name: str | None = None, **kwargs) -> None:
        super().__init__(1, kernel_size, strides=strides, padding=padding, activation=activation,
                         use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, dilation_rate=dilation_rate,
                         input_shape=input_shape, name=name, **kwargs)
        who = f"DepthwiseConv2D '{name}'" if name else "DepthwiseConv2D"
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", who)
        self.filters = self.depth_multiplier  # C * depth_multiplier once the input is known

    def output_shape(self, input_shape: Shape) -> Shape:
        _, _, oh, ow = self._geometry(input_shape)
        return (oh, ow, input_shape[-1] * self.depth_multiplier)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kh, kw = self.kernel_size
        c, m = input_shape[-1], self.depth_multiplier
        shapes = {"depthwise_kernel": (kh, kw, c, m)}
        if self.use_bias:
            shapes["bias"] = (c * m,)
        return shapes

    def build(self, input_shape: Shape) -> None:
        self.output_shape(input_shape)  # validates before the channel count is taken
        self.groups = input_shape[-1]
        self.filters = input_shape[-1] * self.depth_multiplier
        super().build(input_shape)

    def _conv_kernel(self, kernel):
        # (KH, KW, C, M) is (KH, KW, 1, C*M) in memory: a view, gradients land in the weight.
        kh, kw, c, m = kernel.shape
        return kernel.reshape(kh, kw, 1, c * m)

    def get_config(self):
        return {**Layer.get_config(self), "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "depth_multiplier": self.depth_multiplier, "activation": self.act.kind,
                "use_bias": self.use_bias, "dilation_rate": list(self.dilation_rate),
                "depthwise_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class SeparableConv2D(DepthwiseConv2D):
    """Depthwise separable convolution (Keras ``SeparableConv2D``, MobileNet's block): a
    depthwise convolution (``depthwise_kernel`` (KH, KW, C, depth_multiplier), no bias) then a
    pointwise 1x1 convolution (``pointwise_kernel`` (1, 1, C * depth_multiplier, filters)) with
    ``bias`` (filters,) and the activation. Strides, padding and dilation_rate apply to the
    depthwise part.
    """

    pointwise_kernel = _WeightAttribute()

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding="valid",
                 depth_multiplier: int = 1, activation: str | None = None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, dilation_rate=(1, 1),
                 input_shape=None, name: str | None = None, **kwargs) -> None:
        super().__init__(kernel_size, strides=strides, padding=padding,
                         depth_multiplier=depth_multiplier, activation=activation,
                         use_bias=use_bias, depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, dilation_rate=dilation_rate,
                         input_shape=input_shape, name=name, **kwargs)
        who = f"SeparableConv2D '{name}'" if name else "SeparableConv2D"
        self.pointwise_filters = _positive_int(filters, "filters", who)
        self.pointwise_initializer = pointwise_initializer
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def output_shape(self, input_shape: Shape) -> Shape:
        oh, ow, _ = super().output_shape(input_shape)
        return (oh, ow, self.pointwise_filters)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kh, kw = self.kernel_size
        cm = input_shape[-1] * self.depth_multiplier
        shapes = {"depthwise_kernel": (kh, kw, input_shape[-1], self.depth_multiplier),
                  "pointwise_kernel": (1, 1, cm, self.pointwise_filters)}
        if self.use_bias:
            shapes["bias"] = (self.pointwise_filters,)
        return shapes

    def build(self, input_shape: Shape) -> None:
        self.pad_top, self.pad_left, self.oh, self.ow = self._geometry(input_shape)
        self.groups = input_shape[-1]
        self.filters = input_shape[-1] * self.depth_multiplier  # the depthwise outputs
        shapes = self.param_shapes(input_shape)
        self._add_weight("depthwise_kernel", shapes["depthwise_kernel"], self.kernel_initializer,
                         self.kernel_regularizer)
        self._add_weight("pointwise_kernel", shapes["pointwise_kernel"],
                         self.pointwise_initializer, self.pointwise_regularizer)
        if self.use_bias:
            self._add_weight("bias", shapes["bias"], self.bias_initializer, self.bias_regularizer)
        Layer.build(self, input_shape)

    def forward(self, x, training=False):
        # The same kernels in the same order as the plan's two steps (plan.cpp).
        self.x = x
        mid = self._buffer("mid", (x.shape[0], self.oh, self.ow, self.filters))
        _core.conv2d_forward(mid, x, self._conv_kernel(self.weights_["depthwise_kernel"]), None,
                             *self._args())
        self.mid = mid
        z = self._buffer("z", (x.shape[0], self.oh, self.ow, self.pointwise_filters))
        fused = self.act.conv_kernel_activation
        _core.conv2d_forward(z, mid, self.weights_["pointwise_kernel"], self.weights_.get("bias"),
                             activation=fused)
        return self.act.forward(self, z, applied=fused != "linear")

    def backward(self, dy, activation_done=False):
        dz = self.act.backward(dy, activation_done)
        _core.conv2d_backward_weights(self.gradients_["pointwise_kernel"],
                                      self.gradients_.get("bias"), self.mid, dz)
        dmid = self._buffer("dmid", self.mid.shape)
        _core.conv2d_backward_data(dmid, dz, self.weights_["pointwise_kernel"])
        _core.conv2d_backward_weights(self._conv_kernel(self.gradients_["depthwise_kernel"]),
                                      None, self.x, dmid, *self._args())
        if not self.need_input_grad:
            return None
        dx = self._buffer("dx", self.x.shape)
        _core.conv2d_backward_data(dx, dmid, self._conv_kernel(self.weights_["depthwise_kernel"]),
                                   *self._args())
        return dx

    def get_config(self):
        config = super().get_config()
        return {**config, "filters": self.pointwise_filters,
                "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer)}


class _Pool2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None,
                 input_shape=None, **kwargs) -> None:
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        who = f"{type(self).__name__} '{name}'" if name else type(self).__name__
        self.pool_size = _positive_pair(pool_size, "pool_size", who)
        self.strides = self.pool_size if strides is None else _positive_pair(strides, "strides", who)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f'{who}: padding must be "valid" or "same", got {padding!r}')
        self.padding = padding.lower()

    def _geometry(self, input_shape: Shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.describe()}: expects input of shape (H, W, C) per sample, got {tuple(input_shape)}"
            )
        h, w, _ = input_shape
        try:
            top, _, oh = conv_padding(h, self.pool_size[0], self.strides[0], self.padding)
            left, _, ow = conv_padding(w, self.pool_size[1], self.strides[1], self.padding)
        except ValueError as err:
            raise ValueError(
                f"{self.describe()}: pool {self.pool_size} with strides {self.strides} does not fit "
                f"input shape {tuple(input_shape)}: {err}"
            ) from None
        return top, left, oh, ow

    def output_shape(self, input_shape):
        _, _, oh, ow = self._geometry(input_shape)
        return (oh, ow, input_shape[-1])

    def build(self, input_shape):
        self.pad_top, self.pad_left, self.oh, self.ow = self._geometry(input_shape)
        super().build(input_shape)

    def _args(self):
        return (self.pool_size[0], self.pool_size[1], self.strides[0], self.strides[1],
                self.pad_top, self.pad_left)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pool2D):
    """Max pooling (Keras defaults: pool 2x2, strides = pool_size, "valid")."""

    def forward(self, x, training=False):
        n, c = x.shape[0], x.shape[-1]
        y = self._buffer("y", (n, self.oh, self.ow, c))
        self.argmax = self._buffer("argmax", y.shape, np.int32) if training else None
        _core.max_pool2d_forward(y, self.argmax, x, *self._args())
        self.x_shape = x.shape
        self.y = y
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        _core.max_pool2d_backward(dx, dy, self.argmax, *self._args())
        return dx


class AveragePooling2D(_Pool2D):
    """Average pooling; with "same" padding the padded positions are not counted (Keras)."""

    def forward(self, x, training=False):
        n, c = x.shape[0], x.shape[-1]
        y = self._buffer("y", (n, self.oh, self.ow, c))
        _core.avg_pool2d_forward(y, x, *self._args())
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        _core.avg_pool2d_backward(dx, dy, *self._args())
        return dx


class Flatten(Layer):
    """Row-major flatten over (H, W, C), as Keras does for channels-last data."""

    def __init__(self, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.x_shape)


class Dense(Layer):
    """Fully connected layer y = act(x @ kernel + bias), kernel (in, units)."""

    kernel = _WeightAttribute()
    bias = _WeightAttribute()

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None,
                 name: str | None = None, **kwargs) -> None:
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        who = f"Dense '{name}'" if name else "Dense"
        self.units = _positive_int(units, "units", who)
        self.act = _Activation(activation, who)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.describe()}: needs at least a feature axis, got {input_shape}")
        return tuple(input_shape[:-1]) + (self.units,)

    def param_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def build(self, input_shape):
        self.output_shape(input_shape)  # validates (a rank-0 shape has no feature axis)
        shapes = self.param_shapes(input_shape)
        self._add_weight("kernel", shapes["kernel"], self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", shapes["bias"], self.bias_initializer, self.bias_regularizer)
        super().build(input_shape)

    def forward(self, x, training=False):
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])  # Dense acts on the last axis, like Keras
        self.x2 = x2
        z = self._buffer("z", (x2.shape[0], self.units))
        fused = self.act.fused_kernel_activation
        _core.dense_forward(z, x2, self.weights_["kernel"], self.weights_.get("bias"),
                            activation=fused)
        y = self.act.forward(self, z, applied=fused != "linear")
        return y.reshape(self.x_shape[:-1] + (self.units,))

    def backward(self, dy, activation_done=False):
        # activation_done: dy is the gradient of the pre-activation (softmax + cross-entropy).
        dz = self.act.backward(dy.reshape(-1, self.units), activation_done)
        dx = self._buffer("dx", self.x2.shape) if self.need_input_grad else None
        _core.dense_backward(dx, self.gradients_["kernel"], self.gradients_.get("bias"),
                             self.x2, self.weights_["kernel"], dz)
        return None if dx is None else dx.reshape(self.x_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.act.kind,
                "use_bias": self.use_bias,
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class RandomLayer(Layer):
    """Base of the layers that draw one seed per training call (Dropout, GaussianNoise,
    SpatialDropout2D, RandomFlip, ...): from cnnfast's generator (``cf.set_seed``), or, with a layer
    ``seed``, a fresh but reproducible one per call. The C++ training plan draws them in the
    same order (Model._plan_step), so both walks see the same randomness."""

    def _set_seed(self, seed: Any) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._calls = 0

    def _draws_seed(self) -> bool:
        """Whether a training call draws a seed (False when the layer has nothing to do)."""
        return True

    def _draw_seed(self) -> int:
        seed = next_seed() if self.seed is None else (self.seed * 1_000_003 + self._calls)
        self._calls += 1
        # Data-parallel ranks share the seed sequence; each turns it into its own stream.
        return mask_seed(seed)


class _MaskDropout(RandomLayer):
    """Dropout by a mask drawn each training call, the kept values scaled by 1/(1-rate); the
    identity at inference. Subclasses name the mask's shape and its two kernels."""

    _allowed_defaults: ClassVar[dict] = {}
    _bool_rate = True  # Dropout has always taken False as 0 (and refused True as 1)
    # The _core kernels, as staticmethods: (y, mask, x, rate, seed) and (dx, dy, mask, rate).
    _forward_kernel = _backward_kernel = None

    def __init__(self, rate: float, seed: int | None = None, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, self._allowed_defaults)
        if (isinstance(rate, bool) and not self._bool_rate) \
                or not isinstance(rate, (int, float, np.floating)) or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{type(self).__name__}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self._set_seed(seed)

    def _draws_seed(self) -> bool:
        return self.rate > 0.0

    def _mask_shape(self, x_shape: tuple) -> tuple:
        return x_shape

    def forward(self, x, training=False):
        self.active = training and self.rate > 0.0
        if not self.active:
            return x
        y = self._buffer("y", x.shape)
        self.mask = self._buffer("mask", self._mask_shape(x.shape), np.uint8)
        self._forward_kernel(y, self.mask, x, self.rate, self._draw_seed())
        return y

    def backward(self, dy):
        if not self.active:
            return dy
        self._backward_kernel(dy, dy, self.mask, self.rate)
        return dy

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Dropout(_MaskDropout):
    """Inverted dropout: in training, zero a `rate` fraction and scale the rest by 1/(1-rate)."""

    _allowed_defaults: ClassVar[dict] = {"noise_shape": None}
    _forward_kernel = staticmethod(_core.dropout_forward)
    _backward_kernel = staticmethod(_core.dropout_backward)


class GaussianNoise(RandomLayer):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` in training (Keras
    ``GaussianNoise``); the identity at inference. The gradient passes unchanged."""

    def __init__(self, stddev: float, seed: int | None = None, name=None, input_shape=None,
                 **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float, np.floating,
                                                               np.integer)) \
                or not np.isfinite(stddev) or stddev < 0:
            raise ValueError(f"GaussianNoise: stddev must be a finite number >= 0, got {stddev!r}")
        self.stddev = float(stddev)
        self._set_seed(seed)

    def _draws_seed(self) -> bool:
        return self.stddev > 0.0

    def forward(self, x, training=False):
        if not (training and self.stddev > 0.0):
            return x
        y = self._buffer("y", x.shape)
        _core.gaussian_noise_forward(y, x, self.stddev, self._draw_seed())
        return y

    def backward(self, dy):
        return dy

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class SpatialDropout2D(_MaskDropout):
    """Dropout of whole feature maps (Keras ``SpatialDropout2D``): in training each channel of
    each image is zeroed with probability `rate` and the kept ones scaled by 1/(1-rate)."""

    _allowed_defaults: ClassVar[dict] = {"data_format": "channels_last"}
    _bool_rate = False
    _forward_kernel = staticmethod(_core.spatial_dropout_forward)
    _backward_kernel = staticmethod(_core.spatial_dropout_backward)

    def _mask_shape(self, x_shape: tuple) -> tuple:
        return (x_shape[0], x_shape[-1])  # one per image and channel

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.describe()}: expects input of shape (H, W, C) per sample, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)


class RandomFlip(RandomLayer):
    """Flips each image left-right and/or upside down with probability 1/2 each, in training
    only (Keras ``RandomFlip``; mode "horizontal", "vertical" or "horizontal_and_vertical", the
    default). The identity at inference; the gradient is flipped back."""

    _MODES: ClassVar[dict[str, int]] = {"horizontal": 1, "vertical": 2,
                                        "horizontal_and_vertical": 3}

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None, name=None,
                 input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        if mode not in self._MODES:
            raise ValueError(f"RandomFlip: mode must be one of {list(self._MODES)}, got {mode!r}")
        self.mode = mode
        self._set_seed(seed)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.describe()}: expects input of shape (H, W, C) per sample, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.active = training
        if not training:
            return x
        y = self._buffer("y", x.shape)
        self.flips = self._buffer("flips", (x.shape[0],), np.uint8)
        _core.random_flip_forward(y, self.flips, x, self._MODES[self.mode], self._draw_seed())
        return y

    def backward(self, dy):
        if not self.active:
            return dy
        dx = self._buffer("dx", dy.shape)
        _core.random_flip_backward(dx, dy, self.flips)
        return dx

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "seed": self.seed}


class RandomCrop(RandomLayer):
    """Keras ``RandomCrop(height, width)``: in training a (height, width) window at a random
    offset, one per batch as Keras draws it, cut from every image (when the input is not larger
    on both axes, Keras' centred window instead); at inference the whole image resized
    bilinearly (half-pixel centres) to (height, width), as Keras 3 does, which is the identity
    for an input of that size. The gradient goes back into the window, zero elsewhere."""

    def __init__(self, height: int, width: int, seed: int | None = None, name=None,
                 input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        who = f"RandomCrop '{name}'" if name else "RandomCrop"
        self.height = _positive_int(height, "height", who)
        self.width = _positive_int(width, "width", who)
        self._set_seed(seed)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.describe()}: expects input of shape (H, W, C) per sample, "
                             f"got {tuple(input_shape)}")
        if self.height > input_shape[0] or self.width > input_shape[1]:
            raise ValueError(f"{self.describe()}: window {self.height}x{self.width} is larger "
                             f"than the input {tuple(input_shape)}")
        return (self.height, self.width, input_shape[2])

    def forward(self, x, training=False):
        self.training = training
        y = self._buffer("y", (x.shape[0], self.height, self.width, x.shape[3]))
        if training:
            self.offsets = self._buffer("offsets", (2,), np.int32)
            _core.random_crop_forward(y, self.offsets, x, self._draw_seed())
        elif x.shape[1:3] == (self.height, self.width):
            return x
        else:
            _core.resize_bilinear_forward(y, x)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        if not self.training:
            raise RuntimeError(f"{self.describe()}: backward needs a forward pass with "
                               "training=True")
        dx = self._buffer("dx", self.x_shape)
        _core.random_crop_backward(dx, dy, self.offsets)
        return dx

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "seed": self.seed}


def _factor_pair(value: Any, what: str, who: str, bound: float | None) -> tuple[float, float]:
    """A Keras factor as (lower, upper): a number f is (-f, f)."""
    try:
        if isinstance(value, (list, tuple)):
            lo, hi = (float(v) for v in value)
        else:
            if isinstance(value, bool):
                raise TypeError
            hi = float(value)
            lo = -hi
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {what} must be a number or (lower, upper), got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) or (
            bound is not None and (lo < -bound or hi > bound)):
        limit = f", both in [-{bound}, {bound}]" if bound is not None else ""
        raise ValueError(f"{who}: {what} needs lower <= upper{limit}, got {value!r}")
    return lo, hi


def _factor_config(value: Any) -> float | list[float]:
    """A checked factor as the config stores it (JSON: a number or a list)."""
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


class _RandomAffine(RandomLayer):
    """Per-image resampling in training through a random projective transform (Keras'
    affine_transform with TensorFlow's fill modes; random_affine.h); the identity at inference.
    The gradient is the adjoint of the resampling."""

    kind = ""

    def _init_resampling(self, fill_mode: str, interpolation: str, fill_value: float,
                         seed: Any) -> None:
        who = type(self).__name__
        if fill_mode not in ("reflect", "wrap", "constant", "nearest"):
            raise ValueError(f"{who}: fill_mode must be reflect, wrap, constant or nearest, "
                             f"got {fill_mode!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"{who}: interpolation must be bilinear or nearest, got "
                             f"{interpolation!r}")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self._set_seed(seed)

    def _factors(self) -> list[float]:
        raise NotImplementedError

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.describe()}: expects input of shape (H, W, C) per sample, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.active = training
        if not training:
            return x
        n, h, w, _ = x.shape
        self.transforms = self._buffer("transforms", (n, 8))
        _core.random_affine_transforms(self.transforms, self.kind, self._factors(), n, h, w,
                                       self._draw_seed())
        y = self._buffer("y", x.shape)
        _core.affine_transform_forward(y, x, self.transforms, self.fill_mode,
                                       self.interpolation, self.fill_value)
        return y

    def backward(self, dy):
        if not self.active:
            return dy
        dx = self._buffer("dx", dy.shape)
        _core.affine_transform_backward(dx, dy, self.transforms, self.fill_mode,
                                        self.interpolation)
        return dx

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "seed": self.seed,
                "fill_value": self.fill_value}


class RandomTranslation(_RandomAffine):
    """Keras ``RandomTranslation(height_factor, width_factor)``: each image shifted by a
    uniform fraction of its height and width (a number f means [-f, f]; factors in [-1, 1]),
    resampled bilinearly with ``fill_mode="reflect"`` by default; training only."""

    kind = "translation"

    def __init__(self, height_factor, width_factor, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        self._h = _factor_pair(height_factor, "height_factor", "RandomTranslation", 1.0)
        self._w = _factor_pair(width_factor, "width_factor", "RandomTranslation", 1.0)
        self.height_factor = _factor_config(height_factor)
        self.width_factor = _factor_config(width_factor)
        self._init_resampling(fill_mode, interpolation, fill_value, seed)

    def _factors(self):
        return [*self._h, *self._w]

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomRotation(_RandomAffine):
    """Keras ``RandomRotation(factor)``: each image rotated about its centre by a uniform
    angle of factor * 2 pi (a number f means [-f, f]), resampled bilinearly with
    ``fill_mode="reflect"`` by default; training only."""

    kind = "rotation"

    def __init__(self, factor, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0, name=None, input_shape=None,
                 **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        self._f = _factor_pair(factor, "factor", "RandomRotation", None)
        self.factor = _factor_config(factor)
        self._init_resampling(fill_mode, interpolation, fill_value, seed)

    def _factors(self):
        return list(self._f)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class Activation(Layer):
    """Applies a named activation ("relu", "sigmoid", "tanh", "elu", "swish", "softmax", "linear")."""

    def __init__(self, activation: str, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        self.act = _Activation(activation, f"Activation '{name}'" if name else "Activation")

    def forward(self, x, training=False):
        # The activation writes its own buffer, so x (the previous layer's output) stays intact.
        return self.act.forward(self, x)

    def backward(self, dy, activation_done=False):
        return self.act.backward(dy, activation_done)

    def get_config(self):
        return {**super().get_config(), "activation": self.act.kind}


class ReLU(Activation):
    def __init__(self, name=None, **kwargs):
        super().__init__("relu", name=name, **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class ELU(Activation):
    def __init__(self, alpha: float = 1.0, name=None, **kwargs):
        super().__init__("elu", name=name, **kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
            raise TypeError(f"ELU: alpha must be a number, got {alpha!r}")
        self.act.alpha = float(alpha)

    def get_config(self):
        return {**Layer.get_config(self), "alpha": self.act.alpha}


class LeakyReLU(Activation):
    """Leaky ReLU: y = x for x > 0, negative_slope * x otherwise (Keras 3 default 0.3).

    ``alpha`` is the Keras 2 name of ``negative_slope`` and is accepted for old scripts.
    """

    def __init__(self, negative_slope: float = 0.3, name=None, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__("leaky_relu", name=name, **kwargs)
        if isinstance(negative_slope, bool) or not isinstance(
                negative_slope, (int, float, np.floating, np.integer)) \
                or not np.isfinite(negative_slope) or negative_slope < 0:
            raise ValueError(f"{self.describe()}: negative_slope must be a finite number >= 0, "
                             f"got {negative_slope!r}")
        self.act.alpha = float(negative_slope)

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.act.alpha}


class Rescaling(Layer):
    """``y = x * scale + offset`` (Keras ``Rescaling``), e.g. ``Rescaling(1 / 255)`` or
    ``Rescaling(1 / 127.5, offset=-1)``.

    ``scale`` and ``offset`` are numbers or one value per channel (the last axis). The product
    is rounded to float32 before the offset is added, as Keras' two float32 operations. No
    weights; the gradient is ``dy * scale``.
    """

    def __init__(self, scale: Any, offset: Any = 0.0, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        self.scale = self._read("scale", scale)
        self.offset = self._read("offset", offset)

    def _read(self, what: str, value: Any) -> float | list[float]:
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu" or arr.ndim > 1 or arr.size == 0 \
                or not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.describe()}: {what} must be a finite number or a list of "
                             f"them (one per channel), got {value!r}")
        return float(arr) if arr.ndim == 0 else [float(v) for v in arr]

    def _vectors(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """scale and offset as float32 vectors of one length (1 or `channels`)."""
        s = np.atleast_1d(np.asarray(self.scale, np.float32))
        o = np.atleast_1d(np.asarray(self.offset, np.float32))
        for what, v in (("scale", s), ("offset", o)):
            if v.size not in (1, channels):
                raise ValueError(f"{self.describe()}: {what} has {v.size} values for "
                                 f"{channels} channels (need 1 or {channels})")
        n = max(s.size, o.size)
        return (np.ascontiguousarray(np.broadcast_to(s, (n,))),
                np.ascontiguousarray(np.broadcast_to(o, (n,))))

    def output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.describe()}: needs at least one axis, got {input_shape}")
        self._vectors(input_shape[-1])
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.s, o = self._vectors(x.shape[-1])
        y = self._buffer("y", x.shape)
        _core.rescaling_forward(y, x, self.s, o)
        return y

    def backward(self, dy):
        _core.rescaling_backward(dy, dy, self.s)
        return dy

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Softmax(Activation):
    def __init__(self, axis: int = -1, name=None, **kwargs):
        if axis != -1:
            raise NotImplementedError("Softmax: only axis=-1 is supported")
        super().__init__("softmax", name=name, **kwargs)

    def get_config(self):
        return {**Layer.get_config(self), "axis": -1}


class PReLU(Layer):
    """Parametric ReLU: y = x for x > 0, alpha * x otherwise, with a learned alpha.

    `shared_axes` (1-based, as in Keras) share one slope across those axes; `shared_axes=[1, 2]`
    gives one slope per channel on NHWC feature maps. Alpha starts at zero (Keras default).
    """

    alpha = _WeightAttribute()

    def __init__(self, alpha_initializer="zeros", shared_axes: Sequence[int] | None = None,
                 alpha_regularizer=None, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        self.alpha_initializer = alpha_initializer
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes: tuple[int, ...] = ()
        else:
            axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
            self.shared_axes = tuple(sorted(int(a) for a in axes))

    def param_shapes(self, input_shape):
        shape = list(input_shape)
        for a in self.shared_axes:
            if not 1 <= a <= len(shape):
                raise ValueError(f"{self.describe()}: shared axis {a} out of range for input {input_shape}")
            shape[a - 1] = 1
        # The C++ kernel repeats alpha over the flat index, which needs the shared axes to lead.
        first_kept = next((i for i, s in enumerate(shape) if s != 1), len(shape))
        if any(s == 1 and input_shape[i] != 1 for i, s in enumerate(shape) if i > first_kept):
            raise NotImplementedError(
                f"{self.describe()}: shared_axes {list(self.shared_axes)} must be leading axes "
                f"(e.g. [1, 2] on NHWC) for input {tuple(input_shape)}"
            )
        return {"alpha": tuple(shape)}

    def output_shape(self, input_shape):
        self.param_shapes(input_shape)
        return tuple(input_shape)

    def build(self, input_shape):
        self._add_weight("alpha", self.param_shapes(input_shape)["alpha"], self.alpha_initializer,
                         self.alpha_regularizer)
        super().build(input_shape)

    def forward(self, x, training=False):
        self.x = x
        y = self._buffer("y", x.shape)
        _core.prelu_forward(y, x, self.weights_["alpha"])
        return y

    def backward(self, dy):
        _core.prelu_backward(dy, self.gradients_["alpha"], self.x, self.weights_["alpha"], dy)
        return dy

    def get_config(self):
        return {**super().get_config(), "shared_axes": list(self.shared_axes),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer)}


def _reject_unsupported(layer: Layer, kwargs: dict, allowed_defaults: dict) -> None:
    """Accept Keras keyword arguments only at the values cnnfast implements."""
    for key, value in kwargs.items():
        if key in allowed_defaults:
            default = allowed_defaults[key]
            same = value == default or (isinstance(default, tuple) and tuple(pair(value, key)) == default)
            if same:
                continue
            raise NotImplementedError(
                f"{type(layer).__name__}: {key}={value!r} is not supported by cnnfast (only {default!r})"
            )
        raise TypeError(f"{type(layer).__name__}: unexpected keyword argument {key!r}")


class LocalResponseNormalization(Layer):
    """Local response normalization across channels (AlexNet, Krizhevsky et al. 2012, Sec. 3.3).

    For every position, each channel c is divided by a power of the sum of squares over the
    channel window [c - depth_radius, c + depth_radius] (clipped at the edges)::

        y_c = x_c / (bias + alpha * sum_{c'} x_{c'}^2) ** beta

    Arguments and semantics are those of ``tf.nn.local_response_normalization``; the defaults
    are the paper's values (TensorFlow's own are 5, 1, 1, 0.5): depth_radius=2 (window
    n = 2*2+1 = 5), bias=1.0 (the paper's k), alpha=1e-4, beta=0.75.
    alpha is NOT divided by the window size, as in TensorFlow and the paper; PyTorch's
    ``nn.LocalResponseNorm(size, alpha)`` and Caffe use alpha / size, so PyTorch's
    ``LocalResponseNorm(5, alpha=5e-4)`` equals ``LocalResponseNormalization(2, alpha=1e-4)``.
    Acts on the last (channel) axis of any input; no parameters.
    """

    def __init__(self, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1e-4,
                 beta: float = 0.75, name: str | None = None, input_shape=None, **kwargs) -> None:
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        who = f"LocalResponseNormalization '{name}'" if name else "LocalResponseNormalization"
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, (int, np.integer)) \
                or depth_radius < 0:
            raise ValueError(f"{who}: depth_radius must be a non-negative int, got {depth_radius!r}")
        for what, value in (("bias", bias), ("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value):
                raise ValueError(f"{who}: {what} must be a finite number, got {value!r}")
        # bias > 0 and alpha >= 0 keep the base of the power positive (no NaN for any input).
        if bias <= 0 or alpha < 0:
            raise ValueError(f"{who}: needs bias > 0 and alpha >= 0, got bias={bias!r}, alpha={alpha!r}")
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.scale: np.ndarray | None = None

    def output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.describe()}: needs a channel axis, got input shape {input_shape}")
        return tuple(input_shape)

    def _args(self):
        return (self.depth_radius, self.bias, self.alpha, self.beta)

    def forward(self, x, training=False):
        self.x = x
        self.y = self._buffer("y", x.shape)
        # The window sums are kept for backward only when training.
        self.scale = self._buffer("scale", x.shape) if training else None
        _core.lrn_forward(self.y, self.scale, x, *self._args())
        return self.y

    def backward(self, dy):
        if self.scale is None:
            raise RuntimeError(f"{self.describe()}: backward needs a forward pass with training=True")
        dx = self._buffer("dx", self.x.shape)
        _core.lrn_backward(dx, self.x, self.y, self.scale, dy, *self._args())
        return dx

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


class _Merge(Layer):
    """Base of the merge layers: the elementwise join of same-shaped inputs (merge.cpp)."""

    takes_many_inputs = True
    op = "add"
    min_inputs = 2

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name)
        _reject_unsupported(self, kwargs, {})

    def _shapes(self, input_shapes: Any) -> list[Shape]:
        if not isinstance(input_shapes, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{self.describe()}: takes a list of inputs, got shape {input_shapes}")
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        count = 2 if self.op == "subtract" else None
        if len(shapes) < self.min_inputs or (count and len(shapes) != count):
            want = f"exactly {count}" if count else f"at least {self.min_inputs}"
            raise ValueError(f"{self.describe()}: needs {want} inputs, got {len(shapes)}")
        return shapes

    def output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        for k, shape in enumerate(shapes[1:], 1):
            if shape != shapes[0]:
                raise ValueError(f"{self.describe()}: input {k} has shape {shape}, input 0 "
                                 f"{shapes[0]}; the inputs of {type(self).__name__} must have "
                                 f"one shape")
        return shapes[0]

    def build(self, input_shape):
        self.output_shape(input_shape)
        self.input_shape = [tuple(s) for s in input_shape]
        self.built = True

    def forward(self, xs, training=False):
        self.xs = xs
        y = self._buffer("y", xs[0].shape)
        _core.merge_forward(y, xs, self.op)
        return y

    def backward(self, dy):
        dxs = [self._buffer(f"dx{k}", dy.shape) for k in range(len(self.xs))]
        _core.merge_backward(dxs, dy, self.xs, self.op)
        return dxs


class Add(_Merge):
    """Elementwise sum of the inputs (Keras ``Add``): the join of a residual block."""

    op = "add"


class Subtract(_Merge):
    """inputs[0] - inputs[1] (Keras ``Subtract``)."""

    op = "subtract"


class Multiply(_Merge):
    """Elementwise product of the inputs (Keras ``Multiply``)."""

    op = "multiply"


class Average(_Merge):
    """Elementwise mean of the inputs (Keras ``Average``)."""

    op = "average"


class Maximum(_Merge):
    """Elementwise maximum of the inputs (Keras ``Maximum``); the gradient goes to the first
    input holding the maximum."""

    op = "maximum"


class Concatenate(_Merge):
    """The inputs side by side on the last axis, channels in NHWC (Keras ``Concatenate``;
    ``axis`` must name the last axis: -1, or the per-sample rank counting the batch axis)."""

    min_inputs = 1

    def __init__(self, axis: int = -1, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self.describe()}: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        rank = len(shapes[0])
        if self.axis not in (-1, rank):
            raise ValueError(f"{self.describe()}: joins on the last axis only (-1 or {rank} for "
                             f"inputs {shapes[0]}), got axis={self.axis}")
        for k, shape in enumerate(shapes):
            if len(shape) != rank or shape[:-1] != shapes[0][:-1]:
                raise ValueError(f"{self.describe()}: input {k} has shape {shape}, input 0 "
                                 f"{shapes[0]}; all axes but the last must agree")
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))

    def forward(self, xs, training=False):
        self.widths = [x.shape[-1] for x in xs]
        y = self._buffer("y", (*xs[0].shape[:-1], sum(self.widths)))
        _core.concat_forward(y, xs)
        return y

    def backward(self, dy):
        dxs = [self._buffer(f"dx{k}", (*dy.shape[:-1], w)) for k, w in enumerate(self.widths)]
        _core.concat_backward(dxs, dy)
        return dxs

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _merge_function(cls: type[_Merge]):
    def merge(inputs: Sequence[Any], **kwargs: Any) -> Any:
        return cls(**kwargs)(list(inputs))

    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"Functional form of :class:`{cls.__name__}`: ``{cls.__name__}(**kwargs)(inputs)``."
    return merge


add = _merge_function(Add)
subtract = _merge_function(Subtract)
multiply = _merge_function(Multiply)
average = _merge_function(Average)
maximum = _merge_function(Maximum)
concatenate = _merge_function(Concatenate)


# -- batch normalization, global pooling and spatial reshaping (issue 19) ----------------------
def _channel_axis_ok(axis: Any, input_shape: Shape) -> bool:
    """Keras counts the batch axis: the last axis is -1 or the per-sample rank."""
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    return not isinstance(axis, bool) and axis in (-1, len(input_shape))


class BatchNormalization(Layer):
    """Batch normalization over the last (channel) axis, with Keras 3's defaults and semantics.

    In training the batch's mean and biased variance normalize each channel and the moving
    statistics follow them: ``moving = moving * momentum + batch * (1 - momentum)`` (the biased
    variance, as Keras 3; PyTorch's ``running_var`` takes the unbiased one and its momentum is
    ``1 - momentum``). At inference the moving statistics normalize. A frozen layer
    (``trainable = False``) runs in inference mode even in training, as in Keras 3. Weights, in
    Keras order: gamma (if ``scale``), beta (if ``center``), moving_mean, moving_variance; the
    last two are never updated by the optimizer (non-trainable).
    """

    gamma = _WeightAttribute()
    beta = _WeightAttribute()
    moving_mean = _WeightAttribute()
    moving_variance = _WeightAttribute()
    non_trainable_names = ("moving_mean", "moving_variance")

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, name=None, input_shape=None, trainable: bool = True,
                 **kwargs):
        # trainable=False (Keras's common frozen-BN idiom) is accepted here as in Keras.
        super().__init__(name=name, input_shape=input_shape, trainable=bool(trainable))
        _reject_unsupported(self, kwargs, {"beta_constraint": None, "gamma_constraint": None,
                                           "synchronized": False, "renorm": False})
        who = f"BatchNormalization '{name}'" if name else "BatchNormalization"
        for what, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise TypeError(f"{who}: {what} must be a number, got {value!r}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{who}: momentum must be in [0, 1], got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"{who}: epsilon must be > 0, got {epsilon!r}")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def param_shapes(self, input_shape):
        if not input_shape or not _channel_axis_ok(self.axis, input_shape):
            raise NotImplementedError(
                f"{self.describe()}: normalizes the last axis only (axis=-1), got axis "
                f"{self.axis!r} for input {tuple(input_shape)}")
        c = (int(input_shape[-1]),)
        shapes = {}
        if self.scale:
            shapes["gamma"] = c
        if self.center:
            shapes["beta"] = c
        shapes["moving_mean"] = c
        shapes["moving_variance"] = c
        return shapes

    def output_shape(self, input_shape):
        self.param_shapes(input_shape)
        return tuple(input_shape)

    def build(self, input_shape):
        inits = {"gamma": (self.gamma_initializer, self.gamma_regularizer),
                 "beta": (self.beta_initializer, self.beta_regularizer),
                 "moving_mean": (self.moving_mean_initializer, None),
                 "moving_variance": (self.moving_variance_initializer, None)}
        for name, shape in self.param_shapes(input_shape).items():
            self._add_weight(name, shape, *inits[name])
        super().build(input_shape)

    def forward(self, x, training=False):
        w = self.weights_
        # Keras 3: a frozen layer normalizes with its moving statistics, in training too.
        self.batch_stats = bool(training) and self.trainable
        self.x = x
        y = self._buffer("y", x.shape)
        if not self.batch_stats:
            _core.batchnorm_forward_inference(y, x, w.get("gamma"), w.get("beta"),
                                              w["moving_mean"], w["moving_variance"],
                                              self.epsilon)
            return y
        c = x.shape[-1]
        # Per call (a shared layer keeps each call's statistics for its backward).
        self.mean = np.empty(c, np.float32)
        self.var = np.empty(c, np.float32)
        _core.batchnorm_forward_training(y, self.mean, self.var, x, w.get("gamma"), w.get("beta"),
                                         self.epsilon)
        _core.batchnorm_update_moving(w["moving_mean"], w["moving_variance"], self.mean,
                                      self.var, self.momentum)
        return y

    def backward(self, dy):
        w, g = self.weights_, self.gradients_
        dx = self._buffer("dx", dy.shape) if self.need_input_grad else None
        if not self.batch_stats:
            if dx is not None:
                _core.batchnorm_backward_inference(dx, dy, w.get("gamma"), w["moving_variance"],
                                                   self.epsilon)
            return dx
        _core.batchnorm_backward_training(dx, g.get("gamma"), g.get("beta"), self.x, dy,
                                          self.mean, self.var, w.get("gamma"), self.epsilon)
        return dx

    def get_config(self):
        # Initializers are not part of the config (as Conv2D's): a saved model has its weights.
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}


def _hwc(layer: Layer, input_shape: Shape) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{layer.describe()}: expects input of shape (H, W, C) per sample, got "
                         f"{tuple(input_shape)}")
    return tuple(int(d) for d in input_shape)  # type: ignore[return-value]


class _GlobalPooling2D(Layer):
    def __init__(self, keepdims: bool = False, name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: keepdims must be a bool, got {keepdims!r}")
        self.keepdims = bool(keepdims)

    def output_shape(self, input_shape):
        _, _, c = _hwc(self, input_shape)
        return (1, 1, c) if self.keepdims else (c,)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over height and width of each channel: (H, W, C) -> (C,), or (1, 1, C) with
    ``keepdims=True`` (Keras defaults)."""

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape(x.shape[1:]))
        _core.global_avg_pool2d_forward(y, x)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        _core.global_avg_pool2d_backward(dx, dy)
        return dx


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum over height and width of each channel (the first one on ties); the gradient
    goes to that position."""

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape(x.shape[1:]))
        self.argmax = self._buffer("argmax", y.shape, np.int32)
        _core.global_max_pool2d_forward(y, self.argmax, x)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        _core.global_max_pool2d_backward(dx, dy, self.argmax)
        return dx


def _two_sides(value: Any, what: str, who: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's padding/cropping forms: n, (h, w) or ((top, bottom), (left, right)), each >= 0."""
    def count(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{who}: {what} must hold non-negative ints, got {value!r}")
        return int(v)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = count(value)
        return (n, n), (n, n)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        sides = []
        for v in value:
            if isinstance(v, (list, tuple)) and len(v) == 2:
                sides.append((count(v[0]), count(v[1])))
            else:
                n = count(v)
                sides.append((n, n))
        return sides[0], sides[1]
    raise ValueError(f"{who}: {what} must be an int, (h, w) or ((top, bottom), (left, right)), "
                     f"got {value!r}")


class _Edges2D(Layer):
    """Rows and columns added at (ZeroPadding2D) or removed from (Cropping2D) the edges of each
    feature map: ((top, bottom), (left, right)) in ``self.edges``. Padding's backward is
    cropping and cropping's backward is padding, so the two layers differ only in the sign
    of the change and in which kernel runs forward."""

    _grows = True  # ZeroPadding2D; Cropping2D removes

    def output_shape(self, input_shape):
        h, w, c = _hwc(self, input_shape)
        (t, b), (l_, r) = self.edges
        sign = 1 if self._grows else -1
        oh, ow = h + sign * (t + b), w + sign * (l_ + r)
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.describe()}: cropping {self.edges} leaves nothing of "
                             f"input {tuple(input_shape)}")
        return (oh, ow, c)

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape(x.shape[1:]))
        (t, b), (l_, r) = self.edges
        (_core.zero_pad2d if self._grows else _core.crop2d)(y, x, t, b, l_, r)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        (t, b), (l_, r) = self.edges
        (_core.crop2d if self._grows else _core.zero_pad2d)(dx, dy, t, b, l_, r)
        return dx


class ZeroPadding2D(_Edges2D):
    """Zero rows and columns around each feature map (Keras ZeroPadding2D, channels-last)."""

    def __init__(self, padding=(1, 1), name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        self.padding = self.edges = _two_sides(padding, "padding", name or "ZeroPadding2D")

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class Cropping2D(_Edges2D):
    """Remove rows and columns at the edges of each feature map (Keras Cropping2D)."""

    _grows = False

    def __init__(self, cropping=((0, 0), (0, 0)), name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        self.cropping = self.edges = _two_sides(cropping, "cropping", name or "Cropping2D")

    def get_config(self):
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping]}


class UpSampling2D(Layer):
    """Repeat rows and columns ``size`` times (nearest neighbour, Keras's default)."""

    def __init__(self, size=(2, 2), interpolation: str = "nearest", name=None, input_shape=None,
                 **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {"data_format": "channels_last"})
        who = f"UpSampling2D '{name}'" if name else "UpSampling2D"
        if interpolation != "nearest":
            raise NotImplementedError(f"{who}: interpolation={interpolation!r} is not supported "
                                      "by cnnfast (only 'nearest')")
        self.size = _positive_pair(size, "size", who)
        self.interpolation = interpolation

    def output_shape(self, input_shape):
        h, w, c = _hwc(self, input_shape)
        return (h * self.size[0], w * self.size[1], c)

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape(x.shape[1:]))
        _core.upsample2d_nearest_forward(y, x, *self.size)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self._buffer("dx", self.x_shape)
        _core.upsample2d_nearest_backward(dx, dy, *self.size)
        return dx

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "interpolation": self.interpolation}


class Reshape(Layer):
    """A row-major reshape of each sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape: Sequence[int], name=None, input_shape=None, **kwargs):
        super().__init__(name=name, input_shape=input_shape)
        _reject_unsupported(self, kwargs, {})
        who = f"Reshape '{name}'" if name else "Reshape"
        shape = tuple(target_shape) if isinstance(target_shape, (list, tuple)) else None
        if (not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer))
                             or (d < 1 and d != -1) for d in shape)
                or sum(d == -1 for d in shape) > 1):
            raise ValueError(f"{who}: target_shape must be positive ints with at most one -1, "
                             f"got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)

    def output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        out = tuple(size // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(out)) != size:
            raise ValueError(f"{self.describe()}: cannot reshape input {tuple(input_shape)} "
                             f"({size} values) to {self.target_shape}")
        return out

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape(x.shape[1:]))

    def backward(self, dy):
        return dy.reshape(self.x_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


# The layers of this block, for _SERIALIZABLE.
_NORMALIZATION_AND_SPATIAL: tuple[type[Layer], ...] = (
    BatchNormalization, GlobalAveragePooling2D, GlobalMaxPooling2D, ZeroPadding2D, Cropping2D,
    UpSampling2D, Reshape,
)


_SERIALIZABLE: tuple[type[Layer], ...] = (
    InputLayer, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dense, Dropout, Activation, ReLU,
    ELU, Softmax, PReLU, LocalResponseNormalization, Add, Subtract, Multiply, Average, Maximum,
    Concatenate,
) + _NORMALIZATION_AND_SPATIAL
# Activation, noise, convolution-variant and preprocessing layers (issue 19).
_SERIALIZABLE += (LeakyReLU, Rescaling, DepthwiseConv2D, SeparableConv2D, GaussianNoise,
                  SpatialDropout2D, RandomFlip, RandomCrop, RandomTranslation, RandomRotation)
# The exact classes the model file, the C++ inference builder and the C++ training plan know.
# A subclass may change forward(), so only these are handed to the C++ plans.
BUILTIN_LAYERS: frozenset[type[Layer]] = frozenset(_SERIALIZABLE)


def deserialize(config: dict[str, Any]) -> Layer:
    """A layer from its serialized form {"class_name": "Conv2D", "config": {...}}."""
    if not isinstance(config, dict) or set(config) != {"class_name", "config"}:
        raise ValueError(f"layer entry must be {{'class_name': ..., 'config': {{...}}}}, got {config!r}")
    by_name = {cls.__name__: cls for cls in _SERIALIZABLE}
    cls = by_name.get(config["class_name"])
    if cls is None:
        raise ValueError(f"unknown layer class {config['class_name']!r}; known: {sorted(by_name)}")
    if not isinstance(config["config"], dict):
        raise TypeError(f"{cls.__name__}: config must be an object, got {config['config']!r}")
    return cls.from_config(config["config"])
