"""plan_memory: `del` after last use, in-place elementwise ops, and the peak-memory figures.

Every plan is checked against an independent oracle (`assert_plan_safe`: a graph search over the
buffers values may share), and generated code with the plan against the reference interpreter.
"""
from __future__ import annotations

import re
import sys
import threading
import tracemalloc

import networkx as nx
import numpy as np
import pytest
from conftest import EXAMPLES, example_networks, randomize

import cnnc
from cnnc.codegen.python import generate
from cnnc.ir.cost import peak_with_plan, peak_without_plan
from cnnc.ir.graph import Graph
from cnnc.ir.liveness import aliased_inputs, read_only
from cnnc.ir.ops import Op, kernel_call, record
from cnnc.kernels import numpy_kernels
from cnnc.passes.manager import pass_order
from cnnc.passes.memory import MemoryPlan, memory_plan
from cnnc.runtime.loader import load_forward
from cnnc.runtime.network import CompiledNetwork
from cnnc.runtime.params import random_params

PLAN_ONLY = {"passes": ["plan_memory"]}  # keep bn/relu/add as nodes of their own: more to plan


def compile_planned(text: str, seed: int = 0, **options) -> CompiledNetwork:
    net = cnnc.compile(text, **(options or PLAN_ONLY))
    randomize(net, seed)
    return net


def randomize_small(net: CompiledNetwork, seed: int) -> None:
    """Random BN statistics and biases; weights keep their seeded He values (no redrawing of big
    matrices). BN scales below 1 keep deep random networks well conditioned (with scales up to 1.5
    a 1e-6 change of the input moves SE-ResNet-50's logits by 0.1%), so tolerances can be tight."""
    randomize(net, seed, gamma=(0.25, 0.75), weights=False)


def plan_of(net: CompiledNetwork) -> MemoryPlan:
    plan = net.graph.info.memory_plan
    assert plan.matches(net.graph)
    return plan


def sharing(graph: Graph, plan: MemoryPlan, value: str) -> set[str]:
    """Values that may share `value`'s memory: connected through views and in-place nodes."""
    links = nx.Graph()
    links.add_nodes_from(graph.nodes)
    for name in graph.nodes:
        links.add_edges_from((source, name) for source in aliased_inputs(graph, name))
        if name in plan.in_place:
            links.add_edge(graph.inputs_of(name)[0], name)
    return nx.node_connected_component(links, value)


def assert_plan_safe(graph: Graph, plan: MemoryPlan) -> None:
    """No in-place node writes into an input, an output or a live buffer; every value is freed once,
    after its last use."""
    order = graph.topo_order()
    position = {n: i for i, n in enumerate(order)}
    outputs = set(graph.info.outputs.values())
    for node in plan.in_place:
        first, *others = graph.inputs_of(node)
        group = sharing(graph, plan, first) - {node} - nx.descendants(graph, node)
        assert not any(graph.op(m) == Op.INPUT or m in outputs for m in group), node
        assert not any(read_only(graph, m) for m in group), node
        assert all(position[u] <= position[node] for m in group for u, _ in graph.users(m)), node
        assert not set(others) & group, node
        assert all(tuple(graph.shape(i)) == tuple(graph.shape(node)) for i in graph.inputs_of(node)), node
    freed = [v for node in order for v in plan.frees_after(node)]
    assert len(freed) == len(set(freed))
    assert set(freed) == {n for n in graph.nodes if graph.op(n) != Op.INPUT and n not in outputs}
    for node in order:
        for value in plan.frees_after(node):
            assert all(position[u] <= position[node] for u, _ in graph.users(value)), value


def assert_matches_interpreter(net: CompiledNetwork, inputs: dict[str, np.ndarray], tol: float = 1e-4) -> None:
    copies = {n: a.copy() for n, a in inputs.items()}
    got = net.run(**inputs)
    want = cnnc.eval_graph(net.source_graph, net.params, copies)
    for name, value in inputs.items():
        np.testing.assert_array_equal(value, copies[name], err_msg=f"input {name} was overwritten")
    for out in want:
        scale = float(np.abs(want[out]).max()) or 1.0
        np.testing.assert_allclose(got[out], want[out], rtol=tol, atol=tol * scale, err_msg=out)


def forward_body(source: str) -> str:
    return source.split("def forward(")[1].split("def load_params(")[0]


def run_without_plan(net: CompiledNetwork, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same graph's code generated without its plan (no `del`, no `out=`)."""
    graph = net.graph.clone()
    graph.info.memory_plan = None
    source = generate(graph)
    body = forward_body(source)
    assert "    del " not in body and not re.search(r"\bout=", body)  # (layout_out= is no out=)
    return load_forward(source, "unplanned")(net.runtime_params(), *net._bind_inputs((), inputs))


def random_inputs(net: CompiledNetwork, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, *s[1:])).astype(np.float32) for n, s in net.input_shapes.items()}


