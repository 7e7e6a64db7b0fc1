"""The programs in docs/language.md compile, their shape comments are true, and the error
messages it shows are exactly the ones the compiler prints.

In the document, a ```cnn block is a complete program; a ```cnn-error block is a program that
must fail, followed by a ```text block holding the message (compiled under the name
`example.cnn`); a ```cnn-warning block compiles with exactly the warnings of the ```text block
after it. A comment `# [N, 64, 8, 8]` after `name = …` or `output name = …` states the
shape of that value; it is checked when the name is bound only once.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest
from conftest import EXAMPLES, ROOT

import cnnc

DOC = ROOT / "docs" / "language.md"
FENCE = re.compile(r"```([\w-]*)\n(.*?)```", re.S)
SHAPE_COMMENT = re.compile(r"^(?:output\s+)?(\w+)\s*=.*#\s*(\[[^\]]*\])")


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def programs() -> list[str]:
    return [text for lang, text in blocks() if lang == "cnn"]


def error_cases(kind: str = "cnn-error") -> list[tuple[str, str]]:
    found = blocks()
    cases = []
    for i, (lang, text) in enumerate(found):
        if lang == kind:
            assert i + 1 < len(found) and found[i + 1][0] == "text", f"a {kind} block needs a text block"
            cases.append((text, found[i + 1][1]))
    return cases


def test_every_op_of_the_language_is_documented():
    """docs/language.md's reference names every spelling the op records give the language."""
    from cnnc.language.layers import LAYER_OPS

    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert [name for name in LAYER_OPS if f"`{name}" not in text] == []


def test_the_document_has_examples():
    assert len(programs()) >= 15 and len(error_cases()) >= 5


@pytest.mark.parametrize("index", range(len(programs())))
def test_program_compiles_with_the_shapes_it_states(index, monkeypatch):
    text = programs()[index]
    monkeypatch.chdir(EXAMPLES)  # `import "resnet_blocks.cnn"` resolves against examples/
    cnnc.parse(text, name="example.cnn")
    bound = Counter(m.group(1) for line in text.splitlines()
                    if (m := re.match(r"^(?:output\s+)?(\w+)\s*=", line)))
    claims = [(m.group(1), m.group(2)) for line in text.splitlines()
              if (m := SHAPE_COMMENT.match(line)) and bound[m.group(1)] == 1]
    if not claims:
        return
    probe = text + "".join(f"\noutput shape_of_{name} = {name}" for name, _ in claims)
    graph = cnnc.parse(probe, name="example.cnn")
    for name, stated in claims:
        shape = graph.shape(graph.info.outputs[f"shape_of_{name}"])
        assert "[" + ", ".join(str(d) for d in shape) + "]" == stated, name


@pytest.mark.parametrize("index", range(len(error_cases())))
def test_error_message_is_the_one_shown(index):
    text, message = error_cases()[index]
    with pytest.raises(cnnc.CnncError) as caught:
        cnnc.parse(text, name="example.cnn")
    assert str(caught.value) == message.rstrip("\n")


@pytest.mark.parametrize("index", range(len(error_cases("cnn-warning"))))
def test_warnings_are_the_ones_shown(index):
    text, shown = error_cases("cnn-warning")[index]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnnc.parse(text, name="example.cnn")
    assert "\n".join(str(w.message) for w in caught if issubclass(w.category, cnnc.CnncWarning)) == shown.rstrip("\n")
