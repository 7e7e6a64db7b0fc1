"""Emit the training step as a self-contained Python module, in the forward module's style.

`generate_training(step)` writes one function, `train_step(params, rng, <inputs>, <targets>)`:
the forward pass in training mode (one statement per IR node, batch norm on batch statistics,
dropout with a mask drawn from `rng`), one statement per loss term, then one statement per
backward step (the op's gradient rule, commented with the same source line as its forward
statement). A value is deleted after its last use, so the forward pass keeps only what the
backward pass reads (the rules' `saves`), and each gradient lives from the statement that makes
it to the one that consumes it. A value read by several layers gets one gradient variable per
reader and a statement that adds them when its own layer's step comes.

The kernels it calls are copied in from cnnc/kernels/numpy_kernels.py (forward),
backward.py and backward_windows.py (gradients and losses). Output is deterministic.
"""
from __future__ import annotations

from collections import defaultdict

from ..ir.ops import Op, kernel_call, record
from ..ir.shapes import fmt
from ..kernels import backward, backward_windows, numpy_kernels
from ..training.autodiff import LOSSES, TrainingStep
from .common import docstring, kernel_arguments, statement, statement_comment
from .kernel_source import function_names, kernel_sources
from .namespace import Namespace

KERNEL_MODULES = (numpy_kernels, backward, backward_windows)
_RESERVED = {"np", "math", "params", "grads", "rng", "train_step", "loss", "INPUTS", "TARGETS", "TRAINABLE",
             "STATE", "_"}