# ---- safety: interface values, values with later users, aliases ---------------------------------

INTERFACE = """
input image: [N, 4, 6, 6]
input other: [N, 4, 6, 6]
r = image |> relu                         # the input dies here: still the caller's array
f = other |> flatten |> sigmoid           # a view of an input dies here
output y = r |> conv(4, 1x1)
output z = f
output w = y |> tanh                      # y is an output: not overwritten
"""


def test_plan_never_writes_into_inputs_outputs_or_parameters():
    net = compile_planned(INTERFACE)
    graph, plan = net.graph, plan_of(net)
    assert_plan_safe(graph, plan)
    writers = {graph.op(n) for n in plan.in_place}
    assert Op.RELU not in writers and Op.SIGMOID not in writers and Op.TANH not in writers
    params = {k: v.copy() for k, v in net.runtime_params().items()}
    assert_matches_interpreter(net, random_inputs(net))
    for name, value in net.runtime_params().items():
        np.testing.assert_array_equal(value, params[name], err_msg=f"parameter {name} was overwritten")


def test_writes_into_a_dying_buffer_whose_result_is_an_output():
    net = compile_planned("input image: [N, 4, 6, 6]\noutput y = image |> conv(4, 1x1) |> bn |> relu")
    graph, plan = net.graph, plan_of(net)
    assert {graph.op(n) for n in plan.in_place} == {Op.BATCH_NORM, Op.RELU}
    assert "out=" in forward_body(net.source)
    assert_matches_interpreter(net, random_inputs(net))


DIAMOND = """
input image: [N, 4, 6, 6]
r = image |> conv(4, 3x3, pad=1) |> relu as act
output y = r + (r |> conv(4, 3x3, pad=1) as branch)     # x -> relu -> (conv, add)
output z = (r |> sigmoid as early) + (r |> conv(4, 1x1) as late)
"""


def test_value_with_a_later_user_is_not_overwritten():
    net = compile_planned(DIAMOND)
    graph, plan = net.graph, plan_of(net)
    assert_plan_safe(graph, plan)
    assert "act" in plan.in_place  # relu into the conv's dying output
    assert "early" not in plan.in_place  # act is still read by `late` and the first add
    assert_matches_interpreter(net, random_inputs(net))


VIEWS = ["reshape((4, 36))", "flatten", "crop(6x6)", "dropout(0.5)", "upsample(1)"]


@pytest.mark.parametrize("view", VIEWS)
def test_a_buffer_lives_while_any_alias_does(view):
    text = f"""
input image: [N, 4, 6, 6]
a = image |> conv(4, 3x3, pad=1) |> relu as act
y = a |> {view} as alias
z = y |> sigmoid as through_alias     # y dies here, but its buffer is act's, read below
output out = (z |> flatten) + (a |> flatten)
"""
    net = compile_planned(text)
    graph, plan = net.graph, plan_of(net)
    assert_plan_safe(graph, plan)
    assert "through_alias" not in plan.in_place
    assert {"act", "alias"} <= set(next(b for b in plan.buffers if "act" in b))
    assert_matches_interpreter(net, random_inputs(net))


def test_writes_through_a_view_once_every_alias_is_dead():
    net = compile_planned("input image: [N, 4, 6, 6]\n"
                          "output y = image |> conv(4, 1x1) |> flatten |> sigmoid as s |> dense(3)")
    assert "s" in plan_of(net).in_place
    assert_matches_interpreter(net, random_inputs(net))


def test_no_write_into_a_read_only_view():
    net = compile_planned("input image: [N, 4, 6, 6]\n"
                          "output y = image |> conv(4, 1x1) |> upsample(1) |> relu as r |> conv(2, 1x1)")
    assert "r" not in plan_of(net).in_place  # out= a broadcast view would raise
    assert_matches_interpreter(net, random_inputs(net))


def test_broadcasting_operands_are_not_written():
    text = """
input image: [N, 4, 6, 6]
g = image |> global_avg_pool |> dense(4) as gate |> sigmoid       # [N, 4, 1, 1]
x = image |> conv(4, 1x1) as body
output y = (g * x) + (x |> conv(4, 1x1))    # g dies at the product but is broadcast
"""
    net = compile_planned(text)
    graph, plan = net.graph, plan_of(net)
    mul = next(n for n in graph.nodes if graph.op(n) == Op.MUL)
    assert mul not in plan.in_place
    assert_plan_safe(graph, plan)
    assert_matches_interpreter(net, random_inputs(net))


