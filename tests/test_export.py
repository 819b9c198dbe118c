"""Models as artifacts: `vcap export` writes <name>-<sha8>.safetensors and a model card; load_model takes it by
path or by URL (a local HTTP server here), downloads once into $VCAP_HOME, and refuses a file its hash denies."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from captioner_fixtures import TINY, make_synthetic
from vcap.captioner.checkpoint import load_model
from vcap.captioner.config import DecodeConfig, TrainConfig
from vcap.captioner.data import FeatureBank, attach_features, load_labels
from vcap.captioner.decode import caption_features
from vcap.cli import main
from vcap.errors import VcapError


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(best.pt of a one-epoch run, its features, its labels)."""
    from vcap.captioner.train import train

    root = tmp_path_factory.mktemp("export")
    feats, labels = make_synthetic(root, n_videos=12)
    train(TrainConfig(str(feats), str(labels), str(root / "run"), epochs=2, device="cpu", **TINY))
    return root / "run" / "best.pt", feats, labels


def captions_of(model_path, feats, labels) -> list[str]:
    model, vocab, info = load_model(model_path)
    videos, _, _ = attach_features(load_labels(labels), feats, labels)
    bank = FeatureBank([p for _, _, p in videos])
    return caption_features(model, vocab, bank.batch(list(range(len(videos)))), DecodeConfig(beam=2),
                            info["max_words"])


def test_the_exported_file_captions_as_its_checkpoint(trained, tmp_path):
    best, feats, labels = trained
    result = CliRunner().invoke(main, ["export", str(best), str(tmp_path / "shared"), "--name", "msvd-tiny"])
    assert result.exit_code == 0, result.output
    (exported,) = (tmp_path / "shared").glob("*.safetensors")
    digest = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert exported.name == f"msvd-tiny-{digest[:8]}.safetensors" and f"model: {exported}" in result.output
    assert captions_of(exported, feats, labels) == captions_of(best, feats, labels)
    ours, theirs = load_model(exported)[0].state_dict(), load_model(best)[0].state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert load_model(exported)[2]["feature_config"] == load_model(best)[2]["feature_config"]
    card = (tmp_path / "shared" / "README.md").read_text()
    assert digest in card and "## Metrics" in card and "vcap train" in card and "## Feature settings" in card
    assert b"pickle" not in exported.read_bytes()[:8] and exported.read_bytes()[8:9] == b"{"  # a safetensors header


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_downloads_once_into_vcap_home_and_is_verified(trained, tmp_path, server, monkeypatch):
    best, feats, labels = trained
    www, base = server
    exported = CliRunner().invoke(main, ["export", str(best), str(www)]).output.split("model: ")[1].split("\n")[0]
    name = Path(exported).name
    monkeypatch.setenv("VCAP_HOME", str(tmp_path / "home"))
    url = f"{base}/{name}"
    assert captions_of(url, feats, labels) == captions_of(best, feats, labels)
    assert captions_of(url, feats, labels) == captions_of(best, feats, labels)
    assert CountingHandler.requests == [f"/{name}"]  # the second load came from the cache
    assert (tmp_path / "home" / "models" / name).read_bytes() == Path(exported).read_bytes()

    result = CliRunner().invoke(main, ["evaluate", url, str(feats), str(labels), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert CountingHandler.requests == [f"/{name}"]


def test_a_file_its_name_denies_and_a_failed_download_are_one_line(trained, tmp_path, server, monkeypatch):
    best, _, _ = trained
    www, base = server
    monkeypatch.setenv("VCAP_HOME", str(tmp_path / "home"))
    exported = Path(CliRunner().invoke(main, ["export", str(best), str(tmp_path / "out")]).output
                    .split("model: ")[1].split("\n")[0])
    shutil.copy(exported, www / "vcap-attention-deadbeef.safetensors")  # content and name disagree
    cases = [(f"{base}/vcap-attention-deadbeef.safetensors", "not the deadbeef its name carries; refused"),
             (f"{base}/gone-0123abcd.safetensors", "cannot download (HTTP 404"),
             (f"{base}/best.pt", "carries no sha256 prefix"),
             ("http://127.0.0.1:9/model-0123abcd.safetensors", "cannot download (")]
    for url, message in cases:
        with pytest.raises(VcapError) as err:
            load_model(url)
        assert message in str(err.value) and url in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "home" / "models").iterdir())  # nothing refused is kept
    result = CliRunner().invoke(main, ["caption", str(tmp_path / "v.mp4"), "--model", cases[0][0]])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "refused" in result.output
