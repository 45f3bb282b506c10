"""A tf_keras functional model as a graph of layer calls, for `keras_import`.

Each `Node` is one call of one layer with the nodes that feed it. Layers that
are the identity at inference (dropout, noise, augmentation, a linear
`Activation`) are skipped, so a pattern reads the same with or without them.
`run_chain` evaluates a chain of single-input calls eagerly, which is how the
importer recognises weightless layers (pooling, activations) by what they do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.errors import UserError

IDENTITY_AT_INFERENCE = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Identity", "RandomFlip", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "RandomBrightness",
}
ADD_SYMBOLS = {"__operators__.add", "math.add"}


@dataclass(eq=False)
class Node:
    layer: object
    call: object                                   # tf_keras' Node of this call
    inputs: list = field(default_factory=list)     # Nodes feeding it, in call order
    consumers: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return type(self.layer).__name__

    @property
    def tensor(self):
        return self.call.outputs if not isinstance(self.call.outputs, (list, tuple)) else self.call.outputs[0]

    @property
    def shape(self) -> tuple:
        """Output shape without the batch axis."""
        return tuple(self.tensor.shape[1:])

    def describe(self) -> str:
        return f"layer {self.name!r} ({self.kind})"

    @property
    def is_add(self) -> bool:
        """A sum of two tensors of the graph (Add, or `a + b` written in the functional code)."""
        if len(self.inputs) != 2:
            return False
        return self.kind == "Add" or getattr(self.layer, "symbol", None) in ADD_SYMBOLS

    @property
    def only_consumer(self):
        return self.consumers[0] if len(self.consumers) == 1 else None


def _is_identity(layer) -> bool:
    kind = type(layer).__name__
    if kind in IDENTITY_AT_INFERENCE:
        return True
    return kind == "Activation" and getattr(layer.activation, "__name__", "") == "linear"


class Graph:
    """The calls from the model's input to its output, identity layers skipped."""

    def __init__(self, model):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise UserError(f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
                            f"outputs; a ViT takes one image and returns one logits tensor")
        self.model = model
        self._nodes = {}
        self.order = []                      # topological: inputs first
        self.output = self._resolve(model.outputs[0])
        inputs = [n for n in self.order if n.kind == "InputLayer"]
        if len(inputs) != 1:
            raise UserError(f"model {model.name!r}: the output depends on {len(inputs)} inputs, expected one image")
        self.input = inputs[0]

    def _resolve(self, keras_tensor) -> Node:
        layer, node_index, _ = keras_tensor._keras_history
        call = layer._inbound_nodes[node_index]
        key = id(call)
        if key in self._nodes:
            return self._nodes[key]
        parents = list(call.keras_inputs)
        if _is_identity(layer) and len(parents) == 1:
            node = self._resolve(parents[0])
            self._nodes[key] = node
            return node
        if type(layer).__name__ in ("Functional", "Sequential", "Model"):
            raise UserError(f"layer {layer.name!r} ({type(layer).__name__}) is a model inside the model; "
                            f"write the ViT as one functional model of layers")
        outputs = call.outputs if isinstance(call.outputs, (list, tuple)) else [call.outputs]
        if len(outputs) != 1:
            raise UserError(f"layer {layer.name!r} ({type(layer).__name__}) returns {len(outputs)} tensors; "
                            f"every layer of a supported ViT returns one")
        node = Node(layer, call)
        self._nodes[key] = node
        node.inputs = [self._resolve(t) for t in parents]
        for parent in dict.fromkeys(node.inputs):
            parent.consumers.append(node)
        self.order.append(node)
        return node

    def ancestors(self, node) -> list:
        """Every node `node` depends on (itself included), in topological order."""
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            if id(n) not in seen:
                seen.add(id(n))
                stack.extend(n.inputs)
        return [n for n in self.order if id(n) in seen]


def run_chain(chain, values) -> np.ndarray:
    """Apply a chain of single-input calls (each fed by the previous one) to `values`, eagerly."""
    import tensorflow as tf

    x = tf.constant(np.asarray(values, np.float32))
    for node in chain:
        source = node.call.keras_inputs[0]
        args, kwargs = tf.nest.map_structure(lambda a: x if a is source else a,
                                             (tuple(node.call.call_args), dict(node.call.call_kwargs)))
        x = node.layer(*args, **kwargs)
    return np.asarray(x, np.float64)