@pytest.mark.parametrize("name", ["add(x, x)", "add(x, reshape(x))"])
def test_an_operand_sharing_the_written_buffer_blocks_in_place(name):
    second = "x" if name == "add(x, x)" else "(x |> reshape((4, 6, 6)))"
    net = compile_planned(f"input image: [N, 4, 6, 6]\nx = image |> conv(4, 1x1)\noutput y = x + {second}")
    graph, plan = net.graph, plan_of(net)
    assert not any(graph.op(n) == Op.ADD for n in plan.in_place)
    assert_matches_interpreter(net, random_inputs(net))


IDENTITY_LIKE = """
input image: [N, 4, 6, 6]
x = image |> conv(4, 1x1)
a = x |> crop(6x6) |> upsample(1) |> pad(0) |> maxpool(1x1) |> avgpool(1x1, stride=1)
b = concat(a) |> reshape((4, 6, 6)) |> bn |> relu |> relu6 |> leaky_relu |> tanh |> sigmoid
c = (b * b) + (b |> dropout(0.5)) |> upsample(1, mode=bilinear) |> lrn |> softmax
output y = c |> global_max_pool |> flatten |> dense(4)
output z = c |> global_avg_pool
"""


@pytest.mark.parametrize("source, shapes", [(IDENTITY_LIKE, None),
                                            (EXAMPLES / "yolo_tiny.cnn", {"image": (1, 3, 64, 64)})])
def test_kernels_return_views_only_where_the_alias_model_says(source, shapes):
    """Run every numpy kernel of a graph (identity-like layers; detection ops); a result sharing
    memory with an input must be declared by `aliased_inputs`, a read-only result by `read_only`."""
    graph = cnnc.parse(source, input_shapes=shapes)
    values = random_params(graph.info.param_specs, np.random.default_rng(0))
    arrays = {n: np.random.default_rng(1).standard_normal((1, *graph.shape(n)[1:])).astype(np.float32)
              for n in graph.info.inputs}
    for name in graph.topo_order():
        op, inputs = graph.op(name), graph.inputs_of(name)
        args = [arrays[i] for i in inputs]
        if op == Op.INPUT:
            continue
        if record(op).kernel is None:
            arrays[name] = args[0]
        else:
            positional, keywords = kernel_call(op, graph.attrs(name), args, graph.params_of(name),
                                               values.__getitem__, graph.shape(name))
            arrays[name] = getattr(numpy_kernels, record(op).kernel)(*positional, **keywords)
        shared = [i for i in inputs if np.shares_memory(arrays[name], arrays[i])]
        assert set(shared) <= set(aliased_inputs(graph, name)), name
        assert arrays[name].flags.writeable or read_only(graph, name), name


# ---- generated code ---------------------------------------------------------------------------

def _example_options(path) -> list[dict]:
    """Compile options to try, smallest input first: the ResNets at 64x64, the others at 32, 64 or 128."""
    graph = cnnc.parse(path)
    inputs = {n: graph.shape(n) for n in graph.info.inputs}
    sizes = (64,) if "resnet" in path.name else (32, 64, 128)
    return [{"input_shapes": {n: (1, s[1], size, size) for n, s in inputs.items()}} for size in sizes] + [{}]


EXAMPLE_NAMES = example_networks()


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_planned_code_matches_interpreter_on_examples(name):
    for options in _example_options(EXAMPLES / name):
        try:
            net = cnnc.compile(EXAMPLES / name, **options)
            break
        except cnnc.CnncError:
            continue  # too small for this network
    randomize_small(net, seed=len(name))
    assert_plan_safe(net.graph, plan_of(net))
    assert "    del " in forward_body(net.source)
    inputs = random_inputs(net, batch=1)
    unplanned = run_without_plan(net, inputs)
    for out, value in net.run(**inputs).items():  # in place or not, the same arithmetic
        np.testing.assert_array_equal(value, unplanned[out], err_msg=out)
    assert_matches_interpreter(net, inputs)


def test_repeated_calls_are_identical_and_leave_the_input_alone():
    net = compile_planned(INTERFACE + "output q = (image |> bn |> relu) + image\n")
    inputs = random_inputs(net)
    copies = {n: a.copy() for n, a in inputs.items()}
    first = net.run(**inputs)
    second = net.run(**inputs)
    for out in first:
        np.testing.assert_array_equal(first[out], second[out])
        assert not np.shares_memory(first[out], second[out])
    for name in inputs:
        np.testing.assert_array_equal(inputs[name], copies[name])


