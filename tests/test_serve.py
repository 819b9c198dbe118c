"""`vcap serve`: the API through Starlette's test client, the page in a real headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import vcap.pipeline.caption as caption_module
from conftest import write_video
from vcap.cli import main
from vcap.errors import VcapError
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.config import CaptionConfig, ServeConfig
from vcap.pipeline.results import VideoResult
from vcap.pipeline.serve import create_app, exposure_warning
from vcap.pipeline.worker import CaptionWorker

FEATURE_FLAGS = ["--frames", "4", "--size", "64", "--backbone", "efficientnet-lite0", "--weights", "none",
                 "--workers", "0", "--device", "cpu"]
TRAIN_FLAGS = ["--hidden", "32", "--embed-dim", "16", "--lr", "0.01", "--min-count", "1", "--epochs", "2",
               "--batch-size", "8", "--patience", "0", "--frame-stride", "1", "--dropout", "0", "--device", "cpu",
               "--val-fraction", "0.34"]
CLASSES = {0: "a red square moves right", 1: "a green square moves right", 2: "a blue square moves right"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One tiny model; one app captioning with it (loads counted); what VideoCaptioner says directly."""
    root = tmp_path_factory.mktemp("serve")
    videos, outside = root / "videos", root / "outside"
    videos.mkdir()
    outside.mkdir()
    labels = []
    for kind, text in CLASSES.items():
        for clip in range(2):
            write_video(videos / f"kind{kind}_{clip}.mp4", frames=12, seed=kind * 7 + 1)
            labels.append({"id": f"kind{kind}_{clip}.mp4", "caption": [text]})
    write_video(outside / "secret.mp4", frames=12, seed=3)
    (videos / "notes.txt").write_text("not a video")
    (videos / "link.mp4").symlink_to(outside / "secret.mp4")
    (root / "labels.json").write_text(json.dumps(labels))
    cli("extract", videos, root / "feats", *FEATURE_FLAGS)
    cli("train", root / "feats", root / "labels.json", "--out", root / "model", *TRAIN_FLAGS)
    model = root / "model" / "best.pt"

    clips = sorted(videos.glob("kind*.mp4"))
    direct = VideoCaptioner(CaptionConfig(model=str(model), device="cpu", workers=0))
    expected = {result.video.name: result.caption for result in direct.caption_each(clips)}
    config = ServeConfig(model=str(model), device="cpu", workers=0, allow_dir=str(videos), max_upload_mb=1)
    uploads = root / "tmp"
    uploads.mkdir()
    loads = []
    with pytest.MonkeyPatch.context() as patch:
        real = caption_module.load_model
        patch.setattr(caption_module, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
        patch.setattr(tempfile, "tempdir", str(uploads))  # where the server streams uploads to
        app = create_app(config)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield dict(client=client, app=app, config=config, expected=expected, clips=clips, videos=videos,
                       outside=outside, uploads=uploads, loads=loads)


def upload(client, *paths: Path, name: str | None = None):
    return client.post("/caption", files=[("video", (name or p.name, p.read_bytes(), "video/mp4")) for p in paths])


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], body
    return body["error"]


def test_an_uploaded_video_gets_the_caption_videocaptioner_gives_and_leaves_no_file(served):
    clip = served["clips"][0]
    response = upload(served["client"], clip)
    assert response.status_code == 200, response.text
    assert response.json() == {"videos": [{"video": clip.name, "caption": served["expected"][clip.name]}]}
    assert list(served["uploads"].iterdir()) == []


def test_a_non_video_is_a_422_with_the_one_line_vcap_error_and_the_server_goes_on(served):
    client = served["client"]
    error = one_line_error(client.post("/caption", files={"video": ("notes.mp4", b"not a video", "video/mp4")}), 422)
    assert error.startswith("notes.mp4: cannot open as a video") and str(served["uploads"]) not in error
    good, bad = served["clips"][1], served["videos"] / "notes.txt"
    mixed = upload(client, good, bad, name=None)
    assert mixed.status_code == 200, mixed.text
    first, second = mixed.json()["videos"]
    assert first == {"video": good.name, "caption": served["expected"][good.name]}
    assert second["video"] == "notes.txt" and "cannot open as a video" in second["error"]
    assert client.get("/health").json()["status"] == "ok"
    assert list(served["uploads"].iterdir()) == []


