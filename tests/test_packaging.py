"""What `pip install` puts on a machine: one top-level package, `vcap`, and a `vcap` command into it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python(*code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("generic", ["cli", "extract", "captioner", "pipeline", "vcap_shared"])
def test_no_generic_top_level_names_are_installed(generic, tmp_path):
    assert python("-c", f"import {generic}", cwd=tmp_path).returncode != 0


def test_python_dash_m_vcap_is_the_command(tmp_path):
    result = python("-m", "vcap", "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("Usage: vcap "), result.stdout + result.stderr
    entry = python("-c", "from importlib.metadata import entry_points; "
                         "print(entry_points(group='console_scripts')['vcap'].value)", cwd=tmp_path)
    assert entry.stdout.strip() == "vcap.cli:main"


@pytest.mark.slow
def test_the_wheel_holds_only_the_vcap_package_and_the_licence(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build's own folders never land in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "demo"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("vcap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("vcap-")} == {"vcap"}
    assert {"vcap/cli.py", "vcap/extract/sampler.py", "vcap/captioner/train.py", "vcap/pipeline/run.py",
            "vcap/pipeline/static/index.html"} <= set(names)  # serve's page travels with the code
    for registry in ("vcap/extract/backbones/", "vcap/extract/decoders/", "vcap/captioner/datasets/"):
        assert any(n.startswith(registry) and not n.endswith("__init__.py") for n in names), registry
    assert not any(n.startswith(("vcap/tests/", "vcap/bench/", "vcap/samples/")) for n in names)
    assert any(n.endswith("LICENSE") for n in names)
