"""Symbolic tensors and call nodes: how the functional API records a graph.

``x = Input((32, 32, 3)); y = Conv2D(16, 3)(x)`` calls the layer on a :class:`SymbolicTensor`;
the call builds the layer for that shape, records a :class:`Node` (the layer, its input
tensors, the index of this call among the layer's calls) and returns the node's output tensor.
:func:`collect` walks back from a model's output to order the nodes, refusing what is not a
graph from its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnfast.layers import Layer

Shape = tuple[int, ...]


class SymbolicTensor:
    """The output of one layer call in a functional model: a shape without data.

    ``shape`` includes the batch axis as None, as Keras's ``KerasTensor.shape`` does.
    """

    def __init__(self, node: Node, shape: Shape) -> None:
        self.node = node
        self.sample_shape = tuple(int(s) for s in shape)

    @property
    def shape(self) -> tuple[int | None, ...]:
        return (None, *self.sample_shape)

    @property
    def name(self) -> str:
        layer = self.node.layer
        return layer.name if self.node.index == 0 else f"{layer.name}[{self.node.index}]"

    def __repr__(self) -> str:
        return f"<SymbolicTensor {self.name} shape={self.shape}>"


class Node:
    """One call of a layer: its inputs (symbolic tensors) and its output."""

    def __init__(self, layer: Layer, inputs: list[SymbolicTensor], index: int) -> None:
        self.layer = layer
        self.inputs = inputs
        self.index = index
        self.output: SymbolicTensor | None = None
        # An Input node: the default layer names given out in the graph below it.
        self.default_names_below: set[str] = set()


def is_symbolic(x: Any) -> bool:
    """A symbolic tensor, or a non-empty list/tuple of them (merge layers)."""
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(t, SymbolicTensor)
                                                            for t in x)


def call(layer: Layer, inputs: SymbolicTensor | Sequence[SymbolicTensor]) -> SymbolicTensor:
    """Record ``layer(inputs)``: build the layer for the input shapes (or check them when it
    was built by an earlier call, whose weights this call shares) and return its output."""
    many = not isinstance(inputs, SymbolicTensor)
    tensors = list(inputs) if many else [inputs]
    if many != layer.takes_many_inputs:
        what = "a list of tensors" if layer.takes_many_inputs else "one tensor"
        raise TypeError(f"{layer.describe()}: takes {what}, got "
                        f"{len(tensors) if many else 1} input(s)")
    shapes = [t.sample_shape for t in tensors]
    shape: Any = shapes if many else shapes[0]
    if layer.name is None:
        layer.name = _unique_name(layer, tensors)
    if layer.built:
        if _as_key(layer.input_shape) != _as_key(shape):
            raise ValueError(f"{layer.describe()}: was built for input {layer.input_shape}, now "
                             f"called on {shape} (a layer called twice shares its weights, so "
                             f"both calls need one shape)")
    else:
        layer.build(shape)
    node = Node(layer, tensors, len(layer._nodes))
    node.output = SymbolicTensor(node, layer.output_shape(shape))
    layer._nodes.append(node)
    return node.output


def _as_key(shape: Any) -> Any:
    if isinstance(shape, list):
        return [tuple(s) for s in shape]
    return tuple(shape) if shape is not None else None


def _unique_name(layer: Layer, tensors: list[SymbolicTensor]) -> str:
    """A default name not used by any layer reachable from the inputs, nor given to a layer on
    another branch from the same inputs (Keras: conv2d_1, ...): the graph's Input nodes remember
    the default names handed out below them, so two branches (a ResNet's shortcut and its
    residual convolutions) never get the same one."""
    reachable = _reachable([t.node for t in tensors])
    roots = [n for n in reachable if not n.inputs]
    taken = {n.layer.name for n in reachable}
    for root in roots:
        taken |= root.default_names_below
    base = layer.default_name()
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    for root in roots:
        root.default_names_below.add(name)
    return name


def _reachable(nodes: list[Node]) -> list[Node]:
    seen: dict[int, Node] = {}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(t.node for t in node.inputs)
    return list(seen.values())


def collect(inputs: SymbolicTensor, outputs: SymbolicTensor) -> list[Node]:
    """The nodes from `inputs` to `outputs` in dependency order (the input's node first).

    Raises ValueError when the output depends on a tensor that does not come from `inputs`
    (a dangling input: another Input, naming it), or when two layers share a name.
    """
    order: list[Node] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    # Iterative depth-first post-order from the output, so deep stacks do not recurse.
    stack: list[tuple[Node, bool]] = [(outputs.node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            state[id(node)] = 2
            order.append(node)
            continue
        if state.get(id(node)) == 2:
            continue
        state[id(node)] = 1
        stack.append((node, True))
        if not node.inputs and node is not inputs.node:
            raise ValueError(f"the model's output {outputs.name} depends on "
                             f"{node.layer.describe()} {node.output.shape}, which is not the "
                             f"model's input {inputs.name} (a dangling input)")
        for t in reversed(node.inputs):
            if state.get(id(t.node)) != 2:
                stack.append((t.node, False))
    if order[0] is not inputs.node and inputs.node not in order:
        raise ValueError(f"the model's output {outputs.name} does not depend on its input "
                         f"{inputs.name}")
    names: dict[str, Layer] = {}
    for node in order:
        other = names.setdefault(node.layer.name, node.layer)
        if other is not node.layer:
            raise ValueError(f"two layers are named {node.layer.name!r} "
                             f"({other.describe()} and {node.layer.describe()}); names must be "
                             f"unique in a model")
    return order
