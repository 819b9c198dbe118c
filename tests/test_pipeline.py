"""The whole chain through the real CLI: extract -> train -> caption, and `vcap run`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from vcap.cli import main

CLASSES = {0: "a red square moves right", 1: "a green square moves right", 2: "a blue square moves right"}
FEATURE_FLAGS = ["--frames", "4", "--size", "64", "--weights", "none", "--workers", "0", "--device", "cpu"]
TRAIN_FLAGS = ["--hidden", "32", "--embed-dim", "16", "--lr", "0.01", "--min-count", "1", "--epochs", "25",
               "--batch-size", "8", "--patience", "0", "--frame-stride", "1", "--dropout", "0", "--device", "cpu"]


@pytest.fixture
def dataset(tmp_path, make_video):
    """Three visually distinct kinds of video, three clips each, and one unseen clip of each kind."""
    labels, unseen = [], []
    for kind, caption in CLASSES.items():
        for clip in range(4):
            name = f"kind{kind}_{clip}.mp4"
            make_video(name, frames=12, seed=kind * 7 + 1)
            captions = [caption, caption.replace("moves", "slides")]
            (labels if clip < 3 else unseen).append({"id": name, "caption": captions})
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "unseen.json").write_text(json.dumps(unseen))
    return tmp_path


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.slow
def test_extract_train_caption_through_the_cli(dataset):
    feats, model = dataset / "feats", dataset / "model"
    assert invoke("extract", dataset / "videos", feats, *FEATURE_FLAGS).exit_code == 0
    assert len(list(feats.glob("*.npy"))) == 12
    trained = invoke("train", feats, dataset / "labels.json", "--val-labels", dataset / "unseen.json",
                     "--out", model, *TRAIN_FLAGS)
    assert trained.exit_code == 0, trained.output
    assert (model / "best.pt").is_file() and (model / "history.csv").is_file()

    corrupt = dataset / "videos" / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    unseen = [dataset / "videos" / f"kind{k}_3.mp4" for k in CLASSES]
    result = invoke("caption", *unseen, corrupt, "--model", model / "best.pt", "--beam", "2", "--workers", "0",
                    "--device", "cpu")
    assert result.exit_code == 1
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert set(lines) == {str(p) for p in unseen}
    colours = [CLASSES[k].split()[1] for k in CLASSES]
    assert sum(lines[str(p)].split()[1:2] == [colours[k]] for k, p in enumerate(unseen)) >= 2, lines
    assert f"{corrupt}: cannot open as a video" in result.stderr

    as_json = invoke("caption", unseen[0], corrupt, "--model", model / "best.pt", "--json", "--workers", "0")
    assert as_json.exit_code == 1
    ok, failed = json.loads(as_json.stdout)["videos"]  # failures are entries too
    assert ok == {"video": str(unseen[0]), "caption": lines[str(unseen[0])]}
    assert failed["video"] == str(corrupt) and "cannot open as a video" in failed["error"]


def test_caption_refuses_other_feature_settings(dataset, tmp_path):
    feats, model = dataset / "feats", dataset / "model"
    invoke("extract", dataset / "videos", feats, *FEATURE_FLAGS)
    invoke("train", feats, dataset / "labels.json", "--out", model, *TRAIN_FLAGS, "--epochs", "1")
    result = invoke("caption", dataset / "videos" / "kind0_3.mp4", "--model", model / "best.pt",
                    "--weights", "imagenet")
    assert result.exit_code == 2
    assert "trained on features from weights 'none'" in result.stderr


def test_caption_without_a_model_says_what_to_do(dataset, monkeypatch):
    monkeypatch.delenv("VCAP_MODEL", raising=False)
    result = invoke("caption", dataset / "videos" / "kind0_0.mp4")
    assert result.exit_code == 2 and "--model" in result.stderr


@pytest.mark.slow
def test_run_leaves_features_model_and_metrics_under_out(dataset):
    out = dataset / "run"
    result = invoke("run", dataset / "videos", dataset / "labels.json", "--out", out, *FEATURE_FLAGS,
                    "--captioner", "attention", "--hidden", "32", "--epochs", "3", "--min-count", "1", "--beam", "1")
    assert result.exit_code == 0, result.output
    assert (out / "feats" / "manifest.json").is_file()
    assert {"best.pt", "last.pt", "history.csv", "history.png"} <= {p.name for p in (out / "model").iterdir()}
    # Only the 9 labelled videos are extracted, and the scores are on the one held out of training.
    assert len(list((out / "feats").glob("*.npy"))) == 9
    held_out = json.loads((out / "model" / "config.json").read_text())["val_videos"]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == len(held_out) == 1
    assert set(json.loads((out / "eval" / "predictions.json").read_text())) == set(held_out)
    assert "1 videos of" in result.output and "held out of training" in result.output

    again = invoke("run", dataset / "videos", dataset / "labels.json", "--out", out, *FEATURE_FLAGS, "--epochs", "3")
    assert again.exit_code == 2 and "--resume" in again.output and "--overwrite" in again.output
    everything = invoke("run", dataset / "videos", dataset / "labels.json", "--out", dataset / "all", *FEATURE_FLAGS,
                        "--hidden", "32", "--epochs", "1", "--min-count", "1", "--all-videos")
    assert everything.exit_code == 0, everything.output
    assert len(list((dataset / "all" / "feats").glob("*.npy"))) == 12


@pytest.mark.slow
@pytest.mark.distributed
def test_run_under_torchrun_shares_every_stage_and_reports_once(dataset):
    out = dataset / "run2"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vcap", "run", str(dataset / "videos"), str(dataset / "labels.json"),
               "--out", str(out), *FEATURE_FLAGS, "--hidden", "32", "--epochs", "2", "--min-count", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "extract 0/2" in result.stderr and "extract 1/2" in result.stderr  # each rank took a share
    assert len(list((out / "feats").glob("*.npy"))) == 9  # the labelled videos
    assert result.stdout.count("best.pt: ") == 1  # rank 0 alone evaluates and reports
    assert json.loads((out / "eval" / "metrics.json").read_text())["videos"] == 1  # the held-out share


@pytest.mark.slow
@pytest.mark.parametrize("captioner", ["attention", "s2vt"])
def test_explain_draws_the_frames_seen_and_the_attention_per_word(dataset, captioner):
    from matplotlib.image import imread

    feats, model = dataset / "feats", dataset / captioner
    assert invoke("extract", dataset / "videos", feats, *FEATURE_FLAGS).exit_code == 0
    trained = invoke("train", feats, dataset / "labels.json", "--out", model, *TRAIN_FLAGS, "--epochs", "3",
                     "--captioner", captioner)  # the last --epochs wins
    assert trained.exit_code == 0, trained.output
    video = dataset / "videos" / "kind1_3.mp4"
    result = invoke("caption", video, "--model", model / "best.pt", "--explain", dataset / "why", "--workers", "0",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    picture = imread(dataset / "why" / "kind1_3.mp4.png")
    height, width = picture.shape[:2]
    assert width >= 600 and height >= 150 and picture[..., :3].std() > 0.05  # drawn, not blank
