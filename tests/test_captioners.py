"""The captioner registry: listed without torch, one file per captioner, a captioner's own hyperparameters set with
--captioner-option, checked when set, saved in the checkpoint and kept by --resume."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from click.testing import CliRunner

from captioner_fixtures import TINY, make_synthetic
from vcap.captioner import captioners
from vcap.captioner.captioners import CAPTIONERS, CaptionerSpec, register
from vcap.captioner.captioners.attention import AttentionCaptioner
from vcap.captioner.captioners.attention import Config as AttentionConfig
from vcap.captioner.config import TrainConfig
from vcap.captioner.train import train
from vcap.cli import main, train_cmd
from vcap.config import check_int
from vcap.errors import VcapError


@dataclass(frozen=True)
class WideConfig(AttentionConfig):
    width: int = 1  # carried, not used: an option of the captioner's own

    def __post_init__(self):
        super().__post_init__()
        check_int(self, "width", 1, 4)


@pytest.fixture
def wide(monkeypatch):
    """A captioner with an option of its own, known to the registry and to `vcap train --captioner`."""
    register(CaptionerSpec("wide", WideConfig, AttentionCaptioner))
    choice = next(p for p in train_cmd.params if p.name == "captioner").type
    monkeypatch.setattr(choice, "choices", (*choice.choices, "wide"))
    yield
    del CAPTIONERS["wide"], captioners.SPECS["wide"]


def test_the_registry_lists_its_files_without_importing_torch():
    code = ("import sys; from vcap.captioner.captioners import CAPTIONERS; "
            "print(sorted(CAPTIONERS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert out == "['attention', 's2vt'] False"


def test_each_file_is_a_whole_captioner():
    for name in ("attention", "s2vt"):
        entry = captioners.spec(name)
        assert entry.name == name and entry.own_options() == ()
    with pytest.raises(VcapError, match="unknown captioner 'lstm3': this vcap knows attention, s2vt"):
        captioners.spec("lstm3")


def test_registering_a_name_twice_is_an_error(wide):
    with pytest.raises(ValueError, match="registered twice"):
        register(CaptionerSpec("attention", WideConfig, AttentionCaptioner))


def test_an_option_the_captioner_lacks_is_one_line_before_the_run_folder(tmp_path):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    config = TrainConfig(str(feats), str(labels), str(tmp_path / "run"), epochs=1, captioner_options={"width": 2},
                         **TINY)
    with pytest.raises(VcapError, match=r"^--captioner-option width: the attention captioner has no such option "
                                        r"\(it has none of its own\)$"):
        train(config)
    assert not (tmp_path / "run").exists()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


TRAIN = ["--hidden", "16", "--embed-dim", "8", "--min-count", "1", "--epochs", "1", "--device", "cpu"]


def test_captioner_option_reaches_the_checkpoint_and_resume_keeps_it(tmp_path, wide):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    run = tmp_path / "run"
    result = invoke("train", feats, labels, "--out", run, "--captioner", "wide", "--captioner-option", "width=3",
                    *TRAIN)
    assert result.exit_code == 0, result.output
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["model"] == "wide" and best["model_config"]["width"] == 3
    assert best["train_config"]["captioner_options"] == {"width": 3}

    result = invoke("train", feats, labels, "--out", run, "--resume", "--epochs", "2", "--captioner-option",
                    "width=2")
    assert result.exit_code == 2
    assert "drop --captioner-option width=2 (the run has {'width': 3})" in result.output
    result = invoke("train", feats, labels, "--out", run, "--resume", "--epochs", "2")  # the run's own options
    assert result.exit_code == 0, result.output
    assert torch.load(run / "last.pt", weights_only=True)["model_config"]["width"] == 3


@pytest.mark.parametrize("option, message", [
    ("width=9", "--captioner-option width=9: must be a whole number >= 1 and <= 4 (the wide captioner)"),
    ("width=wide", "--captioner-option width='wide': must be a whole number"),  # not JSON: the text itself
    ("depth=2", "--captioner-option depth: the wide captioner has no such option (its own are width)"),
])
def test_a_bad_captioner_option_is_one_line(tmp_path, wide, option, message):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    result = invoke("train", feats, labels, "--out", tmp_path / "run", "--captioner", "wide",
                    "--captioner-option", option, *TRAIN)
    assert result.exit_code == 2 and f"vcap: error: {message}" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_without_the_captioners_own_options_loads_with_their_defaults(tmp_path, wide):
    from vcap.captioner.checkpoint import load_model

    feats, labels = make_synthetic(tmp_path, n_videos=8)
    assert invoke("train", feats, labels, "--out", tmp_path / "run", "--captioner", "wide", *TRAIN).exit_code == 0
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    del ckpt["model_config"]["width"]  # as written before the option existed
    torch.save(ckpt, tmp_path / "old.pt")
    model, _, _ = load_model(tmp_path / "old.pt")
    assert model.config["width"] == 1  # WideConfig's default
