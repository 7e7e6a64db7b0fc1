"""Reverse-mode differentiation of the IR: from a forward graph and its losses, the training step.

`differentiate(graph, losses, frozen)` returns a `TrainingStep`: the forward nodes the losses
need (in topological order, some run by their training-mode kernel), the loss terms, and one
`BackwardStep` per node that has a trainable parameter or sits between one and a loss, in
reverse topological order. Each step calls the op's gradient rule (`record(op).grad`, a `Grad`
in cnnc/ir/ops.py) and says which forward values it reads, so the code generator
(cnnc/codegen/train.py) keeps exactly those alive until their last backward use.

What is differentiated:
- Only the ancestors of the loss outputs are computed at all (a detection head's NMS beside a
  trained classifier costs nothing). A node on a path from a trainable parameter to a loss
  whose op has no gradient rule is refused, naming the layer and its source line.
- A value read by several nodes gets the sum of their gradients; the sum is complete when its
  producer's step runs, because steps run in reverse topological order.
- A cross-entropy loss on a softmax output is computed on the softmax's input (the logits):
  softmax followed by log is unstable, and the fused gradient is just `softmax − onehot`; a
  binary cross-entropy on a sigmoid output likewise reads the sigmoid's input.
- Network inputs need no gradient: rules that take `need_input` skip it for them.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ..errors import CnncError
from ..ir.graph import Graph
from ..ir.ops import Grad, Op, kernel_call, record, updated_roles
from ..source import source_location

# loss kind → (kernel in cnnc/kernels/backward.py, what its target holds)
LOSSES: dict[str, tuple[str, str]] = {
    "cross_entropy": ("cross_entropy", "class indices"),
    "binary_cross_entropy": ("binary_cross_entropy", "0/1 targets of the output's shape"),
    "mse": ("mse", "values of the output's shape"),
    "l1": ("l1", "values of the output's shape"),
    "smooth_l1": ("smooth_l1", "values of the output's shape"),
}
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {"cross_entropy": ("label_smoothing",), "smooth_l1": ("beta",)}


class CnncTrainError(CnncError):
    """A network, loss, data set or setting that training cannot use."""


@dataclass(frozen=True)
class LossTerm:
    """`weight · kind(output, target)`: one term of the training loss."""

    output: str  # the network output's name
    kind: str = "cross_entropy"  # a key of LOSSES
    weight: float = 1.0
    options: tuple[tuple[str, float], ...] = ()  # label_smoothing=0.1, beta=1.0

    @classmethod
    def parse(cls, text: str, outputs: list[str]) -> LossTerm:
        """`[output=]kind[:weight]`, e.g. `cross_entropy`, `boxes=smooth_l1:0.5` (the CLI's --loss)."""
        name, _, rest = text.rpartition("=") if "=" in text else ("", "", text)
        kind, _, weight = rest.partition(":")
        if not name:
            if len(outputs) != 1:
                raise CnncTrainError(f"loss '{text}': the network has {len(outputs)} outputs "
                                     f"({', '.join(outputs)}); name one, as in {outputs[0]}={kind}", where="--loss")
            name = outputs[0]
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise CnncTrainError(f"loss '{text}': weight '{weight}' is not a number", where="--loss") from None
        return cls(name, kind, value)


@dataclass(frozen=True)
class BackwardStep:
    """The gradient rule of one forward node, as the training step calls it."""

    node: str
    grad: Grad
    saved: tuple[str, ...]  # forward values it reads (node names), in the rule's order
    context: bool  # it also reads the training forward's context
    input_grads: tuple[str | None, ...]  # per data input: the node whose gradient it adds to (None: unused)
    param_grads: tuple[str | None, ...]  # per parameter role: the trainable parameter (None: absent/frozen)
    kwargs: dict[str, object]


@dataclass(frozen=True)
class PlacedLoss:
    """A loss term bound to the node it reads (the logits for a softmax output)."""

    term: LossTerm
    node: str
    kernel: str


@dataclass
class TrainingStep:
    """What one training step computes, in order (see the module docstring)."""

    graph: Graph
    forward: list[str]  # nodes computed, topological order (inputs excluded)
    losses: list[PlacedLoss]
    backward: list[BackwardStep]  # reverse topological order
    trainable: list[str]  # parameters that get gradients, in the graph's order
    train_mode: set[str] = field(default_factory=set)  # nodes run by their training forward kernel
    state: list[str] = field(default_factory=list)  # parameters the forward updates (BN running stats)


def frozen_params(graph: Graph, patterns: tuple[str, ...]) -> set[str]:
    """The parameters whose names match a glob in `patterns` (`conv1.*`, `layer[12].*`); a
    pattern that matches nothing is an error (a typo would otherwise train everything)."""
    names = list(graph.info.param_specs)
    frozen: set[str] = set()
    for pattern in patterns:
        matched = {n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, pattern + ".*")}
        if not matched:
            raise CnncTrainError(f"--freeze '{pattern}' matches no parameter (they are named like "
                                 f"'{names[0] if names else 'conv1.weight'}')", where="--freeze")
        frozen |= matched
    return frozen