def test_concurrent_calls_in_threads():
    """Two threads, ~20 calls each, on two networks: each runs both, so the same network and
    different networks run at the same time."""
    nets = [cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes={"image": (1, 3, 32, 32)}), compile_planned(DIAMOND)]
    inputs = [random_inputs(net, 1, seed) for seed, net in enumerate(nets)]
    expected = [net.run(**x) for net, x in zip(nets, inputs)]
    failures: list[str] = []
    start = threading.Barrier(2)

    def work(first: int) -> None:
        start.wait()
        for call in range(20):
            i = (first + call) % 2
            got = nets[i].run(**inputs[i])
            if any(not np.array_equal(got[o], expected[i][o]) for o in got):
                failures.append(f"network {i}, call {call}")

    threads = [threading.Thread(target=work, args=(first,)) for first in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# ---- the plan as data, codegen's use of it ---------------------------------------------------------

def test_plan_survives_clone_and_stale_plans_are_ignored():
    net = cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes={"image": (1, 3, 32, 32)})
    clone = net.graph.clone()
    assert clone.info.memory_plan == net.graph.info.memory_plan
    assert generate(clone) == net.source
    fc = next(n for n in clone.nodes if clone.op(n) == Op.DENSE)
    clone.info.outputs["features"] = clone.inputs_of(fc)[0]  # a value now live to the end
    assert not clone.info.memory_plan.matches(clone)
    assert "    del " not in forward_body(generate(clone))


def test_plan_pass_runs_last_at_O2_only():
    assert cnnc.build_graph(EXAMPLES / "lenet5.cnn").info.memory_plan is not None
    assert cnnc.build_graph(EXAMPLES / "lenet5.cnn", optimize=1).info.memory_plan is None
    assert pass_order()[-1] == "plan_memory"


# ---- peak activation memory ---------------------------------------------------------------------

def test_peak_memory_of_resnet50():
    graph = cnnc.build_graph(EXAMPLES / "resnet50.cnn")
    without, planned = peak_without_plan(graph), peak_with_plan(graph, graph.info.memory_plan)
    print(f"ResNet-50 peak activations, batch 1: {without / 2**20:.2f} MiB without planning, "
          f"{planned / 2**20:.2f} MiB with plan_memory")
    assert planned < without / 4
    # the largest single activation (the stem conv, 64x112x112) must fit under the planned peak
    assert planned >= 4 * 64 * 112 * 112


def _traced(net: CompiledNetwork, inputs: dict[str, np.ndarray]) -> tuple[int, int]:
    """(most memory held between statements, peak with kernel workspace), as tracemalloc sees it.

    The second of two traced runs counts: the first also allocates what runs once (NumPy's
    caches, and the line tables CPython builds the first time a code object is traced, about
    14 KB for an unplanned ResNet-18's forward), which is no value the plan holds."""
    params, arrays = net.runtime_params(), net._bind_inputs((), inputs)
    top = [0]  # the largest sample so far: one number, so the sampler holds no growing list of its own

    def line(frame, event, arg):
        current = tracemalloc.get_traced_memory()[0]
        if current > top[0]:
            top[0] = current
        return line

    def calls(frame, event, arg):
        return line if frame.f_code.co_name == "forward" else None

    for _ in range(2):
        top[0] = 0
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        sys.settrace(calls)
        try:
            net._forward(params, *arrays)
        finally:
            sys.settrace(None)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return top[0] - base, peak - base


def test_predicted_peaks_match_tracemalloc():
    shapes = {"image": (1, 3, 64, 64)}
    planned = cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes=shapes)
    plain = cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes=shapes, disable_passes=("plan_memory",))
    inputs = random_inputs(planned, batch=1)
    held_planned, peak_planned = _traced(planned, inputs)
    held_plain, peak_plain = _traced(plain, inputs)
    predicted_planned = peak_with_plan(planned.graph, plan_of(planned))
    predicted_plain = peak_without_plan(plain.graph)
    assert abs(held_planned - predicted_planned) <= 0.02 * predicted_planned + 4096
    assert abs(held_plain - predicted_plain) <= 0.02 * predicted_plain + 4096
    assert peak_planned < peak_plain


def test_summary_reports_both_peaks():
    from cnnc.summary import summary_table

    text = summary_table(cnnc.parse(EXAMPLES / "resnet50.cnn"), width=120)  # -O0: planned there and then
    line = next(line for line in text.splitlines() if line.startswith("Peak activation memory"))
    assert "without planning" in line and "with plan_memory" in line
    assert memory_plan(cnnc.parse(EXAMPLES / "resnet50.cnn")).in_place