class _Program:
    """Statements with the names each defines and reads, so dead values can be deleted."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.defines: list[set[str]] = []
        self.uses: list[set[str]] = []

    def add(self, lines: list[str], defines: set[str], uses: set[str]) -> None:
        self.lines.append(lines)
        self.defines.append(defines)
        self.uses.append(uses)

    def render(self, keep: set[str]) -> list[str]:
        last: dict[str, int] = {}
        for index, (defined, used) in enumerate(zip(self.defines, self.uses)):
            for name in defined | used:
                last[name] = index
        out: list[str] = []
        for index, lines in enumerate(self.lines):
            out += lines
            dead = sorted(n for n, i in last.items() if i == index and n not in keep)
            if dead:
                out.append(f"    del {', '.join(dead)}  # last use")
        return out


def generate_training(step: TrainingStep) -> str:
    """The training module's source text for `step` (see the module docstring)."""
    graph = step.graph
    ns = Namespace(_RESERVED | function_names(KERNEL_MODULES))
    inputs = graph.info.inputs
    targets = {loss.term.output: ns.name(f"target_{loss.term.output}") for loss in step.losses}
    program = _Program()
    kernels: set[str] = set()

    # ---- forward, in training mode ----
    context: dict[str, str] = {}
    for name in step.forward:
        node = graph.node(name)
        info = record(node.op)
        args_in = [ns.name(i) for i in graph.inputs_of(name)]
        args = kernel_arguments(graph, name, ns.name)
        target = ns.name(name)
        if name in step.train_mode:
            assert info.grad is not None and info.grad.train_forward is not None
            kernel: str | None = info.grad.train_forward
            context[name] = ns.name(f"{name}_context")
            if node.op == Op.DROPOUT:
                args = [args_in[0], f"rate={node.attrs.rate!r}", "rng=rng"]
                if node.attrs.mode != "element":
                    args.append(f"mode={node.attrs.mode!r}")
            target = f"{target}, {context[name]}"
        else:
            kernel = info.kernel
        if kernel is not None:
            kernels.add(kernel)
        program.add(statement(target, kernel, args, statement_comment(node)),
                    {ns.name(name), *([context[name]] if name in context else [])}, set(args_in))

    # ---- losses ----
    gradient_of: dict[str, list[str]] = defaultdict(list)  # node → the variables holding its gradient parts
    readers: dict[str, int] = defaultdict(int)  # node → how many gradient parts it receives
    for back in step.backward:
        for i in back.input_grads:
            if i is not None:
                readers[i] += 1
    for loss in step.losses:
        readers[loss.node] += 1
    loss_terms: list[str] = []
    loss_values: set[str] = set()
    for loss in step.losses:
        term = loss.term
        value = ns.name(f"loss_{term.output}")
        part = _gradient_variable(ns, loss.node, gradient_of, readers)
        options = [f"{k}={v!r}" for k, v in term.options]
        kernels.add(loss.kernel)
        comment = (f"loss on output '{term.output}': {term.kind}"
                   + (f" of its logits {loss.node!r}" if graph.info.outputs[term.output] != loss.node else "")
                   + f", weight {term.weight:g}")
        program.add(statement(f"{value}, {part}", loss.kernel, [ns.name(loss.node), targets[term.output], *options],
                              comment), {value, part}, {ns.name(loss.node), targets[term.output]})
        if term.weight != 1.0:
            program.add([f"    {part} *= {term.weight!r}  # the term's weight"], {part}, {part})
        loss_terms.append(value if term.weight == 1.0 else f"{term.weight!r} * {value}")
        loss_values.add(value)
    program.add([f"    loss = {' + '.join(loss_terms)}"], {"loss"}, loss_values)
    program.add(["    grads = {}"], {"grads"}, set())

    # ---- backward, in reverse topological order ----
    param_parts: dict[str, list[str]] = defaultdict(list)
    param_uses: dict[str, int] = defaultdict(int)  # a parameter read by several layers sums their parts
    for back in step.backward:
        for p in back.param_grads:
            if p is not None:
                param_uses[p] += 1
    for back in step.backward:
        node = graph.node(back.node)
        mine = _gather(ns, back.node, gradient_of, program)
        outs: list[str] = []
        for i in back.input_grads:
            outs.append("_" if i is None else _gradient_variable(ns, i, gradient_of, readers))
        for p in back.param_grads:
            if p is None:
                outs.append("_")
            elif param_uses[p] == 1:
                outs.append(f"grads[{p!r}]")
            else:
                variable = ns.name(f"grad_{p}_{len(param_parts[p]) + 1}")
                param_parts[p].append(variable)
                outs.append(variable)
        saved = [ns.name(s) for s in back.saved] + ([context[back.node]] if back.context else [])
        positional, _ = kernel_call(node.op, node.attrs, [], dict(node.params), lambda p: f"params[{p!r}]",
                                    node.shape)
        args = [mine, *saved, *("None" if a is None else a for a in positional)]
        args += [f"{k}={v!r}" for k, v in back.kwargs.items()]
        kernels.add(back.grad.kernel)
        comment = f"{statement_comment(node).split(' -> ')[0]} (gradient)"
        target = ", ".join(outs) if len(outs) > 1 else f"({outs[0]},)"  # a kernel returns a tuple
        program.add(statement(target, back.grad.kernel, args, comment),
                    {o for o in outs if o != "_" and not o.startswith("grads[")}, {mine, *saved})
    for p, parts in param_parts.items():
        program.add([f"    grads[{p!r}] = {' + '.join(parts)}  # {len(parts)} layers read it"], set(), set(parts))

    # Arguments and the loss floats are left alone: deleting them frees nothing.
    keep = {"loss", "grads", *(ns.name(loss.node) for loss in step.losses), *(ns.name(n) for n in inputs),
            *targets.values(), *loss_values}
    values = ", ".join(f"{loss.term.output!r}: {ns.name(loss.node)}" for loss in step.losses)
    signature = ", ".join([*(ns.name(n) for n in inputs), *targets.values()])
    lines = [
        *docstring(graph, " (training step)", [
            "Losses:  " + "; ".join(f"{loss.term.output}: {loss.term.kind} (target: {LOSSES[loss.term.kind][1]})"
                                    f", weight {loss.term.weight:g}" for loss in step.losses),
            "train_step(params, rng, inputs..., targets...) returns (loss, values, grads); cnnc's trainer",
            "(cnnc/training/trainer.py) applies the optimizer."]),
        "import math",
        "",
        "import numpy as np",
        "",
        f"INPUTS = {{{', '.join(f'{n!r}: {graph.shape(n)!r}' for n in inputs)}}}",
        f"TARGETS = {{{', '.join(f'{o!r}: {LOSSES[k][1]!r}' for o, k in _kinds(step))}}}",
        "TRAINABLE = (",
        *(f"    {p!r},  # {fmt(graph.info.param_specs[p].shape)}" for p in step.trainable),
        ")",
        f"STATE = {tuple(step.state)!r}  # updated in place by the forward pass (batch-norm running statistics)",
        "",
        "",
        f"def train_step(params, rng, {signature}):",
        '    """One training step on a batch: the forward pass in training mode, the loss, every gradient.',
        "",
        "    Returns (loss, values, grads): the total loss (a float), the value each loss read by output",
        "    name (the logits for a softmax output), and the gradient of every TRAINABLE parameter.",
        '    """',
        *program.render(keep),
        f"    return loss, {{{values}}}, grads",
        "",
        "",
        "# ---- kernels, copied from cnnc.kernels.numpy_kernels, backward and backward_windows ----",
    ]
    for source in kernel_sources(KERNEL_MODULES, sorted(kernels)):
        lines += ["", "", source]
    return "\n".join(lines) + "\n"


def _kinds(step: TrainingStep) -> list[tuple[str, str]]:
    return [(loss.term.output, loss.term.kind) for loss in step.losses]


def _gradient_variable(ns: Namespace, node: str, gradient_of: dict[str, list[str]], readers: dict[str, int]) -> str:
    """A fresh variable for one part of `node`'s gradient: `d_<node>` when it has one part, else
    `d_<node>_1`, `d_<node>_2`, … summed by `_gather`."""
    parts = gradient_of[node]
    key = f"d_{node}" if readers[node] == 1 else f"d_{node}_{len(parts) + 1}"
    variable = ns.name(key)
    parts.append(variable)
    return variable


def _gather(ns: Namespace, node: str, gradient_of: dict[str, list[str]], program: _Program) -> str:
    """The variable holding `node`'s whole gradient, adding its parts first when there are several."""
    parts = gradient_of[node]
    if len(parts) == 1:
        return parts[0]
    total = ns.name(f"d_{node}")
    program.add([f"    {total} = {' + '.join(parts)}  # {len(parts)} layers read {node!r}: their gradients add"],
                {total}, set(parts))
    return total