def differentiate(graph: Graph, losses: list[LossTerm], frozen: AbstractSet[str] = frozenset()) -> TrainingStep:
    """The training step of `graph` for `losses`; `frozen` parameters get no gradient."""
    if not losses:
        raise CnncTrainError("no loss given", where="losses")
    placed = [_place(graph, term) for term in losses]
    needed: set[str] = set()
    for loss in placed:
        needed |= _ancestors(graph, loss.node)
    order = [n for n in graph.topo_order() if n in needed]
    # A node "carries" a gradient when a trainable parameter reaches it.
    carries: set[str] = set()
    for name in order:
        updated = updated_roles(graph.op(name))
        own = any(p not in frozen and role not in updated for role, p in graph.params_of(name).items())
        if own or any(i in carries for i in graph.inputs_of(name)):
            carries.add(name)
    trainable: list[str] = []
    steps: list[BackwardStep] = []
    train_mode: set[str] = set()
    state: list[str] = []
    for name in order:
        grad = record(graph.op(name)).grad
        if grad is not None and grad.train_forward is not None:
            train_mode.add(name)
            state += [graph.params_of(name)[role] for role in grad.updates]
    for name in reversed(order):
        if name not in carries or graph.op(name) == Op.INPUT:
            continue
        node = graph.node(name)
        grad = record(node.op).grad
        if grad is None:
            raise CnncTrainError(f"layer '{name}' ({node.op}) has no gradient, and it lies between the "
                                 f"parameters and the loss; train an output that does not pass through it",
                                 where=source_location(node.spans) if node.spans else name)
        inputs = graph.inputs_of(name)
        roles = record(node.op).roles
        node_params = node.params
        param_grads = tuple(node_params[r] if r in node_params and node_params[r] not in frozen
                            and r not in grad.updates else None for r in roles)
        trainable += [p for p in param_grads if p is not None]
        saved = (tuple(inputs) if "inputs" in grad.saves else ()) + ((name,) if "output" in grad.saves else ())
        _, kwargs = kernel_call(node.op, node.attrs, list(inputs), dict(node_params), str, node.shape)
        if grad.in_shapes:
            kwargs["in_shapes"] = [tuple(graph.shape(i)[1:]) for i in inputs]
        input_grads = tuple(i if i in carries else None for i in inputs)
        if grad.need_input and input_grads[0] is None:
            kwargs["need_input"] = False
        steps.append(BackwardStep(name, grad, saved, grad.train_forward is not None, input_grads, param_grads,
                                  kwargs))
    if not trainable:
        raise CnncTrainError("nothing to train: every parameter the losses depend on is frozen", where="--freeze")
    chosen = set(trainable)
    ordered = [p for p in graph.info.param_specs if p in chosen]
    forward = [n for n in order if graph.op(n) != Op.INPUT]
    return TrainingStep(graph, forward, placed, steps, ordered, train_mode, state)


def _place(graph: Graph, term: LossTerm) -> PlacedLoss:
    outputs = graph.info.outputs
    if term.output not in outputs:
        raise CnncTrainError(f"the network has no output '{term.output}' (its outputs: {', '.join(outputs)})",
                             where="--loss")
    if term.kind not in LOSSES:
        raise CnncTrainError(f"unknown loss '{term.kind}' (known: {', '.join(LOSSES)})", where="--loss")
    unknown = [k for k, _ in term.options if k not in LOSS_OPTIONS.get(term.kind, ())]
    if unknown:
        raise CnncTrainError(f"loss {term.kind} has no option '{unknown[0]}'", where="--loss")
    node = outputs[term.output]
    if term.kind == "binary_cross_entropy" and graph.op(node) == Op.SIGMOID:
        node = graph.inputs_of(node)[0]  # the same loss on the logits, without log(sigmoid) underflow
    if term.kind == "cross_entropy":
        if graph.op(node) == Op.SOFTMAX:
            if graph.attrs(node).axis != 1:
                raise CnncTrainError(f"output '{term.output}': cross-entropy needs the softmax over axis 1",
                                     where="--loss")
            node = graph.inputs_of(node)[0]
        shape = graph.shape(node)
        if len(shape) not in (2, 4):
            raise CnncTrainError(f"output '{term.output}' has shape {shape}: cross-entropy needs class scores "
                                 "[N, classes] or [N, classes, H, W]", where="--loss")
    return PlacedLoss(term, node, LOSSES[term.kind][0])


def _ancestors(graph: Graph, name: str) -> set[str]:
    import networkx as nx

    return set(nx.ancestors(graph, name)) | {name}
