"""The IR's storage: frozen node records, `Graph.replace` as their one writer, GraphInfo, verify."""
from __future__ import annotations

import dataclasses

import pytest

import cnnc
from cnnc.errors import CnncIRError
from cnnc.ir.graph import Graph, GraphInfo, Node
from cnnc.ir.ops import NoAttrs, Op
from cnnc.ir.verify import verify
from cnnc.passes import optimize

PROGRAM = "input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3, pad=1) as c |> relu as r\n"


@pytest.fixture
def graph() -> Graph:
    return cnnc.parse(PROGRAM)


def test_a_node_record_cannot_be_mutated(graph: Graph) -> None:
    node = graph.node("c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.op = Op.RELU  # type: ignore[misc]
    with pytest.raises(TypeError):
        node.params["weight"] = "other"  # type: ignore[index]
    assert isinstance(node.shape, tuple) and isinstance(node.spans, tuple)


def test_records_keep_copies_of_what_callers_pass() -> None:
    graph = Graph()
    params = {"weight": "w"}
    shape = [1, 3]
    graph.add_op("x", Op.INPUT, NoAttrs(), [], shape, params=params)
    params["weight"] = "changed"
    shape.append(5)
    assert graph.node("x").params == {"weight": "w"} and graph.shape("x") == (1, 3)
    graph.params_of("x")["weight"] = "changed"  # a new dict: editing it changes no node
    assert graph.params_of("x") == {"weight": "w"}


def test_replace_stores_a_changed_copy_and_keeps_name_and_order(graph: Graph) -> None:
    before = graph.node("r")
    after = graph.replace("r", spans=())
    assert graph.node("r") is after and after.spans == () and before.spans != ()
    assert (after.name, after.order, after.op) == (before.name, before.order, before.op)
    for change in ({"name": "s"}, {"order": 99}):
        with pytest.raises(ValueError, match="cannot change"):
            graph.replace("r", **change)
    assert graph.node("r") is after


def test_clone_shares_records_and_copies_graph_data(graph: Graph) -> None:
    optimized = optimize(graph)
    clone = optimized.clone()
    assert all(clone.node(n) is optimized.node(n) for n in optimized)
    clone.replace("c", spans=())
    assert optimized.spans("c") != ()
    for f in dataclasses.fields(GraphInfo):
        mine, theirs = getattr(clone.info, f.name), getattr(optimized.info, f.name)
        assert mine == theirs
        assert (mine is not theirs) == isinstance(mine, (dict, list)), f.name  # containers new, values shared
    assert clone.info.memory_plan is optimized.info.memory_plan is not None


def test_user_param_specs_before_and_after_optimize(graph: Graph) -> None:
    assert graph.info.user_params is None and graph.info.user_param_specs() is graph.info.param_specs
    optimized = optimize(graph)
    assert optimized.info.user_param_specs() == graph.info.param_specs


def test_verify_accepts_a_parsed_and_an_optimized_graph(graph: Graph) -> None:
    verify(graph)
    verify(optimize(graph))


def test_verify_catches_a_record_stored_under_another_name(graph: Graph) -> None:
    graph.nodes["r"]["node"] = graph.node("c")
    with pytest.raises(CnncIRError, match="named 'c'"):
        verify(graph)


def test_verify_catches_raw_node_data_beside_or_instead_of_the_record(graph: Graph) -> None:
    graph.nodes["r"]["shape"] = (1,)  # an edit in the old style, beside the record
    with pytest.raises(CnncIRError, match="one Node record"):
        verify(graph)
    graph.add_edge("r", "stray")  # networkx makes a node without a record
    del graph.nodes["r"]["shape"]
    with pytest.raises(CnncIRError, match="one Node record"):
        verify(graph)


def test_verify_catches_two_records_with_one_order(graph: Graph) -> None:
    graph.nodes["r"]["node"] = dataclasses.replace(graph.node("r"), order=graph.node("c").order)
    with pytest.raises(CnncIRError, match="order"):
        verify(graph)


def test_verify_catches_graph_data_outside_graph_info(graph: Graph) -> None:
    graph.graph["fcn"] = True
    with pytest.raises(CnncIRError, match="GraphInfo"):
        verify(graph)


def test_verify_catches_an_op_replaced_without_its_attrs(graph: Graph) -> None:
    graph.replace("c", op=Op.RELU)  # replace checks nothing else: verify does
    with pytest.raises(CnncIRError, match="attrs of type ConvAttrs"):
        verify(graph)


def test_nodes_hold_only_their_record(graph: Graph) -> None:
    assert all(set(data) == {"node"} and isinstance(data["node"], Node) for _, data in graph.nodes(data=True))
    assert set(graph.graph) == {"info"}
