"""What a user meets captioning: names as cameras make them, output formats chosen by flag, the Python API,
spans streamed to a pipe as they are made."""
from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_video
from vcap.cli import main
from vcap.pipeline.results import VideoResult
from vcap.pipeline.writers import WRITERS, get_writer, parse_formats

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--workers", "0", "--device", "cpu"]


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny captioner trained in seconds on two kinds of clip; its run folder."""
    root = tmp_path_factory.mktemp("outputs")
    labels = []
    for kind, text in enumerate(["a red square moves", "a blue square moves"]):
        for clip in range(2):
            (root / "train").mkdir(exist_ok=True)
            write_video(root / "train" / f"k{kind}_{clip}.mp4", frames=12, seed=kind * 7 + 1)
            labels.append({"id": f"k{kind}_{clip}.mp4", "caption": [text]})
    (root / "labels.json").write_text(json.dumps(labels))
    assert cli("extract", root / "train", root / "feats", "--frames", "4", "--size", "64", "--backbone",
               "efficientnet-lite0", "--weights", "none", *FLAGS).exit_code == 0
    trained = cli("train", root / "feats", root / "labels.json", "--out", root / "model", "--hidden", "32",
                  "--embed-dim", "16", "--epochs", "2", "--min-count", "1", "--val-fraction", "0.5", "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    return root / "model"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture
def two_clips(tmp_path):
    """clip.mp4 in two camera folders, as phones and cameras name them."""
    return [write_video(_mkdir(tmp_path / "cams" / cam) / "clip.mp4", frames=12, seed=i)
            for i, cam in enumerate(["a", "b"])]


def test_two_clip_mp4_in_two_folders_are_both_captioned(model, two_clips, tmp_path):
    result = cli("caption", tmp_path / "cams", "--model", model, *FLAGS)
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [str(p) for p in two_clips]
    assert result.stderr == "vcap: captioning: 2/2 videos\n"  # progress on a pipe: a line per 10 and the last
    as_json = cli("caption", *two_clips, "--model", model, "--output-dir", tmp_path / "out", "--output-format",
                  "json,tsv", *FLAGS)
    assert as_json.exit_code == 0, as_json.output
    videos = json.loads((tmp_path / "out" / "captions.json").read_text())["videos"]
    assert [v["video"] for v in videos] == [str(p) for p in two_clips] and all(v["caption"] for v in videos)
    # a file per video would collide: said before any work, in one line
    subtitles = cli("caption", *two_clips, "--model", model, "--every", "0.5", "--output-dir", tmp_path / "subs",
                    "--output-format", "srt", *FLAGS)
    assert subtitles.exit_code == 2 and "clip" in subtitles.stderr and len(subtitles.stderr.splitlines()) == 1


def test_output_format_vtt_parses_as_webvtt_whatever_the_suffix(model, two_clips, tmp_path):
    import webvtt

    clip = two_clips[0]
    result = cli("caption", clip, "--model", model, "--every", "0.5", "--output-format", "vtt,srt", "--output-dir",
                 tmp_path / "subs", "--vtt", tmp_path / "x.txt", *FLAGS)
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "subs" / "clip.vtt", tmp_path / "x.txt"):
        cues = webvtt.read(str(path))
        assert cues[0].start_in_seconds == 0 and cues[-1].end_in_seconds == pytest.approx(1.0)
    assert (tmp_path / "subs" / "clip.srt").read_text().startswith("1\n00:00:00,000 --> ")
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["clip.srt", "clip.vtt"]  # no temp files


def test_every_structured_output_holds_the_failures(model, two_clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = cli("caption", two_clips[0], broken, "--model", model, "--output-dir", tmp_path / "out", *FLAGS)
    assert result.exit_code == 1 and "broken.mp4: cannot open as a video" in result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["captions.json", "captions.jsonl", "captions.tsv",
                                                      "captions.txt"]  # all that apply to whole videos
    ok, failed = json.loads((out / "captions.json").read_text())["videos"]
    assert "caption" in ok and failed["video"] == str(broken) and "cannot open" in failed["error"]
    assert [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()] == [ok, failed]
    header, *rows = [line.split("\t") for line in (out / "captions.tsv").read_text().splitlines()]
    assert header == ["video", "start", "end", "caption", "error"] and rows[1][0] == str(broken) and rows[1][4]
    assert (out / "captions.txt").read_text() == f"{two_clips[0]}: {ok['caption']}\n"


def test_a_url_gets_one_line_saying_what_is_supported(model):
    result = cli("caption", "https://example.com/clip.mp4", "--model", model, *FLAGS)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "https://example.com/clip.mp4" in result.stderr and "download it first" in result.stderr


def test_the_python_api_in_two_lines(model, two_clips, tmp_path):
    import vcap

    model_ = vcap.load(model, workers=0)  # the run folder: its best.pt
    caption = model_.caption(str(two_clips[0]))
    assert isinstance(caption, str) and caption
    assert caption == cli("caption", two_clips[0], "--model", model / "best.pt", *FLAGS).stdout.split(": ", 1)[1].strip()
    results = model_.caption([*two_clips, tmp_path / "gone.mp4"], every=0.5)
    assert [r.video for r in results] == [*two_clips, tmp_path / "gone.mp4"]
    assert all(r.spans and r.spans[-1][1] == pytest.approx(1.0) for r in results[:2])
    assert results[2].error and results[2].spans is None
    with pytest.raises(vcap.errors.VcapError, match="gone.mp4"):
        model_.caption(tmp_path / "gone.mp4")


def test_import_vcap_stays_light(tmp_path):
    code = "import sys, vcap; print('torch' in sys.modules, callable(vcap.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


@pytest.mark.slow
def test_every_streams_each_span_to_a_pipe_before_the_video_is_done(model, tmp_path):
    video = write_video(tmp_path / "long.avi", frames=48, fourcc="MJPG")  # 4 s: 8 windows of 0.5 s
    process = subprocess.Popen([sys.executable, "-m", "vcap", "caption", str(video), "--model", str(model),
                                "--every", "0.5", *FLAGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    lines = [line.rstrip("\n") for line in process.stdout]
    assert process.wait(timeout=300) == 0, lines
    spans = [i for i, line in enumerate(lines) if line.startswith(f"{video} 00:00:")]
    done = [i for i, line in enumerate(lines) if line == "vcap: long.avi: 8 windows"]
    assert len(spans) == 8 and done, lines
    assert spans[-1] < done[0]  # every span was on the pipe before the video's last window was counted done


def test_writers_escape_control_characters_in_names_and_the_registry_is_the_flag():
    odd = VideoResult(Path("a\nb.mp4"), "a\nb.mp4", caption="a dog runs")
    failed = VideoResult(Path("c\td.mp4"), "c\td.mp4", error="c\td.mp4: cannot open as a video")
    assert get_writer("txt").render([odd, failed]) == "a\\nb.mp4: a dog runs\n"
    assert get_writer("tsv").render([odd, failed]).splitlines()[1:] == ["a\\nb.mp4\t\t\ta dog runs\t",
                                                                          "c\\td.mp4\t\t\t\tc\\td.mp4: cannot open as a video"]
    assert json.loads(get_writer("jsonl").render([odd]))["video"] == "a\nb.mp4"  # JSON escapes it itself
    assert set(WRITERS) == {"txt", "json", "jsonl", "tsv", "srt", "vtt"}
    assert parse_formats("all", timed=False) == ("txt", "json", "jsonl", "tsv")
    assert parse_formats("vtt, txt", timed=True) == ("vtt", "txt")
    with pytest.raises(vcap_error(), match="unknown output format 'doc'"):
        parse_formats("txt,doc", timed=False)
    with pytest.raises(vcap_error(), match="--every"):
        parse_formats("srt", timed=False)
    refused = CliRunner().invoke(main, ["caption", "x.mp4", "--model", "m.pt", "--output-format", "txt"])
    assert refused.exit_code == 2 and "--output-dir" in refused.stderr


def vcap_error():
    from vcap.errors import VcapError

    return VcapError


def test_serve_installs_with_vcap_itself():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    core = config["options"]["install_requires"]
    assert all(name in core for name in ("starlette", "uvicorn", "python-multipart"))
    assert "static/*.html" in config["options.package_data"]["vcap.pipeline"]


def test_a_new_writer_is_one_registered_class(monkeypatch, tmp_path):
    from vcap.pipeline import writers

    monkeypatch.setattr(writers, "WRITERS", dict(writers.WRITERS))

    @writers.register
    class CSV(writers.Writer):
        name = "csv"

        def render(self, results):
            return "".join(f"{r.name},{r.caption}\n" for r in results)

    assert "csv" in parse_formats("all", timed=False)
    outputs = writers.Outputs([Path("a.mp4")], str(tmp_path), parse_formats("csv", timed=False))
    outputs.add(VideoResult(Path("a.mp4"), "a.mp4", caption="a dog runs"))
    assert outputs.close() == [tmp_path / "captions.csv"]
    assert (tmp_path / "captions.csv").read_text() == "a.mp4,a dog runs\n"
