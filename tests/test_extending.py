"""docs/extending.md's examples run as they are written: a toy backbone, an output format, a label layout and a
captioner, each added by one registration, each working through vcap's own entry points."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcap.captioner import captioners
from vcap.captioner.captioners import CAPTIONERS
from vcap.captioner.datasets import READERS
from vcap.extract.backbones import BACKBONES
from vcap.pipeline.writers import WRITERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
EXAMPLES = re.findall(r"^## (.+?)\n.*?```python\n(.*?)```", DOC.read_text(), flags=re.S | re.M)


@pytest.fixture
def registries_restored():
    """The examples register entries; the other tests must not see them."""
    saved = [(registry, dict(registry)) for registry in (BACKBONES, WRITERS, READERS, CAPTIONERS, captioners.SPECS)]
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)


def test_the_doc_has_an_example_for_each_extension_point():
    assert [title for title, _ in EXAMPLES] == ["A backbone", "An output format", "A label layout", "A captioner"]


@pytest.mark.parametrize("title, code", EXAMPLES, ids=[title for title, _ in EXAMPLES])
def test_each_example_runs_and_adds_one_entry(title, code, registries_restored):
    registries = (BACKBONES, WRITERS, READERS, CAPTIONERS)
    before = {id(r): set(r) for r in registries}
    exec(compile(code, f"docs/extending.md: {title}", "exec", dont_inherit=True), {"__name__": "example"})
    added = [set(r) - before[id(r)] for r in registries]
    assert sorted(len(a) for a in added) == [0, 0, 0, 1]  # one registry gained one entry
