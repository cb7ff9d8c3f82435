"""Shape, parameter, memory, FLOP and receptive-field analysis of a model (stack or graph).

Everything is computed from the shape formulas (``layer.output_shape`` / ``layer.param_shapes``):
no weights are created and nothing is run, so VGG19 at 224x224 is analysed instantly.

Conventions (per image unless a batch size is named):

* **MACs / FLOPs.** Conv2D: MACs = OH*OW*K * KH*KW*C/groups, every window tap counted, padded
  ones included (that is what im2col + GEMM executes); DepthwiseConv2D OH*OW*C*M * KH*KW;
  SeparableConv2D that plus the pointwise OH*OW*C*M*filters. Dense: MACs = inputs*units (times the
  leading axes for inputs of rank > 1). FLOPs = 2*MACs for both (one multiply, one add); bias
  adds and fused activations are not counted, as in the papers' and fvcore's counts.
  Pooling: one FLOP (compare or add) per window element per output, padded positions
  included, MACs 0. Activation layers: one FLOP per element (a transcendental counts as one),
  softmax three (exp, sum, divide), linear zero; PReLU one; Rescaling two (multiply, add). LocalResponseNormalization: per
  position one square per channel, the window sums (window length - 1 adds each), 2 for
  bias + alpha*sum, 1 for the power and 1 for the final multiply. Dropout, Flatten and Input
  cost 0 (Dropout is the identity at inference).
* **Backward.** A layer's backward is its data gradient (skipped for the first layer, which
  needs no gradient with respect to the data, as in cnnfast's Sequential) plus its weight
  gradient (only for layers with trainable parameters). For Conv2D and Dense each costs as much
  as the forward pass (two GEMMs of the forward's size), so backward ~ 2x forward and the first
  layer's backward ~ 1x forward; bias gradients are not counted. For other layers the data
  gradient is counted equal to the forward, and PReLU's alpha gradient likewise.
* **Merge layers** (Add, Subtract, Multiply, Average, Maximum): one FLOP per output element
  per input after the first (Average one more); Concatenate 0.
* **Memory** (float32, 4 bytes). Inference: the peak over layers of the outputs alive at once
  (the layer's output and every earlier output a later layer still reads; in a stack, one
  layer's input and output) per image, plus the parameters. Training: the model input and every layer output are
  kept for backward and each layer output gets a gradient of its size (per image, times the
  batch size), plus parameters, their gradients and the optimizer state (Adam 2 slots per
  parameter, SGD with momentum 1, plain SGD 0). Flatten outputs are views and take no memory;
  pooling indices, dropout masks, LRN scales and im2col scratch are not counted.
* **Receptive field.** Per spatial axis, r = r_prev + (F - 1) * j_prev and j = j_prev * S
  (jump = product of strides) through Conv2D and pooling layers, F being a dilated kernel's
  span (K - 1) * dilation + 1; elementwise layers (activations,
  Dropout, LRN, PReLU) keep them. A merge layer takes the largest field among its inputs (the
  field along the longest path of a graph). Flatten and Dense (and every layer after them) are
  listed with the whole input and no jump. Fields may exceed the input size when padding is used.
* **Normalization and spatial layers** (issue 19). BatchNormalization: 2 FLOPs per element
  (the inference affine x * scale + shift; in the inference plan it is folded into a preceding
  linear Conv2D and costs nothing), its backward the data gradient plus as much again for
  gamma/beta; gamma and beta are trainable, the moving statistics non-trainable parameters.
  GlobalAverage/MaxPooling2D: one FLOP per input element, and a global receptive field after
  them. ZeroPadding2D, Cropping2D, UpSampling2D and Reshape are copies: 0 FLOPs. Padding and
  cropping keep the field and jump; nearest upsampling keeps the field and divides the jump by
  its size; Reshape is a view (no memory) and, like Flatten, ends the spatial field.
* **Inexact strides.** When (N - F + P_total) / S is not an integer the output size is floored
  (Keras, PyTorch) and the report flags the layer: the last input rows/columns are ignored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cnnfast import layers as L
from cnnfast import optimizers as optimizers_module
from cnnfast.shapes import conv_padding, is_exact

Shape = tuple[int, ...]

BYTES_PER_FLOAT = 4


@dataclass
class LayerReport:
    """One row of the analysis: everything about one layer, per image."""

    name: str
    type: str
    input_shape: Shape
    output_shape: Shape
    params: int
    trainable_params: int
    non_trainable_params: int
    activations: int             # elements of the output
    activation_bytes: int        # float32 bytes of the output (0 for views such as Flatten)
    macs: int
    flops: int                   # forward
    backward_flops: int
    receptive_field: tuple[int, ...] | None  # per spatial axis (rows, cols); None without one
    jump: tuple[int, ...] | None             # product of strides per axis; None after Flatten
    global_field: bool = False               # True for Flatten/Dense and after: the whole input
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """False when a stride left input rows/columns unused."""
        return not any(n.startswith("inexact") for n in self.notes)


@dataclass
class ModelReport:
    """The analysis of a model: per-layer rows and totals. Print it, or use to_dict()/to_markdown()."""

    model_name: str
    input_shape: Shape
    batch_size: int
    optimizer: str
    optimizer_slots: int
    layers: list[LayerReport]
    totals: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (ints, strings, lists), ready for json.dumps."""
        rows = []
        for row in self.layers:
            d = asdict(row)
            for key in ("input_shape", "output_shape", "receptive_field", "jump"):
                d[key] = None if d[key] is None else list(d[key])
            rows.append(d)
        return {"model": self.model_name, "input_shape": list(self.input_shape),
                "batch_size": self.batch_size, "optimizer": self.optimizer,
                "optimizer_slots": self.optimizer_slots, "layers": rows, "totals": dict(self.totals)}

    # -- formatting -------------------------------------------------------------------------
    _HEADER = ("Layer (type)", "Output (HxWxC)", "Params", "Activations", "Act. mem", "MACs",
               "FLOPs", "RF", "Jump", "Notes")

    def _cells(self) -> list[tuple[str, ...]]:
        cells = [("input (Input)", _shape_str(self.input_shape), "0",
                  f"{math.prod(self.input_shape):,}", _bytes(self.totals["input_bytes_per_image"]),
                  "0", "0", _axes((1,) * _spatial(self.input_shape)), _axes((1,) * _spatial(self.input_shape)), "")]
        for r in self.layers:
            params = f"{r.params:,}" + (
                "" if not r.non_trainable_params
                else " (frozen)" if not r.trainable_params
                else f" ({r.non_trainable_params:,} non-trainable)")
            rf = "all" if r.global_field else _axes(r.receptive_field)
            jump = "-" if r.global_field else _axes(r.jump)
            cells.append((f"{r.name} ({r.type})", _shape_str(r.output_shape), params,
                          f"{r.activations:,}", _bytes(r.activation_bytes), _si(r.macs),
                          _si(r.flops), rf, jump, "; ".join(r.notes)))
        return cells

    def _total_lines(self) -> list[str]:
        t = self.totals
        b = self.batch_size
        fwd, train, macs = (t["flops_forward_per_image"], t["flops_train_per_image"],
                            t["macs_per_image"])
        acts = (f"Activations per image: {t['activations_per_image']:,} values "
                f"({_bytes(t['activation_bytes_per_image'])})")
        inference = (f"Inference memory, batch {b}: {_bytes(t['inference_memory_bytes'])} "
                     f"(params {_bytes(t['param_bytes'])} + peak activations alive "
                     f"{_bytes(t['inference_activation_bytes_per_image'])}/image)")
        breakdown = (f"  = params {_bytes(t['param_bytes'])} + gradients "
                     f"{_bytes(t['param_gradient_bytes'])} + optimizer state "
                     f"{_bytes(t['optimizer_state_bytes'])} ({self.optimizer_slots} per param) "
                     f"+ {b} x {_bytes(t['training_activation_bytes_per_image'])} "
                     f"(activations and their gradients per image)")
        return [
            f"Total params: {t['params']:,} ({_bytes(t['param_bytes'])})",
            f"Trainable params: {t['trainable_params']:,}",
            f"Non-trainable params: {t['non_trainable_params']:,}",
            acts,
            f"Forward MACs per image: {macs:,} ({_si(macs)})",
            f"FLOPs per image, forward: {fwd:,} ({_si(fwd)})",
            f"FLOPs per image, forward+backward: {train:,} ({_si(train)})",
            inference,
            f"Training memory, batch {b}, {self.optimizer}: {_bytes(t['training_memory_bytes'])}",
            breakdown,
        ]

    def __str__(self) -> str:
        cells = [self._HEADER] + self._cells()
        ncol = len(self._HEADER)
        widths = [max(len(row[i]) for row in cells) for i in range(ncol)]
        right = {2, 3, 4, 5, 6, 7, 8}

        def fmt(row: tuple[str, ...]) -> str:
            parts = [row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
                     for i in range(ncol)]
            return "  ".join(parts).rstrip()

        width = sum(widths) + 2 * (ncol - 1)
        inexact = [r.name for r in self.layers if not r.exact]
        lines = [f'Model: "{self.model_name}"  input {_shape_str(self.input_shape)}', "=" * width,
                 fmt(cells[0]), "-" * width]
        lines += [fmt(row) for row in cells[1:]]
        lines.append("=" * width)
        lines += self._total_lines()
        if inexact:
            lines.append("Inexact strides (last rows/cols ignored): " + ", ".join(inexact))
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table followed by the totals as a list."""
        cells = self._cells()
        head = "| " + " | ".join(self._HEADER) + " |"
        align = "|" + "|".join(["---", "---"] + ["---:"] * 7 + ["---"]) + "|"
        body = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        totals: list[str] = []
        for line in self._total_lines():
            if line.startswith("  ") and totals:  # a continuation of the previous total
                totals[-1] += " " + line.strip()
            else:
                totals.append(f"- {line}")
        return "\n".join([f"**{self.model_name}** (input {_shape_str(self.input_shape)})", "",
                          head, align, *body, "", *totals])

    def _repr_markdown_(self) -> str:  # Jupyter
        return self.to_markdown()


# -- formatting helpers ---------------------------------------------------------------------
def _shape_str(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _spatial(shape: Shape) -> int:
    return 2 if len(shape) == 3 else 0


def _axes(values: tuple[int, ...] | None) -> str:
    if not values:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# -- optimizer state ------------------------------------------------------------------------
def _optimizer_slots(optimizer: Any) -> tuple[str, int]:
    """(description, state arrays per parameter) for an optimizer, its name or None."""
    if optimizer is None:
        return "no optimizer", 0
    opt = optimizers_module.get(optimizer) if isinstance(optimizer, str) else optimizer
    kind = type(opt).__name__
    if kind == "SGD":
        momentum = float(getattr(opt, "momentum", 0.0))
        return (f"SGD(momentum={momentum:g})", 1) if momentum else ("SGD", 0)
    if not isinstance(opt, optimizers_module.Optimizer):
        raise TypeError(f"analyze: unknown optimizer {kind}; state size known for "
                        f"{', '.join(sorted(c.__name__ for c in optimizers_module._CLASSES))}")
    return kind, len(opt.slot_names)


# -- per-layer analysis ---------------------------------------------------------------------
def _window_geometry(layer: L.Layer, in_shape: Shape):
    """(kernel, strides, padding per axis) for Conv2D and pooling layers, else None."""
    if isinstance(layer, L.Conv2D):
        pad = layer.padding
        pads = (pad, pad) if isinstance(pad, str) else ((pad[0], pad[0]), (pad[1], pad[1]))
        return layer.window, layer.strides, pads  # the span of a dilated kernel
    if isinstance(layer, L._Pool2D):
        return layer.pool_size, layer.strides, (layer.padding, layer.padding)
    return None


def _inexact_note(in_shape: Shape, geometry) -> str | None:
    kernel, strides, pads = geometry
    parts = []
    for axis, (n, f, s, p, what) in enumerate(zip(in_shape[:2], kernel, strides, pads,
                                                  ("row", "col"))):
        if is_exact(n, f, s, p):
            continue
        before, _, out = conv_padding(n, f, s, p)
        covered = (out - 1) * s + f
        dropped = max(0, n + before - covered)  # real input rows no window reaches
        if dropped:
            parts.append(f"last {dropped} {what}{'s' if dropped > 1 else ''} ignored")
        else:
            parts.append(f"{what}s: only padding unused")
    return ("inexact stride: " + ", ".join(parts)) if parts else None


def _activation_flops(kind: str, elements: int) -> int:
    if kind == "linear":
        return 0
    return 3 * elements if kind == "softmax" else elements


def _lrn_flops(layer: L.LocalResponseNormalization, shape: Shape) -> int:
    c = shape[-1]
    r = layer.depth_radius
    window_adds = sum(min(c - 1, k + r) - max(0, k - r) for k in range(c))
    positions = math.prod(shape[:-1])
    return positions * (window_adds + 5 * c)


def _forward_cost(layer: L.Layer, in_shape: Shape, out_shape: Shape) -> tuple[int, int, bool]:
    """(MACs, FLOPs, is a GEMM layer) of one forward pass for one image."""
    out_elems = math.prod(out_shape)
    # Issue 19: depthwise taps see one input channel; separable adds the pointwise 1x1.
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        depthwise = out_shape[0] * out_shape[1] * in_shape[-1] * layer.depth_multiplier * kh * kw
        pointwise = 0
        if isinstance(layer, L.SeparableConv2D):
            pointwise = math.prod(out_shape) * in_shape[-1] * layer.depth_multiplier
        return depthwise + pointwise, 2 * (depthwise + pointwise), True
    if isinstance(layer, L.Conv2D):
        kh, kw = layer.kernel_size
        macs = out_elems * kh * kw * (in_shape[-1] // layer.groups)
        return macs, 2 * macs, True
    if isinstance(layer, L.Dense):
        macs = math.prod(in_shape) * layer.units
        return macs, 2 * macs, True
    if isinstance(layer, L._Pool2D):
        return 0, out_elems * layer.pool_size[0] * layer.pool_size[1], False
    if isinstance(layer, L.Activation):
        return 0, _activation_flops(layer.act.kind, out_elems), False
    if isinstance(layer, L.PReLU):
        return 0, out_elems, False
    # Issue 19's layers.
    if isinstance(layer, L.Rescaling):
        return 0, 2 * out_elems, False  # a multiply and an add per element
    if isinstance(layer, L.LocalResponseNormalization):
        return 0, _lrn_flops(layer, in_shape), False
    if isinstance(layer, L._Merge) and not isinstance(layer, L.Concatenate):
        extra = 1 if isinstance(layer, L.Average) else 0
        return 0, (len(in_shape) - 1 + extra) * out_elems, False
    if isinstance(layer, L.BatchNormalization):
        return 0, 2 * out_elems, False
    if isinstance(layer, L._GlobalPooling2D):
        return 0, math.prod(in_shape), False
    return 0, 0, False


def _spatial_field(layer: L.Layer, rf, jump):
    """(field, jump, ends the spatial field) through the issue-19 spatial layers, or None for
    any other layer."""
    if isinstance(layer, (L._GlobalPooling2D, L.Reshape)):
        return rf, jump, True
    if isinstance(layer, (L.ZeroPadding2D, L.Cropping2D)):
        return rf, jump, False
    if isinstance(layer, L.UpSampling2D):
        # A fraction of an input pixel per output pixel when the jump does not divide.
        return rf, tuple(j // s if j % s == 0 else j / s for j, s in zip(jump, layer.size)), False
    return None


def _graph_rows(model) -> list[tuple[L.Layer, Any, Shape, list[int]]]:
    """(layer, input shape, output shape, rows read) per call; -1 reads the model input."""
    nodes = getattr(model, "_nodes", None)
    if not nodes:  # a stack: each row reads the one before
        return [(layer, i, o, [k - 1]) for k, (layer, i, o) in enumerate(model.shapes())]
    return [(layer, i, o, [r - 1 for r in reads]) for (layer, i, o), reads
            in zip(model.shapes()[1:], model._reads[1:])]


def analyze(model, optimizer: Any = None, batch_size: int = 1) -> ModelReport:
    """Analyse a Sequential model from its shapes alone (no weights are created, nothing runs).

    Parameters
    ----------
    model : Sequential
        A model whose input shape is known (an Input layer, or built).
    optimizer : str, Optimizer or None
        Optimizer whose state is counted in the training memory ("adam": 2 arrays per
        parameter, "sgd": 0, ``SGD(momentum=0.9)``: 1). None uses the model's compiled
        optimizer, or counts no optimizer state when the model is not compiled.
    batch_size : int
        Images per batch for the memory totals (per-image figures do not depend on it).

    Returns
    -------
    ModelReport
        Per-layer rows (``.layers``) and ``.totals``; ``print(report)`` shows an aligned table,
        ``report.to_markdown()`` a Markdown one, ``report.to_dict()`` plain data. The
        counting conventions are in this module's docstring.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"analyze: batch_size must be a positive int, got {batch_size!r}")
    if getattr(model, "input_shape_", None) is None:
        raise ValueError("analyze: the model's input shape is unknown; start it with "
                         "Input(shape) or call model.build(shape)")
    if optimizer is None and getattr(model, "compiled", False):
        optimizer = getattr(model, "optimizer", None)
    opt_name, slots = _optimizer_slots(optimizer)

    input_shape = tuple(model.input_shape_)
    spatial = _spatial(input_shape)
    start = ((1,) * spatial, (1,) * spatial, False) if spatial else (None, None, False)
    fields: list[tuple[Any, Any, bool]] = []  # (rf, jump, global) of each row's output
    rows: list[LayerReport] = []
    graph_rows = _graph_rows(model)
    for layer, in_shape, out_shape, reads in graph_rows:
        many = layer.takes_many_inputs
        in_shape = [tuple(s) for s in in_shape] if many else tuple(in_shape)
        out_shape = tuple(out_shape)
        first_in = in_shape[0] if many else in_shape
        n_params = sum(math.prod(s) for s in layer.param_shapes(in_shape).values())
        trainable = (sum(math.prod(s) for n, s in layer.param_shapes(in_shape).items()
                         if n not in layer.non_trainable_names) if layer.trainable else 0)
        macs, flops, is_gemm = _forward_cost(layer, in_shape, out_shape)
        needs_data_grad = any(r >= 0 for r in reads)
        backward = flops if needs_data_grad else 0
        if trainable and (is_gemm or isinstance(layer, (L.PReLU, L.BatchNormalization))):
            backward += flops
        notes: list[str] = []
        geometry = _window_geometry(layer, first_in)
        if geometry is not None:
            note = _inexact_note(first_in, geometry)
            if note:
                notes.append(note)
        # Receptive field and jump, per spatial axis, from the input with the largest field.
        incoming = [fields[r] if r >= 0 else start for r in reads]
        rf, jump, global_field = max(incoming, key=lambda f: (f[2], f[0] or ()))
        spatial_field = None if global_field or rf is None else _spatial_field(layer, rf, jump)
        if isinstance(layer, (L.Flatten, L.Dense)) or global_field or rf is None:
            global_field = global_field or isinstance(layer, (L.Flatten, L.Dense))
        elif spatial_field is not None:
            rf, jump, global_field = spatial_field
        elif geometry is not None:
            kernel, strides, _ = geometry
            rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernel, jump))
            jump = tuple(j * s for j, s in zip(jump, strides))
        elif out_shape[:2] != first_in[:2]:
            rf = jump = None  # an unknown layer changed the spatial size
        fields.append((rf, jump, global_field))
        elements = math.prod(out_shape)
        view = isinstance(layer, (L.Flatten, L.Reshape))
        rows.append(LayerReport(
            name=layer.name or layer.default_name(), type=type(layer).__name__,
            input_shape=in_shape, output_shape=out_shape, params=n_params,
            trainable_params=trainable, non_trainable_params=n_params - trainable,
            activations=elements, activation_bytes=0 if view else elements * BYTES_PER_FLOAT,
            macs=macs, flops=flops, backward_flops=backward,
            receptive_field=None if global_field or rf is None else rf,
            jump=None if global_field or jump is None else jump,
            global_field=global_field and spatial > 0, notes=notes))

    input_bytes = math.prod(input_shape) * BYTES_PER_FLOAT
    params = sum(r.params for r in rows)
    trainable = sum(r.trainable_params for r in rows)
    act_bytes = sum(r.activation_bytes for r in rows)
    # Inference peak: the outputs alive while each row runs (its own and every earlier one
    # a later row reads); a view (Flatten) holds its input's memory.
    last_read = {}
    for k, (*_, reads) in enumerate(graph_rows):
        for r in reads:
            last_read[r] = k
    owner = []  # the row whose buffer each row's output is (views point back)
    for k, ((layer, *_), r) in enumerate(zip(graph_rows, rows)):
        reads = graph_rows[k][3]
        owner.append(owner[reads[0]] if r.activation_bytes == 0 and reads[0] >= 0 else k)
    peak = input_bytes
    for k, r in enumerate(rows):
        alive = {owner[j] for j in range(k) if last_read.get(j, -1) >= k}
        alive.add(owner[k])
        held = sum(rows[j].activation_bytes for j in alive)
        held += input_bytes if last_read.get(-1, -1) >= k else 0
        peak = max(peak, held)
    training_act = input_bytes + 2 * act_bytes
    param_bytes = params * BYTES_PER_FLOAT
    grad_bytes = trainable * BYTES_PER_FLOAT
    state_bytes = slots * trainable * BYTES_PER_FLOAT
    forward = sum(r.flops for r in rows)
    backward = sum(r.backward_flops for r in rows)
    totals = {
        "params": params,
        "trainable_params": trainable,
        "non_trainable_params": params - trainable,
        "param_bytes": param_bytes,
        "input_bytes_per_image": input_bytes,
        "activations_per_image": sum(r.activations for r in rows),
        "activation_bytes_per_image": act_bytes,
        "inference_activation_bytes_per_image": peak,
        "training_activation_bytes_per_image": training_act,
        "param_gradient_bytes": grad_bytes,
        "optimizer_state_bytes": state_bytes,
        "inference_memory_bytes": param_bytes + batch_size * peak,
        "training_memory_bytes": param_bytes + grad_bytes + state_bytes + batch_size * training_act,
        "macs_per_image": sum(r.macs for r in rows),
        "flops_forward_per_image": forward,
        "flops_backward_per_image": backward,
        "flops_train_per_image": forward + backward,
    }
    return ModelReport(model_name=model.name, input_shape=input_shape, batch_size=batch_size,
                       optimizer=opt_name, optimizer_slots=slots, layers=rows, totals=totals)