def test_a_request_over_max_upload_mb_is_a_413_with_or_without_a_content_length(served):
    client, big = served["client"], b"\0" * (3 << 19)  # 1.5 MB, over the 1 MB of this server
    assert "--max-upload-mb 1" in one_line_error(client.post("/caption", files={"video": ("big.mp4", big)}), 413)
    boundary = "vcapboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n\r\n".encode()
            + big + f"\r\n--{boundary}--\r\n".encode())
    streamed = client.post("/caption", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "--max-upload-mb 1" in one_line_error(streamed, 413)
    assert list(served["uploads"].iterdir()) == []
    assert upload(client, served["clips"][0]).status_code == 200


def test_paths_under_allow_dir_are_captioned(served):
    clip = served["clips"][2]
    for given in (clip.name, str(clip), f"./sub/../{clip.name}"):
        response = served["client"].post("/caption", json={"paths": [given]})
        assert response.status_code == 200, (given, response.text)
        assert response.json() == {"videos": [{"video": given, "caption": served["expected"][clip.name]}]}
    assert "no such file" in one_line_error(served["client"].post("/caption", json={"paths": ["gone.mp4"]}), 422)


@pytest.mark.parametrize("kind", ["dotdot", "deep dotdot", "absolute elsewhere", "system file", "symlink out",
                                  "one bad of two"])
def test_a_path_outside_allow_dir_is_a_403(served, kind):
    secret = served["outside"] / "secret.mp4"
    given = {"dotdot": ["../outside/secret.mp4"], "deep dotdot": ["a/b/../../../outside/secret.mp4"],
             "absolute elsewhere": [str(secret)], "system file": ["/etc/passwd"], "symlink out": ["link.mp4"],
             "one bad of two": [served["clips"][0].name, "../outside/secret.mp4"]}[kind]
    error = one_line_error(served["client"].post("/caption", json={"paths": given}), 403)
    assert "outside the folder this server may read" in error


def test_paths_are_refused_without_allow_dir_and_bad_requests_are_one_line(served):
    config = ServeConfig(model=served["config"].model, device="cpu", workers=0)
    captioner = served["app"].state.worker.captioner  # the same loaded model, not a second load
    with TestClient(create_app(config, captioner)) as uploads_only:
        assert "--allow-dir" in one_line_error(uploads_only.post("/caption", json={"paths": ["kind0_0.mp4"]}), 403)
    client = served["client"]
    assert "JSON" in one_line_error(client.post("/caption", content=b"{nope", headers={"content-type":
                                                                                      "application/json"}), 400)
    assert "JSON" in one_line_error(client.post("/caption", json={"paths": "kind0_0.mp4"}), 400)
    plain_text = client.post("/caption", content=b"x", headers={"content-type": "text/plain"})
    assert "multipart" in one_line_error(plain_text, 415)
    assert "no video" in one_line_error(client.post("/caption", json={"paths": []}), 400)
    one_line_error(client.get("/nowhere"), 404)
    one_line_error(client.get("/caption"), 405)


def test_twenty_concurrent_requests_share_one_model_and_get_the_direct_captions(served):
    client, clips, expected = served["client"], served["clips"], served["expected"]
    before = client.get("/health").json()["batches"]

    def ask(i: int):
        clip = clips[i % len(clips)]
        response = (upload(client, clip) if i % 2 else client.post("/caption", json={"paths": [clip.name]}))
        return clip.name, response

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    for name, response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["videos"][0]["caption"] == expected[name]
    health = client.get("/health").json()
    assert health["batches"] - before < 20  # requests that waited were captioned together
    assert len(served["loads"]) == 1


def test_health_counts_a_request_and_the_seconds_of_each_stage_it_went_through(served):
    client, clip = served["client"], served["clips"][2]
    before = client.get("/health").json()
    assert upload(client, clip).status_code == 200
    after = client.get("/health").json()
    assert (after["requests"], after["videos"]) == (before["requests"] + 1, before["videos"] + 1)
    assert set(after["seconds"]) == {"decode_wait", "decode", "backbone", "captioner"}
    assert all(after["seconds"][stage] > before["seconds"][stage] for stage in after["seconds"])


def test_info_health_and_a_self_contained_page(served):
    client = served["client"]
    info = client.get("/info").json()
    assert info["model"] == served["config"].model and info["captioner"] == "attention"
    assert info["backbone"] == "efficientnet-lite0" and info["weights"] == "none" and info["device"] == "cpu"
    assert info["vocabulary"] > 4 and info["decode"]["beam"] == 1 and info["decode"]["max_words"] == 20
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and " src=" not in page.text


def test_the_cli_passes_shared_options_and_warns_off_loopback(monkeypatch, tmp_path):
    import vcap.pipeline.serve as serve_module

    seen = []
    monkeypatch.setattr(serve_module, "serve", seen.append)
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset below; restored after the test")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    result = CliRunner().invoke(main, ["serve", "--model", "m.pt", "--beam", "3", "--workers", "0", "--host",
                                       "0.0.0.0", "--port", "9000", "--allow-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # torch's threads leave the cores to the decoder and HTTP
    (config,) = seen
    assert (config.decode.beam, config.workers, config.port, config.allow_dir) == (3, 0, 9000, str(tmp_path))
    assert "warning: listening on 0.0.0.0" in result.stderr and len(result.stderr.splitlines()) == 1
    assert exposure_warning(ServeConfig(model="m.pt")) is None
    assert exposure_warning(ServeConfig(model="m.pt", host="::1")) is None
    refused = CliRunner().invoke(main, ["serve", "--model", "m.pt", "--port", "70000"])
    assert refused.exit_code == 2 and "--port 70000" in refused.stderr
    with pytest.raises(VcapError, match="--max-upload-mb 0"):
        ServeConfig(model="m.pt", max_upload_mb=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_page_captions_a_dropped_video_in_headless_chromium(served, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no Chromium here (apt-get install chromium; .ci/run tries it)")
    import uvicorn

    config = ServeConfig(model=served["config"].model, device="cpu", workers=0)
    app = create_app(config, served["app"].state.worker.captioner)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    clip = served["clips"][3]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.config.port}/")
            page.set_input_files("#file", str(clip))
            page.wait_for_selector("#status[data-state=done]", timeout=30_000)
            assert page.inner_text("#results .name") == clip.name
            assert page.inner_text("#results .caption") == served["expected"][clip.name]
            page.set_input_files("#file", str(served["videos"] / "notes.txt"))
            page.wait_for_selector("#status[data-state=error]", timeout=30_000)
            assert "cannot open as a video" in page.inner_text("#status")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_every_gives_timed_captions_as_vcap_caption_does(served):
    client, clip = served["client"], served["clips"][0]
    direct = VideoCaptioner(CaptionConfig(model=served["config"].model, device="cpu", workers=0))
    (timed,) = direct.caption_each([clip], every=0.5)
    expected = [{"start": round(a, 3), "end": round(b, 3), "caption": c} for a, b, c in timed.spans]
    assert all(seconds > 0 for seconds in (direct.times.decode_wait, direct.times.backbone, direct.times.captioner))
    response = client.post("/caption?every=0.5", files=[("video", (clip.name, clip.read_bytes(), "video/mp4"))])
    assert response.status_code == 200, response.text
    assert response.json() == {"videos": [{"video": clip.name, "windows": expected}]}
    assert expected[0]["start"] == 0 and expected[-1]["end"] == pytest.approx(1.0)  # 12 frames at 12 fps
    for bad in ("0", "abc", "-1", "inf"):
        one_line_error(client.post(f"/caption?every={bad}", files=[("video", (clip.name, clip.read_bytes(),
                                                                              "video/mp4"))]), 400)


def test_explain_returns_the_frames_and_attention_picture(served):
    import base64

    client, clip = served["client"], served["clips"][1]
    response = client.post("/caption?explain=1", files=[("video", (clip.name, clip.read_bytes(), "video/mp4"))])
    assert response.status_code == 200, response.text
    (answer,) = response.json()["videos"]
    assert answer["caption"] == served["expected"][clip.name]
    assert base64.b64decode(answer["explain"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(served["uploads"].iterdir()) == []


def test_every_with_explain_returns_a_picture_per_window_titled_with_the_uploaded_name(served, monkeypatch):
    import base64

    import vcap.pipeline.explain as explain_module

    titles = []
    real = explain_module.render
    monkeypatch.setattr(explain_module, "render", lambda *a: titles.append(a[-1]) or real(*a))
    client, clip = served["client"], served["clips"][2]
    response = client.post("/caption?every=0.5&explain=1", files=[("video", ("holiday.mp4", clip.read_bytes(),
                                                                             "video/mp4"))])
    assert response.status_code == 200, response.text
    (answer,) = response.json()["videos"]
    assert answer["video"] == "holiday.mp4" and answer["windows"]
    assert [(p["start"], p["end"]) for p in answer["explain"]] == [(0.0, 0.5), (0.5, 1.0)]
    assert all(base64.b64decode(p["picture"].split(",", 1)[1])[:4] == b"\x89PNG" for p in answer["explain"])
    whole = client.post("/caption?explain=1", files=[("video", ("holiday.mp4", clip.read_bytes(), "video/mp4"))])
    assert whole.status_code == 200, whole.text
    assert len(titles) == 3 and all(t.startswith("holiday.mp4") for t in titles), titles  # not the temp 0.mp4
    assert list(served["uploads"].iterdir()) == []


def test_a_request_over_max_files_is_a_413(served):
    config = ServeConfig(model=served["config"].model, device="cpu", workers=0, allow_dir=str(served["videos"]),
                         max_files=2)
    clip = served["clips"][0]
    with TestClient(create_app(config, served["app"].state.worker.captioner)) as client:
        assert "--max-files 2" in one_line_error(upload(client, clip, clip, clip), 413)
        assert "--max-files 2" in one_line_error(client.post("/caption", json={"paths": [clip.name] * 3}), 413)
        assert upload(client, clip, clip).status_code == 200


def test_a_client_that_goes_away_is_one_log_line_not_a_traceback(served, caplog):
    import asyncio

    messages = iter([{"type": "http.request", "body": b"--b\r\nContent-Disposition: form-data; name=\"v\"; "
                                                      b"filename=\"a.mp4\"\r\n\r\nabc", "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/caption", "raw_path": b"/caption", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"host", b"test")],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    with caplog.at_level("INFO"):
        asyncio.run(served["app"](scope, receive, send))  # raises nothing
    records = [r for r in caplog.records if r.name.startswith("vcap")]
    assert len(records) == 1 and "went away" in records[0].getMessage() and records[0].exc_info is None
    assert list(served["uploads"].iterdir()) == []


def test_two_uploads_of_one_name_are_two_answers(served):
    first, second = served["clips"][0], served["clips"][3]
    response = upload(served["client"], first, second, name="clip.mp4")
    assert response.status_code == 200, response.text
    assert response.json()["videos"] == [{"video": "clip.mp4", "caption": served["expected"][first.name]},
                                         {"video": "clip.mp4", "caption": served["expected"][second.name]}]


class _SlowCaptioner:
    """Stands in for VideoCaptioner: records what each round captioned, and holds the first round until told."""

    def __init__(self, videos_per_batch: int):
        self.config = type("Config", (), {"videos_per_batch": videos_per_batch})()
        self.rounds: list[list[str]] = []
        self.first_round_may_end = threading.Event()

    def caption_each(self, paths, names, every=None, explain=None):
        self.rounds.append(list(names))
        if len(self.rounds) == 1:
            self.first_round_may_end.wait(30)
        return [VideoResult(p, n, caption=f"caption of {n}") for p, n in zip(paths, names)]


def test_a_short_request_is_answered_while_a_long_one_is_worked_through():
    captioner = _SlowCaptioner(videos_per_batch=4)
    worker = CaptionWorker(captioner)
    worker.start()
    finished: list[str] = []
    try:
        long = worker.submit([Path(f"long{i}.mp4") for i in range(40)], [f"long{i}" for i in range(40)])
        long.add_done_callback(lambda _: finished.append("long"))
        while not captioner.rounds:  # the long request's first round has started
            threading.Event().wait(0.01)
        short = worker.submit([Path("short.mp4")], ["short"])
        short.add_done_callback(lambda _: finished.append("short"))
        captioner.first_round_may_end.set()
        assert [r.caption for r in short.result(30)] == ["caption of short"]
        assert [r.name for r in long.result(30)] == [f"long{i}" for i in range(40)]  # in order, every one
    finally:
        worker.stop()
    assert finished == ["short", "long"]
    assert "short" in captioner.rounds[1] and len(captioner.rounds[1]) == 4  # the next round, shared
    assert all(len(names) <= 4 for names in captioner.rounds)
