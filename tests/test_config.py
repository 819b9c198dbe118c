"""The contracts between the CLI and the stages: each default once, options checked when a config is built,
one flag one meaning, and runs that never destroy earlier work."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from captioner_fixtures import TINY, make_synthetic
from vcap import cli
from vcap.captioner.config import DecodeConfig, TrainConfig
from vcap.config import default_of
from vcap.errors import VcapError
from vcap.extract.config import ExtractConfig

TINY_FLAGS = ["--hidden", "32", "--embed-dim", "16", "--dropout", "0.1", "--lr", "0.01", "--batch-size", "16",
              "--min-count", "1", "--device", "cpu"]


def invoke(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_the_cli_imports_no_torch_numpy_or_opencv():
    code = "import sys, vcap.cli; print(sorted(m for m in ('torch', 'numpy', 'cv2') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_help_shows_each_dataclass_default_and_shared_flags_mean_one_thing():
    import click

    owners = {"frames": ExtractConfig, "frame_batch": ExtractConfig, "hidden": TrainConfig, "patience": TrainConfig,
              "batch_size": TrainConfig, "beam": DecodeConfig, "no_repeat_ngram": DecodeConfig}
    helps: dict[str, str] = {}
    for command in cli.main.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "out":  # --out: each command's own folder
                assert helps.setdefault(param.name, param.help) == param.help, (command.name, param.name)
    for name, cls in owners.items():
        default = default_of(cls, name)
        assert (f"[default: {default}]" in helps[name]) if default is not None else "[default:" in helps[name]
    run = {p.name for p in cli.main.commands["run"].params}
    assert {"batch_size", "precision", "dropout", "beam", "max_words", "frame_batch", "resume", "overwrite"} <= run


@pytest.mark.parametrize("args, named", [
    (["--batch-size", "0"], "--batch-size 0"), (["--batch-size", "-3"], "--batch-size -3"),
    (["--hidden", "0"], "--hidden 0"), (["--lr", "nan"], "--lr nan"), (["--lr", "0"], "--lr 0"),
    (["--dropout", "2"], "--dropout 2"), (["--label-smoothing", "2"], "--label-smoothing 2"),
    (["--epochs", "0"], "--epochs 0"), (["--val-fraction", "1.5"], "--val-fraction 1.5"),
    (["--teacher-forcing", "sometimes"], "--teacher-forcing sometimes"), (["--grad-clip", "inf"], "--grad-clip inf"),
    (["--resume", "--overwrite"], "choose one"),
])
def test_train_options_out_of_range_are_one_line_before_anything_is_written(tmp_path, args, named):
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    result = invoke("train", feats, labels, "--out", tmp_path / "run", *args)
    assert result.exit_code == 2 and named in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [
    ["extract", "VIDEO", "OUT", "--frames", "0"], ["extract", "VIDEO", "OUT", "--frame-batch", "0"],
    ["extract", "VIDEO", "OUT", "--shard", "3/2"], ["caption", "VIDEO", "--model", "M", "--beam", "0"],
    ["caption", "VIDEO", "--model", "M", "--videos-per-batch", "0"],
    ["evaluate", "M", "FEATS", "LABELS", "--beam", "0"], ["evaluate", "M", "FEATS", "LABELS", "--max-words", "0"],
    ["evaluate", "M", "FEATS", "LABELS", "--videos-per-batch", "0"],
])
def test_every_verb_checks_its_ranges(tmp_path, command, make_video):
    video = make_video("a.mp4", frames=4)
    words = [{"VIDEO": video, "OUT": tmp_path / "out", "M": tmp_path / "m.pt", "FEATS": tmp_path,
              "LABELS": tmp_path / "l.json"}.get(w, w) for w in command]
    result = invoke(*words)
    assert result.exit_code == 2 and command[-2] in result.stderr, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_second_train_refuses_the_folder_unless_told_and_resume_keeps_the_architecture(tmp_path):
    feats, labels = make_synthetic(tmp_path, n_videos=12)
    out = tmp_path / "run"
    assert invoke("train", feats, labels, "--out", out, *TINY_FLAGS, "--epochs", "1").exit_code == 0
    best = (out / "best.pt").read_bytes()

    again = invoke("train", feats, labels, "--out", out, *TINY_FLAGS, "--epochs", "1")
    assert again.exit_code == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr
    assert (out / "best.pt").read_bytes() == best  # the earlier model is untouched

    clash = invoke("train", feats, labels, "--out", out, "--resume", "--hidden", "64", "--epochs", "2")
    assert clash.exit_code == 2 and "--hidden 64 (the run has 32)" in clash.stderr

    resumed = invoke("train", feats, labels, "--out", out, "--resume", "--epochs", "2")  # hidden 32 from last.pt
    assert resumed.exit_code == 0, resumed.output
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == 32 and config["epochs"] == 2 and config["resume"] is True
    last = torch.load(out / "last.pt", weights_only=True)
    assert "scaler" in last and last["epoch"] == 2
    assert "best.pt: the last epoch: 1 held-out video is too few" in resumed.output  # says what chose it

    replaced = invoke("train", feats, labels, "--out", out, *TINY_FLAGS, "--hidden", "24", "--epochs", "1",
                      "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "config.json").read_text())["hidden"] == 24


def test_resume_on_labels_of_another_vocabulary_is_refused(tmp_path):
    feats, labels = make_synthetic(tmp_path, n_videos=12)
    out = tmp_path / "run"
    assert invoke("train", feats, labels, "--out", out, *TINY_FLAGS, "--epochs", "1").exit_code == 0
    other = json.loads(labels.read_text())
    for item in other:
        item["caption"] = ["zebras graze on the savanna", "a zebra herd grazes"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = invoke("train", feats, tmp_path / "other.json", "--out", out, "--resume", "--epochs", "2")
    assert result.exit_code == 2 and "another vocabulary" in result.stderr


def test_ctrl_c_names_the_command_that_resumes(tmp_path, monkeypatch):
    import vcap.captioner.train as train_module

    from vcap.errors import Interrupted

    def interrupted(config):
        raise Interrupted(resumable=True)  # after an epoch of this run was written

    monkeypatch.setattr(train_module, "train", interrupted)
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    result = invoke("train", feats, labels, "--out", tmp_path / "run", "--overwrite", "--epochs", "3")
    assert result.exit_code == 130
    assert f"vcap train {feats} {labels} --out {tmp_path / 'run'} --epochs 3 --resume" in result.stderr


def test_one_decoding_config_caps_caption_length_at_the_trained_length(tmp_path):
    from vcap.captioner.checkpoint import load_model
    from vcap.captioner.data import FeatureBank, attach_features, load_labels
    from vcap.captioner.decode import caption_features
    from vcap.captioner.train import train

    feats, labels = make_synthetic(tmp_path, n_videos=12)
    train(TrainConfig(str(feats), str(labels), str(tmp_path / "m"), epochs=2, max_words=3, **TINY))
    model, vocab, info = load_model(tmp_path / "m" / "best.pt")
    assert info["max_words"] == 3
    videos, _, _ = attach_features(load_labels(labels), feats, labels)
    x = FeatureBank([p for _, _, p in videos]).batch(list(range(len(videos))))
    assert max(len(c.split()) for c in caption_features(model, vocab, x, DecodeConfig(), info["max_words"])) <= 3
    with pytest.raises(VcapError, match="--max-words 0"):
        DecodeConfig(max_words=0)
