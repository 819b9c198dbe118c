"""The README stays a user document whose first code block CI runs, and every bench/ figure in docs/ says how it
was made (date, machine, commit, command), so a reader can reproduce it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MEASURED = re.compile(r"^Measured (\d{4}-\d{2}-\d{2}), (.+), commit ([0-9a-f]{7,40})\b.*Command: (.+)$", re.M)


def first_code_block(text: str) -> list[str]:
    block = text.split("```")[1]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_first_code_block_is_install_and_demo_then_tests():
    install, tests = first_code_block(README.read_text())  # .ci/run runs exactly these two lines
    assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert install.endswith("bash samples/demo.sh")
    assert tests.startswith(". .venv/bin/activate && python -m pytest")


def test_readme_is_a_user_document_of_at_most_220_lines():
    assert len(README.read_text().splitlines()) <= 220


@pytest.mark.parametrize("page", [README, *DOCS, ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def sections(text: str) -> list[str]:
    return re.split(r"^(?=## )", text, flags=re.M)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_bench_figure_in_docs_says_when_where_and_how(page):
    for section in sections(page.read_text()):
        scripts = set(re.findall(r"bench/\w+\.py", section))
        if not scripts:
            continue
        heading = section.splitlines()[0]
        lines = MEASURED.findall(section)
        assert lines, (f"{page.name} '{heading}': figures from {sorted(scripts)} with no "
                       "'Measured DATE, MACHINE, commit X. Command: ...' line")
        commands = " ".join(command for *_, command in lines)
        missing = {s for s in scripts if s not in commands}
        assert not missing, f"{page.name} '{heading}': no command for {sorted(missing)}"


def test_the_rule_catches_a_figure_without_its_command():
    bad = "## Speed\n\n`bench/train.py`: 97 samples/s\n"
    assert not MEASURED.findall(bad)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_test_a_page_names_exists(page):
    defined = {name for f in (ROOT / "tests").glob("*.py") for name in re.findall(r"def (test_\w+)", f.read_text())}
    named = set(re.findall(r"\b(test_\w+)`", page.read_text())) - {"test_docs"}
    assert named <= defined, f"{page.name} names tests that do not exist: {sorted(named - defined)}"
