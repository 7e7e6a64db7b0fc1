"""Elaboration: evaluate a parsed program (blocks, repetition, arithmetic) into the IR graph.

Shapes are inferred while the graph is built, because the program can read them
(`channels(x)`); every error is raised with the span of the construct that caused it. Errors are
collected statement by statement and unused names warned about (diagnostics.py).
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..errors import CnncError, CnncImportError, CnncNameError, CnncShapeError, CnncTypeError
from ..ir.graph import Graph
from ..ir.input_shape import override_input_shape, shown
from ..ir.ops import NoAttrs, Op, ScalarAffineAttrs, infer_shape, param_specs
from ..ir.shapes import ShapeRuleError
from ..labels import class_count, read_label_file, shipped
from ..limits import MAX_BLOCK_CALLS, MAX_BLOCK_DEPTH, MAX_LAYERS, MAX_REPEAT, MAX_TENSOR_ELEMENTS
from ..source import SourceFile, Span
from ..syntax import tree as t
from ..syntax.parser import parse_source
from ..syntax.reader import ReadFailure, read_program, resolve_path
from . import builtins
from .arguments import ArgError, to_int
from .calls import bind_block_args, bind_layer_args, check_block
from .diagnostics import POISON, Diagnostics, Poisoned, Usage
from .layers import LAYER_OPS
from .prepare import bind_steps
from .scope import Namer
from .values import Block, Symbol, Tensor, describe

Env = dict[str, object]


_TENSOR_OPS = {"+": Op.ADD, "-": Op.SUB, "*": Op.MUL, "/": Op.DIV}  # tensor op tensor


class Elaborator:
    """Builds one IR graph from a main program and the files it imports."""

    def __init__(self, input_shapes: dict[str, tuple] | None = None):
        self.graph = Graph()
        self.namer = Namer()
        self.input_shapes = dict(input_shapes or {})
        self._loading: list[Path] = []
        self._loaded: dict[Path, Env] = {}
        self._layer_span: Span | None = None
        self._layer_name = ""
        self._depth = 0
        self._block_calls = 0
        self.diagnostics = Diagnostics()
        self.usage = Usage()
        self._main: Env | None = None  # the main program's names, whose uses `usage` follows

    # ---- programs and statements ------------------------------------------------------------
    def run(self, program: t.Program, source: SourceFile) -> Graph:
        self.graph.info.source_name = source.name
        env: Env = {}
        self._main = env
        if source.path is not None:
            self._loading.append(source.path)  # a file that imports the main file is a cycle too
        self._module(program, source, env, library=False)
        self.diagnostics.raise_errors()  # the checks of the whole program need every statement
        unused = set(self.input_shapes) - set(self.graph.info.inputs)
        if unused:
            raise CnncNameError(f"input shape given for unknown input(s): {', '.join(sorted(unused))}; "
                                f"the inputs are: {', '.join(self.graph.info.inputs)}",
                                where=source.name)
        if not self.graph.info.outputs:  # point at the last statement, after which one belongs
            raise CnncNameError("the network declares no output (add `output name = ...`)",
                                program.items[-1].span if program.items else None, where=source.name)
        self.usage.warn()
        return self.graph

    def run_library(self, program: t.Program, source: SourceFile) -> Env:
        """Elaborate a library (blocks and constants, as an import would) and return its names."""
        env: Env = {}
        if source.path is not None:
            self._loading.append(source.path)
        self._module(program, source, env, library=True)
        self.diagnostics.raise_errors()
        return env

    def _module(self, program: t.Program, source: SourceFile, env: Env, library: bool) -> None:
        """Elaborate each statement; one that fails is recorded and poisons its names (diagnostics.py)."""
        for item in program.items:
            if self.diagnostics.stopped:
                return
            try:
                self._statement(item, source, env, library)
            except (CnncError, Poisoned) as error:  # past a limit on the whole program's work, stop
                self.diagnostics.failed(item, error, env,
                                        stop=self._block_calls > MAX_BLOCK_CALLS or len(self.graph) >= MAX_LAYERS)

    def _statement(self, item: t.Node, source: SourceFile, env: Env, library: bool) -> None:
        if isinstance(item, t.Import):
            self._import(item, source, env)
        elif isinstance(item, t.BlockDef):
            check_block(item)
            block = Block(item, env)
            self._bind(env, item.name, block, item.span)
            if env is self._main:
                self.usage.define(block)
        elif isinstance(item, t.Assign):
            value = self.eval(item.value, env)
            if library and isinstance(value, Tensor):
                raise CnncError("an imported file may define blocks and constants only", item.span)
            env[item.name] = value
            if env is self._main:
                self.usage.bind(item.name, value, item.span)
        elif library:
            raise CnncError("an imported file may define blocks and constants only, not inputs or "
                            "outputs", item.span)
        elif isinstance(item, t.InputDecl):
            self._input(item, env)
        elif isinstance(item, t.OutputDecl):
            self._output(item, env)

    def _bind(self, env: Env, name: str, value: object, span: Span) -> None:
        if name in env:
            what = "a block" if isinstance(env[name], Block) else "a value"
            raise CnncNameError(f"'{name}' is already defined (as {what})", span)
        env[name] = value

    def _import(self, item: t.Import, source: SourceFile, env: Env) -> None:
        path = self._import_path(item, source)
        if path in self._loading:
            raise CnncImportError(f"import cycle: {' -> '.join(p.name for p in [*self._loading, path])}",
                                  item.span)
        if path not in self._loaded:
            try:
                text = read_program(path)
            except ReadFailure as failure:
                raise CnncImportError(f"cannot import {item.path!r}: {failure}", item.span) from None
            imported = SourceFile(item.path, text, path)
            module_env: Env = {}
            self._loading.append(path)
            try:
                self._module(parse_source(imported), imported, module_env, library=True)
            finally:
                self._loading.pop()
            self._loaded[path] = module_env
        for name, value in self._loaded[path].items():
            env.setdefault(name, value)

    def _import_path(self, item: t.Import, source: SourceFile) -> Path:
        """The file an import reads: relative to the importing file, symlinks followed, and a
        `.cnn` file (so an error excerpt never shows a line of some other file)."""
        base = source.path.parent if source.path else Path.cwd()
        try:
            path = resolve_path(base / item.path)
        except ReadFailure as failure:
            raise CnncImportError(f"cannot import {item.path!r}: {failure}", item.span) from None
        if path.suffix != ".cnn":
            raise CnncImportError(f"cannot import {item.path!r}: only .cnn files can be imported", item.span)
        return path

    def _input(self, item: t.InputDecl, env: Env) -> None:
        dims = list(item.dims)
        if any(isinstance(d, str) for d in dims[1:]):
            raise CnncShapeError("only the first (batch) dimension of an input may be a name", item.span)
        if any(isinstance(d, int) and d < 1 for d in dims):
            raise CnncShapeError("input dimensions must be positive", item.span)
        if item.name in self.input_shapes:
            given = self.input_shapes[item.name]
            overridden = override_input_shape(tuple(dims), given)
            if overridden is None:
                raise CnncShapeError(f"input shape {shown(given)} for '{item.name}' does not fit the declared "
                                     f"rank {len(dims)} with positive sizes (only the batch may be a name)",
                                     item.span)
            dims = list(overridden)
        if item.name in env:
            raise CnncNameError(f"'{item.name}' is already defined", item.span)
        _check_size(tuple(dims), f"input '{item.name}'", item.span)
        name = self.namer.claim(item.name, item.name, item.span)
        self.graph.add_op(name, Op.INPUT, NoAttrs(), [], tuple(dims), (item.span,))
        self.graph.info.inputs.append(name)
        if item.prepare is not None:
            self.graph.info.preprocess[name] = bind_steps(item.prepare, tuple(dims), lambda e: self.eval(e, env),
                                                          item.span)
        env[item.name] = Tensor(name, tuple(dims))
        if env is self._main:
            self.usage.bind(item.name, env[item.name], item.span, "input")

    def _output(self, item: t.OutputDecl, env: Env) -> None:
        value = self._value(item.value if item.value is not None else t.Var(item.span, item.name), env)
        if not isinstance(value, Tensor):
            raise CnncTypeError(f"output '{item.name}' must be a tensor, got {describe(value)}", item.span)
        if item.name in self.graph.info.outputs:
            raise CnncNameError(f"output '{item.name}' is declared twice", item.span)
        self.graph.info.outputs[item.name] = value.node
        if item.labels is not None:
            self.graph.info.labels[item.name] = self._labels(item, value)
        if item.value is not None:
            env.setdefault(item.name, value)

    def _labels(self, item: t.OutputDecl, value: Tensor) -> tuple[str, ...]:
        """The class names `labels` gives an output: a shipped set, or a file relative to the
        program's folder; their count must be the output's number of classes (axis 1)."""
        assert item.labels is not None
        try:
            if item.labels_is_path:
                folder = item.span.file.path.parent if item.span.file.path is not None else Path.cwd()
                names = read_label_file(folder / item.labels)
            else:
                names = shipped(item.labels)
        except CnncError as error:
            raise CnncError(error.message, item.span) from None
        classes, counted = class_count(self.graph, value.node)
        if classes != len(names):
            raise CnncShapeError(f"output '{item.name}': {counted}, but its labels name {len(names)}", item.span)
        return names

    # ---- expressions ------------------------------------------------------------------------
    def eval(self, node: t.Expr, env: Env) -> object:
        method: Callable = getattr(self, f"_eval_{type(node).__name__}")
        try:
            return method(node, env)
        except RecursionError:
            # Raised again by frames too deep to build the error; one with room names the place.
            raise CnncError("the program nests expressions too deeply to compile", node.span) from None

    def _lookup(self, name: str, env: Env, span: Span) -> object:
        if name in env:
            return self._use(name, env)
        return Symbol(name)

    def _use(self, name: str, env: Env) -> object:
        """The value of a bound name, refusing a poisoned one; a use in the main program is noted."""
        value = env[name]
        if value is POISON:
            raise Poisoned(name)
        if env is self._main:
            self.usage.read(name, value)
        else:
            self.usage.called(value)  # a block called from a block
        return value

    def _eval_Literal(self, node: t.Literal, env: Env) -> object:
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise CnncTypeError("this number is too large to represent", node.span)
        return node.value

    def _eval_Var(self, node: t.Var, env: Env) -> object:
        return self._lookup(node.name, env, node.span)

    def _eval_TupleExpr(self, node: t.TupleExpr, env: Env) -> object:
        return tuple(self._value(item, env) for item in node.items)

    def _value(self, node: t.Expr, env: Env) -> object:
        """Evaluate, refusing undefined names (only op arguments may be bare words)."""
        value = self.eval(node, env)
        if isinstance(value, Symbol):
            raise self.undefined(value.name, env, node.span)
        return value

    def undefined(self, name: str, env: Env, span: Span) -> CnncNameError:
        if self.diagnostics.names_unknown:  # the failed import may have defined it
            raise Poisoned(name)
        candidates = [*env, *LAYER_OPS, *builtins.FUNCTIONS]
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return CnncNameError(f"undefined name '{name}'{hint}", span)

    def _eval_Unary(self, node: t.Unary, env: Env) -> object:
        value = self._value(node.operand, env)
        if isinstance(value, Tensor) and node.op == "-":
            return self._scalar_affine(value, -1.0, 0.0, node.span)
        try:
            return builtins.unary(node.op, value)
        except ArgError as error:
            raise CnncTypeError(str(error), node.span) from None

    def _eval_Binary(self, node: t.Binary, env: Env) -> object:
        if node.op in ("and", "or"):
            left = self._value(node.left, env)
            if not isinstance(left, bool):
                raise CnncTypeError(f"'{node.op}' needs true or false, got {describe(left)}", node.left.span)
            if (node.op == "and") != left:  # short-circuit like Python
                return left
            right = self._value(node.right, env)
            if not isinstance(right, bool):
                raise CnncTypeError(f"'{node.op}' needs true or false, got {describe(right)}", node.right.span)
            return right
        left, right = self._value(node.left, env), self._value(node.right, env)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self._tensor_binary(node, left, right)
        try:
            return builtins.binary(node.op, left, right)
        except ArgError as error:
            raise CnncTypeError(str(error), node.span) from None

    def _tensor_binary(self, node: t.Binary, left: object, right: object, name: str | None = None) -> Tensor:
        """`+ - * /` between two tensors (elementwise ops with broadcasting), or between a tensor
        and a number (one scalar_affine node: x·scale + shift)."""
        if isinstance(left, Tensor) and isinstance(right, Tensor) and node.op in _TENSOR_OPS:
            op = _TENSOR_OPS[node.op]
            with self.layer(op.value, name, node.span):
                return self.emit(op, NoAttrs(), [left, right])
        number = right if isinstance(left, Tensor) else left
        if node.op in _TENSOR_OPS and isinstance(number, (int, float)) and not isinstance(number, bool):
            value = self._finite(number, node)
            tensor = left if isinstance(left, Tensor) else right
            assert isinstance(tensor, Tensor)
            if node.op == "/" and tensor is right:
                raise CnncTypeError("a number cannot be divided by a tensor; write the reciprocal "
                                    "with another op", node.span)
            if node.op == "/" and value == 0:
                raise CnncTypeError("division of a tensor by zero", node.span)
            if node.op == "+":
                scale, shift = 1.0, value
            elif node.op == "*":
                scale, shift = value, 0.0
            elif node.op == "/":
                scale, shift = self._finite(1.0 / value, node), 0.0
            else:  # "-": x − n, or n − x
                scale, shift = (1.0, -value) if tensor is left else (-1.0, value)
            return self._scalar_affine(tensor, scale, shift, node.span, name)
        raise CnncTypeError(f"'{node.op}' cannot combine {describe(left)} and {describe(right)}; "
                            "tensors support + - * / with a tensor or a number", node.span)

    @staticmethod
    def _finite(number: int | float, node: t.Binary) -> float:
        try:
            value = float(number)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or abs(value) > 3.4e38:  # float32's range
            raise CnncTypeError(f"{describe(number)} is too large to combine with a tensor (float32)", node.span)
        return value

    def _scalar_affine(self, x: Tensor, scale: float, shift: float, span: Span, name: str | None = None) -> Tensor:
        with self.layer("scale", name, span):
            return self.emit(Op.SCALAR_AFFINE, ScalarAffineAttrs(scale, shift), [x])

    def _eval_Index(self, node: t.Index, env: Env) -> object:
        target, index = self._value(node.target, env), self._value(node.index, env)
        if not isinstance(target, tuple):
            raise CnncTypeError(f"only tuples can be indexed, got {describe(target)}", node.target.span)
        if isinstance(index, bool) or not isinstance(index, int) or not -len(target) <= index < len(target):
            raise CnncTypeError(f"index {describe(index)} is out of range for {describe(target)}", node.index.span)
        return target[index]

    def _eval_Conditional(self, node: t.Conditional, env: Env) -> object:
        test = self._value(node.test, env)
        if not isinstance(test, bool):
            raise CnncTypeError(f"a condition must be true or false, got {describe(test)}", node.test.span)
        return self.eval(node.then if test else node.orelse, env)  # only the chosen branch builds layers

    def _eval_Pipe(self, node: t.Pipe, env: Env) -> object:
        stages = []
        source: t.Expr = node
        while isinstance(source, t.Pipe):  # iterate: long chains must not exhaust Python's stack
            stages.append(source.stage)
            source = source.source
        value = self._value(source, env)
        for stage in reversed(stages):
            value = self.stage(stage, value, env, None)
        return value

    def _eval_Call(self, node: t.Call, env: Env) -> object:
        return self.call(node, [], env, None)

    def _eval_Named(self, node: t.Named, env: Env) -> object:
        """`f(...) as name`, `(a + b) as name`, `(-x) as name`: the one layer the expression's
        outermost operation makes gets the name (its operands are named as usual)."""
        expr = node.expr
        if isinstance(expr, t.Call):
            return self.call(expr, [], env, node.name)
        if isinstance(expr, t.Binary) and expr.op not in ("and", "or"):
            left, right = self._value(expr.left, env), self._value(expr.right, env)
            if isinstance(left, Tensor) or isinstance(right, Tensor):
                return self._tensor_binary(expr, left, right, node.name)
        if isinstance(expr, t.Unary) and expr.op == "-":
            value = self._value(expr.operand, env)
            if isinstance(value, Tensor):
                return self._scalar_affine(value, -1.0, 0.0, expr.span, node.name)
        raise CnncTypeError("`as` names a layer: put it after a call, a pipe stage, or a parenthesized "
                            "tensor operation", node.span)

    # ---- stages and calls -------------------------------------------------------------------
    def stage(self, stage: t.Stage, value: object, env: Env, forced: str | None) -> object:
        """Apply one pipe stage; `forced` is the local name a sequence or repetition assigns."""
        if stage.repeat is None:
            return self._stage_once(stage, value, env, stage.name or forced)
        count = self._repeat_count(stage.repeat, env)
        base = stage.call.func if stage.call else "seq"
        full = self.namer.claim(base, stage.name or forced, stage.span)
        with self.namer.scope(full):
            for index in range(count):
                value = self._stage_once(stage, value, env, str(index))
        return value

    def _repeat_count(self, repeat: t.Expr, env: Env) -> int:
        value = self._value(repeat, env)
        try:
            count = to_int(value)
        except ArgError:
            count = 0
        if count < 1:
            raise CnncTypeError(f"a repeat count must be a positive integer, got {describe(value)}",
                                repeat.span)
        if count > MAX_REPEAT:
            raise CnncTypeError(f"a repeat count of {count} is more than cnnc allows ({MAX_REPEAT})",
                                repeat.span)
        return count

    def _stage_once(self, stage: t.Stage, value: object, env: Env, name: str | None) -> object:
        if stage.call is not None:
            return self.call(stage.call, [(value, stage.span)], env, name)
        assert stage.sequence is not None, "the parser makes every stage a call or a sequence"
        full = self.namer.claim("seq", name, stage.span)
        index = 0
        with self.namer.scope(full):
            for item in stage.sequence:
                if item.repeat is not None and item.name is not None:
                    raise CnncNameError("inside [...] a repeated stage is numbered; name the sequence "
                                        "instead", item.span)
                for _ in range(self._repeat_count(item.repeat, env) if item.repeat is not None else 1):
                    value = self._stage_once(item, value, env, item.name or str(index))
                    index += 1
        return value

    def call(self, call: t.Call, piped: list[tuple[object, Span]], env: Env, name: str | None) -> object:
        """Call an op, a block or a builtin function; `piped` is the value from `|>`, if any."""
        positional = list(piped)
        keywords: dict[str, tuple[object, Span]] = {}
        for arg in call.args:
            value = self.eval(arg.value, env)
            if arg.name is None:
                if keywords:
                    raise CnncTypeError("a positional argument cannot follow a keyword argument", arg.span)
                positional.append((value, arg.value.span))
            elif arg.name in keywords:
                raise CnncTypeError(f"argument '{arg.name}' is given twice", arg.span)
            else:
                keywords[arg.name] = (value, arg.value.span)
        callee = self._use(call.func, env) if call.func in env else None
        if isinstance(callee, Block):
            return self._call_block(callee, call, positional, keywords, name)
        if callee is not None and call.func not in LAYER_OPS and call.func not in builtins.FUNCTIONS:
            raise CnncTypeError(f"'{call.func}' is {describe(callee)}, not an op or block", call.func_span)
        if call.func in builtins.FUNCTIONS:
            if name is not None:
                raise CnncNameError(f"{call.func}() computes a number, not a layer: it cannot be named",
                                    call.span)
            return self._call_builtin(call, positional, keywords, env)
        if call.func in LAYER_OPS:
            return self._call_layer(call, positional, keywords, env, name)
        raise self.undefined_callable(call, env)

    def undefined_callable(self, call: t.Call, env: Env) -> CnncNameError:
        if self.diagnostics.names_unknown:
            raise Poisoned(call.func)
        blocks = [n for n, v in env.items() if isinstance(v, Block)]
        close = difflib.get_close_matches(call.func, [*LAYER_OPS, *blocks, *builtins.FUNCTIONS], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return CnncNameError(f"unknown op or block '{call.func}'{hint}", call.func_span)

    def _call_builtin(self, call: t.Call, positional, keywords, env: Env) -> object:
        if keywords:
            raise CnncTypeError(f"{call.func}() takes no keyword arguments", call.span)
        values = []
        for value, span in positional:
            if isinstance(value, Symbol):
                raise self.undefined(value.name, env, span)
            values.append(value)
        try:
            return builtins.FUNCTIONS[call.func](*values)
        except ArgError as error:
            raise CnncTypeError(f"{call.func}(): {error}", call.span) from None

    def _call_layer(self, call: t.Call, positional, keywords, env: Env, name: str | None) -> Tensor:
        layer = LAYER_OPS[call.func]
        inputs, args = bind_layer_args(layer, call, positional, keywords, lambda n, s: self.undefined(n, env, s))
        with self.layer(call.func, name, call.span):
            try:
                return layer.build(self, inputs, args)
            except ArgError as error:
                raise CnncTypeError(f"{call.func}: {error}", call.span) from None

    def _call_block(self, block: Block, call: t.Call, positional, keywords, name: str | None) -> object:
        definition = block.definition
        local = bind_block_args(definition, call, positional, keywords, self, block.globals)
        # An inline block called without `as` names its layers in the caller's scope.
        full = None if definition.inline and name is None else self.namer.claim(definition.name, name, call.span)
        if self._depth >= MAX_BLOCK_DEPTH:
            raise CnncError(f"blocks nested too deep (more than {MAX_BLOCK_DEPTH} calls): does "
                            f"'{definition.name}' call itself without end?", call.span)
        # Depth alone does not bound the work: a block calling itself twice doubles it per level.
        self._block_calls += 1
        if self._block_calls > MAX_BLOCK_CALLS:
            raise CnncError(f"the program makes more than {MAX_BLOCK_CALLS} block calls (this is "
                            f"'{definition.name}'): does a block call itself more than once?", call.span)
        self._depth += 1
        try:
            with self.namer.scope(full) if full is not None else nullcontext():
                for statement in definition.body:
                    if isinstance(statement, t.Return):
                        return self.eval(statement.value, local)
                    local[statement.name] = self.eval(statement.value, local)
        finally:
            self._depth -= 1
        raise CnncError(f"block '{definition.name}' ends without `return`", definition.span)

    # ---- emitting IR nodes ------------------------------------------------------------------
    @contextmanager
    def layer(self, base: str, name: str | None, span: Span) -> Iterator[None]:
        """Context for one layer call: claims its name; `emit` uses it for the nodes it adds."""
        saved = (self._layer_name, self._layer_span)
        self._layer_name, self._layer_span = self.namer.claim(base, name, span), span
        try:
            yield
        finally:
            self._layer_name, self._layer_span = saved

    def emit(self, op: Op, attrs: object, inputs: list[Tensor], suffix: str | None = None) -> Tensor:
        """Add an IR node for the current layer (see layers.Emitter)."""
        span = self._layer_span
        assert span is not None, "emit is called inside layer(), which sets the span"
        name = f"{self._layer_name}.{suffix}" if suffix else self._layer_name
        shapes = [x.shape for x in inputs]
        try:
            shape = infer_shape(op, attrs, shapes)
        except ShapeRuleError as error:
            raise CnncShapeError(f"{error} (layer '{name}')", span) from None
        _check_size(shape, f"the output of layer '{name}'", span)
        params = {}
        if name in self.graph:
            raise CnncNameError(f"layer name '{name}' is already used "
                                f"(first at {self.graph.spans(name)[0].location})", span)
        if len(self.graph) >= MAX_LAYERS:  # repetitions multiply: `[relu * 10000] * 10000`
            raise CnncError(f"the network has more than {MAX_LAYERS} layers (at '{name}')", span)
        for role, spec in param_specs(op, attrs, shapes).items():
            params[role] = f"{name}.{role}"
            _check_size(spec.shape, f"parameter '{params[role]}'", span)
            self.graph.info.param_specs[params[role]] = spec
        self.graph.add_op(name, op, attrs, [x.node for x in inputs], shape, (span,), params)
        return Tensor(name, shape)


def _check_size(shape: tuple, what: str, span: Span) -> None:
    """Refuse a tensor past MAX_TENSOR_ELEMENTS (a symbolic batch counts as 1): NumPy cannot
    even describe some such arrays, and none would fit in memory."""
    elements = math.prod(d for d in shape if isinstance(d, int))
    if elements > MAX_TENSOR_ELEMENTS:
        raise CnncShapeError(f"{what} would have {elements} elements, more than cnnc allows "
                             f"({MAX_TENSOR_ELEMENTS})", span)
