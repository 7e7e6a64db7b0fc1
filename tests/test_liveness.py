"""cnnc.ir.liveness: the one liveness and aliasing analysis behind the NumPy memory plan
(passes/memory.py) and the CuPy buffer plan (codegen/cupy.py), checked directly and through both."""
from __future__ import annotations

import pytest
from conftest import EXAMPLES, forward_statements

import cnnc
from cnnc.codegen import cupy as cupy_codegen
from cnnc.ir.liveness import CUPY_VIEWS, NUMPY_VIEWS, buffers, liveness, plan_in_place
from cnnc.passes.memory import memory_plan, plan_memory

# A crop is a view of its input in NumPy but writes storage of its own on CuPy; flatten is a view
# on both. c's last reader is cr, but its NumPy array lives on through cr until r.
SMALL = """
input image: [N, 4, 8, 8]
x = image |> conv(4, 1x1) as c
dead = x |> tanh as t
f = x |> flatten as fl |> sigmoid as s
output y = x |> crop(6x6) as cr |> relu as r |> flatten as rf
output z = f
"""


def test_last_uses_in_emission_order():
    graph = cnnc.parse(SMALL)
    live = liveness(graph)
    at = live.position
    assert live.order == tuple(graph.topo_order()) == ("image", "c", "t", "fl", "s", "cr", "r", "rf")
    assert live.last_use["image"] == at["c"]
    assert live.last_use["c"] == at["cr"]  # its last reader among t, fl and cr
    assert live.last_use["t"] == at["t"]  # read by nothing: dies at its own statement
    assert live.last_use["s"] == live.last_use["rf"] == live.end == len(live.order)  # outputs


def test_alias_classes_depend_on_the_backends_view_kinds():
    graph = cnnc.parse(SMALL)
    live = liveness(graph)
    numpy_arrays, cupy_arrays = buffers(graph, live, NUMPY_VIEWS), buffers(graph, live, CUPY_VIEWS)
    assert numpy_arrays.classes() == (("image",), ("c", "fl", "cr"), ("t",), ("s",), ("r", "rf"))
    assert cupy_arrays.classes() == (("image",), ("c", "fl"), ("t",), ("s",), ("cr",), ("r", "rf"))
    assert numpy_arrays.root("cr") == cupy_arrays.root("fl") == "c"  # the earliest value owns the array
    assert numpy_arrays.death("fl") == live.position["r"]  # read through the crop
    assert cupy_arrays.death("fl") == live.position["cr"]


def test_in_place_needs_every_alias_dead():
    graph = cnnc.parse(SMALL)
    shared = buffers(graph, liveness(graph), NUMPY_VIEWS)
    # t and s: c's array is read later (by cr, r); r: the last reader of that array, so it writes there
    assert plan_in_place(graph, shared) == {"r"}
    assert shared.root("rf") == "c"  # r joined the array, and its view with it


def test_cupy_plan_writes_in_place_only_where_plan_memory_did():
    graph = cnnc.parse(SMALL)
    assert not cupy_codegen.plan_buffers(graph).in_place  # not planned (-O0): no in-place writes
    plan_memory(graph)
    plan = cupy_codegen.plan_buffers(graph)
    assert plan.in_place == {"r"} and plan.views == {"fl", "rf"}
    assert plan.root["r"] == plan.root["rf"] == "cr"  # the crop has storage of its own on CuPy
    assert plan.death["c"] == liveness(graph).position["cr"]


@pytest.mark.parametrize("name", ["resnet18.cnn", "googlenet.cnn", "segmentation.cnn", "yolo_tiny.cnn"])
def test_numpy_and_cupy_plans_agree_on_lifetimes(name):
    """Both plans read one liveness: the same last uses; each CuPy storage is part of one NumPy
    array and lives exactly while its values do."""
    for level in (0, 2):
        graph = cnnc.build_graph(EXAMPLES / name, optimize=level)
        memory, gpu = memory_plan(graph), cupy_codegen.plan_buffers(graph)
        assert memory.order == gpu.order
        numpy_array = {v: members for members in memory.buffers for v in members}
        for owner in gpu.death:
            values = [v for v in gpu.order if gpu.root[v] == owner]
            assert set(values) <= set(numpy_array[owner])
            assert gpu.death[owner] == max(memory.last_use_of(v) for v in values)
            assert gpu.birth[owner] == memory.position(owner)


def _statements(source: str) -> dict[str, str]:
    """The node name -> statement of a generated module's `forward` (wrapped calls joined)."""
    return forward_statements(source)


@pytest.mark.parametrize("name", ["tiny.cnn", "lenet5.cnn", "se_resnet50.cnn"])  # with in-place nodes at -O2
def test_generated_code_runs_in_place_exactly_the_planned_nodes(name):
    source = EXAMPLES.parent / "tests" / "golden" / name if name == "tiny.cnn" else EXAMPLES / name
    graph = cnnc.build_graph(source)
    planned = graph.info.memory_plan.in_place
    assert planned
    numpy_statements = _statements(cnnc.compile(source).source)
    assert {n for n, line in numpy_statements.items() if "out=" in line} == planned
    cupy_statements = _statements(cupy_codegen.generate(graph))
    assert {n for n, line in cupy_statements.items() if line.endswith(", in place")} == planned
