"""A dataset's own layout through the real CLI: `vcap data`, and `vcap run --labels-format msrvtt` training on
the train split, choosing best.pt on validate and scoring the test split only."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vcap.cli import main

FEATURES = ["--frames", "2", "--size", "32", "--weights", "none", "--workers", "0", "--device", "cpu"]
TRAIN = ["--hidden", "16", "--embed-dim", "8", "--min-count", "1", "--epochs", "2", "--patience", "0"]
SPLITS = {"train": range(0, 4), "validate": range(4, 6), "test": range(6, 9)}  # video8 has no file


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def msrvtt(tmp_path, make_video):
    """video0.mp4 .. video7.mp4 as MSR-VTT names its clips, and a videodatainfo file cut down to them (+ video8)."""
    videos, sentences = [], []
    for split, ids in SPLITS.items():
        for i in ids:
            videos.append({"category": 1, "url": "u", "video_id": f"video{i}", "start time": 0.0,
                           "end time": 2.0, "split": split, "id": i})
            sentences += [{"caption": f" a {'red' if i % 2 else 'blue'} square moves", "video_id": f"video{i}",
                           "sen_id": len(sentences) + k} for k in range(2)]
            if i < 8:
                make_video(f"video{i}.mp4", frames=8, seed=i % 2)
    path = tmp_path / "videodatainfo.json"
    path.write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    return tmp_path / "videos", path


def test_data_reports_the_layout_splits_and_missing_videos(msrvtt):
    videos, labels = msrvtt
    result = invoke("data", labels, "--videos", videos)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == ["format: msrvtt", "train 4 videos, 8 captions",
                                              "val 2 videos, 4 captions", "test 3 videos, 6 captions"]
    assert "videos: 8 of 9 in" in result.output and "1 of 9 videos are not in" in result.output
    assert "video8" in result.output
    wrong = invoke("data", labels, "--labels-format", "activitynet")
    assert wrong.exit_code == 2 and "not activitynet labels" in wrong.output


@pytest.mark.slow
def test_run_trains_on_train_selects_on_validate_and_scores_test_only(msrvtt, tmp_path):
    videos, labels = msrvtt
    out = tmp_path / "run"
    result = invoke("run", videos, labels, "--labels-format", "msrvtt", "--out", out, *FEATURES, *TRAIN)
    assert result.exit_code == 0, result.output
    assert "labels: train 4 videos, 8 captions; val 2 videos, 4 captions; test 3 videos, 6 captions" in result.output
    assert "1 of 9 videos are not in" in result.stderr and "video8" in result.stderr
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["train_videos"] == 4 and sorted(config["val_videos"]) == ["video4", "video5"]
    scored = [r["image_id"] for r in json.loads((out / "eval" / "coco_results.json").read_text())]
    assert sorted(scored) == ["video6", "video7"]  # the test split, less the video that is missing
    assert "held out (2): video6, video7" in result.output and "the test split of" in result.output
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == 2 and metrics["split"] == "test" and "CIDEr" in metrics

    scored_again = invoke("evaluate", out / "model" / "best.pt", out / "feats", labels, "--split", "val",
                          "--out", tmp_path / "val")
    assert scored_again.exit_code == 0, scored_again.output
    assert {r["image_id"] for r in json.loads((tmp_path / "val" / "coco_results.json").read_text())} == {
        "video4", "video5"}


@pytest.fixture
def activitynet(tmp_path, make_video):
    """v_a.mp4 .. v_d.mp4 (2 s each) and an ActivityNet train.json with two timed sentences a video (+ v_e, absent)."""
    labels = {}
    for k, name in enumerate("abcde"):
        labels[f"v_{name}"] = {"duration": 2.0, "timestamps": [[0, 1.0], [2.01, 1.0]],  # reversed, past the end
                               "sentences": [" a square moves", " the square stops"]}
        if name != "e":
            make_video(f"v_{name}.mp4", frames=24, fps=12.0, seed=k)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(labels))
    return tmp_path / "videos", path


def test_extract_with_labels_writes_one_feature_file_per_span(activitynet, tmp_path):
    videos, labels = activitynet
    result = invoke("extract", videos, tmp_path / "feats", "--labels", labels, *FEATURES)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "feats").glob("*.npy")) == sorted(
        f"v_{n}@{span}.npy" for n in "abcd" for span in ("0.00-1.00", "1.00-2.00"))
    assert "1 of 5 videos are not in" in result.stderr and "v_e" in result.stderr


@pytest.mark.slow
def test_run_trains_a_timed_dataset_on_its_spans(activitynet, tmp_path):
    videos, labels = activitynet
    out = tmp_path / "run"
    result = invoke("run", videos, labels, "--out", out, *FEATURES, *TRAIN, "--val-fraction", "0.25")
    assert result.exit_code == 0, result.output
    assert "labels: train 5 videos, 10 segments, 10 captions" in result.output
    assert len(list((out / "feats").glob("v_*@*.npy"))) == 8
    scored = json.loads((out / "eval" / "predictions.json").read_text())
    assert scored and all("@" in key for key in scored) and "held out of training" in result.output
