"""The pass registry and the pipelines built from it: order, levels, enable/disable, refusals."""
from __future__ import annotations

import re

import pytest
from conftest import EXAMPLES, ROOT

import cnnc
from cnnc.errors import CnncError
from cnnc.passes.manager import PASSES, Pass, optimize, order_passes, pass_order, pipeline, register

PIPELINE = ["eliminate_identity", "dense_to_conv", "fold_batch_norm", "fold_constants", "lower_pooling",
            "fuse_conv_bias_activation", "eliminate_common_subexpressions", "eliminate_dead_code",
            "winograd", "channels_last", "plan_memory"]
O1 = ["eliminate_identity", "eliminate_common_subexpressions", "eliminate_dead_code"]


def _passes(*specs: tuple[str, tuple[str, ...], tuple[str, ...]]) -> dict[str, Pass]:
    """Registry entries (name, after, before) whose functions are never run."""
    return {name: Pass(name, lambda graph: False, 1, after, before) for name, after, before in specs}


# ---- the order the registrations give -------------------------------------------------------------

def test_the_registrations_give_the_pipeline_order():
    assert pass_order() == PIPELINE


def test_every_register_line_in_the_package_is_discovered():
    """The package imports its modules itself: each pass a module registers is in PASSES."""
    registered = {m.group(1) for path in (ROOT / "cnnc" / "passes").glob("*.py")
                  for m in re.finditer(r'^@register\("(\w+)"', path.read_text(encoding="utf-8"), re.M)}
    assert registered == set(PASSES) == set(PIPELINE)


def test_the_order_does_not_depend_on_registration_order():
    chain = [("a", (), ()), ("b", ("a",), ()), ("c", ("b",), ())]
    assert order_passes(_passes(*chain)) == order_passes(_passes(*reversed(chain))) == ["a", "b", "c"]


def test_before_places_a_pass_from_its_own_registration():
    chain = _passes(("a", (), ()), ("c", ("a",), ()), ("b", ("a",), ("c",)))
    assert order_passes(chain) == ["a", "b", "c"]


def test_a_cycle_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"form a cycle: (a → b → c → a|b → c → a → b|c → a → b → c)$"):
        order_passes(_passes(("a", ("c",), ()), ("b", ("a",), ()), ("c", ("b",), ())))


def test_a_pass_after_itself_is_a_cycle():
    with pytest.raises(ValueError, match="form a cycle: a → a$"):
        order_passes(_passes(("a", ("a",), ())))


def test_two_unordered_passes_are_refused():
    """Two passes after the same one could run either way: the manager does not guess."""
    with pytest.raises(ValueError, match=r"passes '(b' and 'c|c' and 'b)' may run in either order"):
        order_passes(_passes(("a", (), ()), ("b", ("a",), ()), ("c", ("a",), ())))


@pytest.mark.parametrize("after, before", [(("fold_batchnorm",), ()), ((), ("fold_batchnorm",))])
def test_a_constraint_naming_no_pass_is_refused(after, before):
    with pytest.raises(ValueError, match="pass 'x' is ordered against 'fold_batchnorm', which is no registered"):
        order_passes({**PASSES, **_passes(("x", after, before))})


def test_a_second_registration_of_a_name_is_refused():
    with pytest.raises(ValueError, match="pass 'plan_memory' is registered twice"):
        register("plan_memory", level=2)(lambda graph: False)
    assert PASSES["plan_memory"].run.__name__ == "plan_memory"


def test_a_level_outside_the_optimization_levels_is_refused():
    with pytest.raises(ValueError, match=r"pass 'x': level 3 is not one of \(0, 1, 2\)"):
        register("x", level=3)
    assert "x" not in PASSES


def test_the_docs_table_lists_every_pass_in_order_with_its_level():
    text = (ROOT / "docs" / "passes.md").read_text(encoding="utf-8")
    section = text.split("## The pipeline", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    assert [name for name, _ in rows] == pass_order()
    levels = {"by request": 0, "1": 1, "2": 2}
    assert [levels[level.strip()] for _, level in rows] == [PASSES[n].level for n in pass_order()]


# ---- pipelines: levels, enable, disable, passes= ----------------------------------------------------

def test_levels_run_the_passes_registered_at_or_below_them():
    assert pipeline(0) == []
    assert pipeline(1) == O1
    assert pipeline(2) == [n for n in PIPELINE if n != "dense_to_conv"]


def test_enable_adds_a_level_0_pass_in_its_place():
    assert pipeline(2, enable=("dense_to_conv",)) == PIPELINE
    assert pipeline(1, enable=("dense_to_conv",)) == [O1[0], "dense_to_conv", *O1[1:]]
    assert pipeline(0, enable=("dense_to_conv",)) == ["dense_to_conv"]


def test_disable_wins_over_enable_and_passes_ignores_enable():
    assert pipeline(2, enable=("dense_to_conv",), disable=("dense_to_conv",)) == pipeline(2)
    assert pipeline(passes=["plan_memory", "fold_batch_norm"], enable=("dense_to_conv",)) == \
        ["fold_batch_norm", "plan_memory"]


@pytest.mark.parametrize("option", ["passes", "disable", "enable"])
def test_an_unknown_pass_name_is_refused_listing_the_passes(option):
    value = ["dense_to_cnv"] if option == "passes" else ("dense_to_cnv",)
    with pytest.raises(CnncError, match=re.escape(f"unknown pass 'dense_to_cnv'; did you mean 'dense_to_conv'? "
                                                  f"(passes: {', '.join(PIPELINE)})") + "$"):
        pipeline(**{option: value})
    far = ["zzz"] if option == "passes" else ("zzz",)  # nothing close: the list alone
    with pytest.raises(CnncError, match=f"unknown pass 'zzz'; passes: {', '.join(PIPELINE)}$"):
        pipeline(**{option: far})


def test_an_unknown_level_is_refused():
    with pytest.raises(CnncError, match=r"unknown optimization level -O3 \(use -O0, -O1 or -O2\)"):
        pipeline(3)


def test_a_level_0_pass_runs_only_when_enabled():
    graph = cnnc.parse(EXAMPLES / "lenet5.cnn")
    plain = optimize(graph)
    assert "dense_to_conv" not in plain.info.passes_run and "dense" in {plain.op(n) for n in plain}
    converted = optimize(graph, enable=("dense_to_conv",))
    assert converted.info.passes_run == PIPELINE
    assert "dense" not in {converted.op(n) for n in converted}


def test_fcn_is_the_public_spelling_of_enabling_dense_to_conv():
    assert cnnc.build_graph(EXAMPLES / "lenet5.cnn", fcn=True).info.passes_run == PIPELINE
    assert cnnc.build_graph(EXAMPLES / "lenet5.cnn", optimize=0, fcn=True).info.passes_run == ["dense_to_conv"]
