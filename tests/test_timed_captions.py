"""`vcap caption --every`: timed captions of a long video, as lines, JSON, SubRip and WebVTT."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from vcap.cli import main
from vcap.extract.sampler import read_frames, sample_indices
from vcap.pipeline.caption import merge_spans
from vcap.pipeline.writers import clock

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CLIPS = ["bunny_1.mp4", "carphone_1.mp4", "tree_1.mp4", "bikes_1.mp4"]
FPS, SECONDS = 10, 2  # each clip becomes one 2 s window of 20 frames
FLAGS = ["--workers", "0", "--device", "cpu"]


def write_mjpg(path: Path, frames: list[np.ndarray]) -> Path:
    """Intra-only MJPG: a frame's pixels do not depend on its neighbours, so a clip cut out of the long video
    decodes to exactly the pixels it has there."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (96, 72))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """The sample clips joined into one video, each clip one window long, and each clip alone."""
    root = tmp_path_factory.mktemp("timed")
    (root / "clips").mkdir()
    segments = []
    for name in CLIPS:
        frames = read_frames(SAMPLES / "videos" / name, FPS * SECONDS, size=96)
        segments.append([cv2.resize(f, (96, 72), interpolation=cv2.INTER_AREA) for f in frames])
        write_mjpg(root / "clips" / f"{Path(name).stem}.avi", segments[-1])
    joined = write_mjpg(root / "joined.avi", [f for seg in segments for f in seg])
    labels = {item["id"]: item["caption"] for item in json.loads((SAMPLES / "labels.json").read_text())}
    (root / "labels.json").write_text(json.dumps([{"id": f"{Path(n).stem}.avi", "caption": labels[n]} for n in CLIPS]))
    runner = CliRunner()
    assert runner.invoke(main, ["extract", str(root / "clips"), str(root / "feats"), "--frames", "4", "--size", "64",
                                "--weights", "none", *FLAGS]).exit_code == 0
    trained = runner.invoke(main, ["train", str(root / "feats"), str(root / "labels.json"), "--out", str(root / "m"),
                                   "--hidden", "32", "--embed-dim", "16", "--lr", "0.01", "--min-count", "1",
                                   "--epochs", "30", "--batch-size", "8", "--patience", "0", "--frame-stride", "1",
                                   "--dropout", "0", "--val-fraction", "0.25", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    return root, joined, root / "m" / "last.pt"


def test_window_plan_takes_each_window_as_a_whole_video():
    from vcap.extract.sampler import window_plan

    spans: list = []
    indices = window_plan(10.0, 2.0, 4, spans)(50)  # 5 s: windows of 20, 20 and 10 frames
    assert spans == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert indices.tolist() == [*sample_indices(20, 4), *(20 + sample_indices(20, 4)), *(40 + sample_indices(10, 4))]


@pytest.mark.slow
def test_each_window_is_captioned_as_the_clip_alone_and_subtitles_parse(long_video, tmp_path):
    import srt
    import webvtt

    root, joined, model = long_video
    runner = CliRunner()
    alone = runner.invoke(main, ["caption", str(root / "clips"), "--model", str(model), "--json", *FLAGS])
    assert alone.exit_code == 0, alone.output
    by_clip = {entry["video"]: entry["caption"] for entry in json.loads(alone.stdout)["videos"]}
    windows = [(i * SECONDS, (i + 1) * SECONDS, by_clip[str(root / "clips" / f"{Path(n).stem}.avi")])
               for i, n in enumerate(CLIPS)]
    expected = merge_spans(windows)

    timed = runner.invoke(main, ["caption", str(joined), "--model", str(model), "--every", str(SECONDS), "--json",
                                 "--srt", str(tmp_path / "out.srt"), "--vtt", str(tmp_path / "out.vtt"), *FLAGS])
    assert timed.exit_code == 0, timed.output
    (answer,) = json.loads(timed.stdout)["videos"]
    assert answer["video"] == str(joined)
    got = [(w["start"], w["end"], w["caption"]) for w in answer["windows"]]
    assert got == expected

    subs = list(srt.parse((tmp_path / "out.srt").read_text()))
    assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == expected
    cues = webvtt.read(str(tmp_path / "out.vtt"))
    assert [(c.start_in_seconds, c.end_in_seconds, c.text) for c in cues] == expected

    lines = runner.invoke(main, ["caption", str(joined), "--model", str(model), "--every", str(SECONDS), *FLAGS])
    # stdout has a line per window as it is captioned; the files and JSON merge equal neighbours
    assert lines.stdout.splitlines() == [f"{joined} {clock(a)}-{clock(b)} {text}" for a, b, text in windows]


def test_subtitles_need_every_and_one_video(long_video):
    root, joined, model = long_video
    runner = CliRunner()
    no_every = runner.invoke(main, ["caption", str(joined), "--model", str(model), "--srt", "x.srt", *FLAGS])
    assert no_every.exit_code == 2 and "--every" in no_every.stderr
    two = runner.invoke(main, ["caption", str(joined), str(joined), "--model", str(model), "--every", "2", "--srt",
                               "x.srt", *FLAGS])
    assert two.exit_code == 2 and "one video" in two.stderr


@pytest.mark.slow
def test_explain_with_every_draws_one_picture_per_window(long_video, tmp_path):
    root, joined, model = long_video
    result = CliRunner().invoke(main, ["caption", str(joined), "--model", str(model), "--every", str(SECONDS),
                                       "--explain", str(tmp_path / "why"), *FLAGS])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert names == [f"joined.avi.{clock(i * SECONDS).replace(':', '')}.png" for i in range(len(CLIPS))]


@pytest.mark.slow
def test_every_shots_cuts_the_windows_where_the_clips_join(long_video):
    root, joined, model = long_video
    runner = CliRunner()
    windows = {}
    for every in ("shots", str(SECONDS)):  # each clip is SECONDS long: its shot is its fixed window
        timed = runner.invoke(main, ["caption", str(joined), "--model", str(model), "--every", every, "--json", *FLAGS])
        assert timed.exit_code == 0, timed.output
        (answer,) = json.loads(timed.stdout)["videos"]
        windows[every] = [(w["start"], w["end"], w["caption"]) for w in answer["windows"]]
    assert windows["shots"] == windows[str(SECONDS)]
    refused = runner.invoke(main, ["caption", str(joined), "--model", str(model), "--every", "scenes", *FLAGS])
    assert refused.exit_code == 2 and "neither a number of seconds nor shots" in refused.stderr

