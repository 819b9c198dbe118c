"""Bad and hostile input, by class: each gets exit code 2 (1 where some videos failed), one line on stderr
naming the file and the reason, no traceback, finished work kept, no temp file, nothing written elsewhere.

The same classes are tried with inputs the issue did not list; a new input of a known class belongs here.
"""
from __future__ import annotations

import errno
import itertools
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from captioner_fixtures import TINY, make_synthetic
from vcap.cli import main

TRAIN = ["--hidden", "32", "--embed-dim", "16", "--batch-size", "16", "--min-count", "1", "--epochs", "2",
         "--val-fraction", "0.25", "--patience", "0", "--device", "cpu"]
EXTRACT = ["--frames", "2", "--size", "32", "--weights", "none", "--workers", "0", "--device", "cpu"]


@pytest.fixture(autouse=True)
def quick_meteor(monkeypatch):
    """METEOR's JVM takes ~15 s to load its tables here; the PTB tokenizer (Java too, 0.3 s) stays real."""
    from pycocoevalcap.meteor import meteor

    class Meteor:
        def compute_score(self, gts, res):
            return 0.5, [0.5] * len(res)

    monkeypatch.setattr(meteor, "Meteor", Meteor)


@pytest.fixture(autouse=True)
def tiny_backbone(monkeypatch):
    """Extraction's reading and writing is under test, not VGG16: a 4-d stand-in network loads at once."""
    from vcap.extract import extractor
    from vcap.extract.backbone import FrameEncoder

    def load(name, weights):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return FrameEncoder(net, (0.5,) * 3, (0.5,) * 3).eval()

    monkeypatch.setattr(extractor, "load_backbone", load)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A checkpoint trained for one epoch on 12-d synthetic features (6 frames)."""
    from vcap.captioner.train import TrainConfig, train

    root = tmp_path_factory.mktemp("model")
    feats, labels = make_synthetic(root, n_videos=8)
    return Path(train(TrainConfig(str(feats), str(labels), str(root / "run"), epochs=1, device="cpu",
                                  **TINY)).best_checkpoint)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def problems(result) -> list[str]:
    """stderr as a terminal shows it, without progress: tqdm bars and the per-epoch report of `vcap train`."""
    shown = (line.split("\r")[-1] for line in result.stderr.split("\n"))
    return [line for line in shown if line.strip() and not re.search(r"\| *\d+/\d+ \[", line)
            and not line.startswith("vcap: epoch ")]


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` (Python's own __pycache__ aside) with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts}


def changed(before: dict, root: Path) -> set[str]:
    after = files(root)
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def assert_one_error(result, *needles, code: int = 2) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Aborted!" not in result.output, result.output
    lines = problems(result)
    assert len(lines) == 1 and lines[0].startswith("vcap: error: "), lines
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert result.exit_code == code, result.output
    return lines[0]


def no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith("tmp")]


def write_labels(path: Path, ids: list[str]) -> Path:
    path.write_text(json.dumps([{"id": vid, "caption": ["a man is running", "the man runs"]} for vid in ids]))
    return path


# ---- 1. output locations that cannot be written --------------------------------------------------------

def fill_disk_after(monkeypatch, writes: int) -> None:
    """From vcap's (writes + 1)-th file on, the disk is full: the temp file is a link to /dev/full, which
    answers every write with ENOSPC as a full disk does, through whichever library writes it."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    real, count = tempfile.mkstemp, itertools.count()

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        if kwargs.get("suffix", "").startswith(".tmp") and next(count) >= writes:
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def make_read_only(monkeypatch, request, folder: Path) -> None:
    """chmod where it binds; as root (where it does not) the OS's answer to writing there, EACCES."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        request.addfinalizer(lambda: folder.chmod(0o755))
        return
    for name in ("mkstemp", "TemporaryFile"):
        real = getattr(tempfile, name)

        def refuse(*args, _real=real, **kwargs):
            if Path(kwargs.get("dir") or ".").resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, refuse)


@pytest.fixture
def videos(make_video, tmp_path) -> Path:
    for i in range(3):
        make_video(f"clip{i}.mp4", frames=6, seed=i)
    return tmp_path / "videos"


@pytest.mark.parametrize("where, reason", [
    ("parent is a file", "is a file, not a folder"),
    ("read-only", "permission denied"),
    ("/sys", "permission denied"),  # refused even to root
])
def test_extract_to_a_folder_it_cannot_write(tmp_path, videos, monkeypatch, request, where, reason):
    (tmp_path / "file.txt").write_text("not a folder")
    out = {"parent is a file": tmp_path / "file.txt" / "feats", "read-only": tmp_path / "ro",
           "/sys": Path(f"/sys/vcap-test-{os.getpid()}/feats")}[where]
    if where == "read-only":
        make_read_only(monkeypatch, request, out)
    before = files(tmp_path)
    assert_one_error(invoke("extract", videos, out, *EXTRACT), out, reason)
    assert not changed(before, tmp_path) and not Path(f"/sys/vcap-test-{os.getpid()}").exists()


def test_extract_meeting_a_full_disk_keeps_finished_files(tmp_path, videos, monkeypatch):
    feats = tmp_path / "feats"
    fill_disk_after(monkeypatch, 2)  # the manifest and the first video's features fit
    before = files(tmp_path)
    line = assert_one_error(invoke("extract", videos, feats, *EXTRACT), feats / "clip1.mp4.npy",
                            f"no space left on the device holding {feats}/")
    assert "free some" in line
    assert sorted(p.name for p in feats.glob("*.npy")) == ["clip0.mp4.npy"]
    assert np.load(feats / "clip0.mp4.npy").shape == (2, 4)
    assert json.loads((feats / "manifest.json").read_text())["features"]["frames"] == 2
    no_temp_files(tmp_path)
    assert {name.split("/")[0] for name in changed(before, tmp_path)} == {"feats"}


@pytest.mark.parametrize("full_from", [0, 2, 5])  # the first file of epoch 1, its third; the first of epoch 2
def test_train_meeting_a_full_disk_keeps_the_last_whole_epoch(tmp_path, monkeypatch, full_from):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    out = tmp_path / "run"
    fill_disk_after(monkeypatch, full_from)  # epoch 1 writes last.pt, history.csv/png, best.pt, config.json
    before = files(tmp_path)
    assert_one_error(invoke("train", feats, labels, "--out", out, *TRAIN), out, "no space left on the device")
    if full_from == 5:
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
        assert len((out / "history.csv").read_text().splitlines()) == 2
    else:
        assert not list(out.iterdir())
    no_temp_files(tmp_path)
    assert {name.split("/")[0] for name in changed(before, tmp_path)} <= {"run"}


@pytest.mark.parametrize("trouble, reason", [
    ("parent is a file", "is a file, not a folder"),
    ("/sys", "permission denied"),
    ("short write on a full disk", "no space left on the device"),  # numpy's "N requested and M written"
])
def test_evaluate_outputs_it_cannot_write(tmp_path, model, monkeypatch, trouble, reason):
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    (tmp_path / "file.txt").write_text("x")
    out = {"parent is a file": tmp_path / "file.txt" / "eval", "/sys": Path("/sys/vcap-test-eval"),
           "short write on a full disk": tmp_path / "eval"}[trouble]
    if trouble.startswith("short write"):
        real_write_text = Path.write_text

        def short_write(self, *args, **kwargs):
            if self.name.startswith(".metrics.json"):
                raise OSError("32768 requested and 17376 written")
            return real_write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", short_write)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0))
    before = files(tmp_path)
    target = out / "metrics.json" if trouble.startswith("short write") else out
    assert_one_error(invoke("evaluate", model, feats, labels, "--out", out), target, reason)
    if trouble.startswith("short write"):  # the three files change together: none of them is there
        assert not {"predictions.txt", "predictions.json", "metrics.json"} & {p.name for p in out.iterdir()}
    no_temp_files(tmp_path)
    assert {name.split("/")[0] for name in changed(before, tmp_path)} <= {"eval"}


# ---- 2. numbers that are not numbers -------------------------------------------------------------------

@pytest.mark.parametrize("value, dtype", [
    (np.nan, np.float32), (np.inf, np.float32), (-np.inf, np.float64), (3e38, np.float32),
    (7e4, np.float32), (-1e300, np.float64), (np.inf, np.float16), (np.nan, np.float16),
])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_features_that_are_not_finite_numbers_are_refused_by_name(tmp_path, model, value, dtype, command):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    bad = feats / "vid0_5.avi.npy"
    x = np.load(bad).astype(dtype)
    x[3, 7] = value
    np.save(bad, x)
    before = files(tmp_path)
    args = ["train", feats, labels, "--out", tmp_path / "run", *TRAIN] if command == "train" else \
        ["evaluate", model, feats, labels, "--out", tmp_path / "eval"]
    assert_one_error(invoke(*args), bad, "1 of its 72 values are NaN, infinite or beyond +-65504")
    assert not changed(before, tmp_path) and not (tmp_path / "run").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("bad, epoch", [(float("nan"), 2), (float("inf"), 2), (float("nan"), 1)])
def test_a_loss_that_stops_being_a_number_stops_training_keeping_the_last_good_epoch(
        tmp_path, monkeypatch, bad, epoch):
    from vcap.captioner import train as train_module

    feats, labels = make_synthetic(tmp_path, n_videos=8)  # 6 training videos: one batch an epoch
    out = tmp_path / "run"
    real, steps = train_module.caption_loss, itertools.count(1)

    def diverging(*args, **kwargs):
        loss = real(*args, **kwargs)
        return loss * bad if torch.is_grad_enabled() and next(steps) >= epoch else loss

    monkeypatch.setattr(train_module, "caption_loss", diverging)
    line = assert_one_error(invoke("train", feats, labels, "--out", out, *TRAIN, "--epochs", "3"),
                            f"epoch {epoch}: the loss is no longer a number", "--lr")
    if epoch == 2:
        assert f"{out / 'last.pt'} keeps epoch 1" in line
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
        assert len((out / "history.csv").read_text().splitlines()) == 2
    else:
        assert "no checkpoint was written" in line and not list(out.iterdir())
    no_temp_files(tmp_path)


# ---- 3. ids that point outside FEATS -------------------------------------------------------------------

@pytest.mark.parametrize("vid, reason", [
    ("../outside", "holds a path separator"),
    ("OUTSIDE_ABSOLUTE", "holds a path separator"),
    ("sub/../vid0_1.avi", "holds a path separator"),
    ("..", "is a folder name"),
    (".", "is a folder name"),
    ("..\\outside", "holds a path separator"),
    ("vid\x00.avi", "holds a control character"),
    ("two\nlines.avi", "holds a control character"),
    ("x" * 260, "is too long for a file name"),
])
def test_ids_must_be_file_names_inside_feats(tmp_path, vid, reason):
    feats, _ = make_synthetic(tmp_path, n_videos=6)
    np.save(tmp_path / "outside.npy", np.zeros((6, 12), np.float32))  # what "../outside" would have read
    vid = vid.replace("OUTSIDE_ABSOLUTE", str(tmp_path / "outside"))
    labels = write_labels(tmp_path / "labels.json", [f"vid0_{i}.avi" for i in range(5)] + [vid])
    before = files(tmp_path)
    assert_one_error(invoke("train", feats, labels, "--out", tmp_path / "run", *TRAIN),
                     f"{labels}: entry 5: id {vid!r}"[:60], reason)
    assert not changed(before, tmp_path) and not (tmp_path / "run").exists()


# ---- 4. checkpoints that disagree with themselves ------------------------------------------------------

def _set(path: str, value):
    def change(ckpt):
        *parents, last = path.split(".", 1) if path.startswith("state_dict.") else path.split(".")
        target = ckpt
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    return change


@pytest.mark.parametrize("change, reason", [
    (_set("vocab", lambda v: v[:-2]), "its vocabulary has"),
    (_set("vocab", lambda v: v + ["extra"]), "its vocabulary has"),
    (_set("vocab", lambda v: v[:1] + v[:1] + v[2:]), "its vocabulary is not"),
    (_set("model_config.hidden", 64), "weight proj.weight is (32, 12) but model_config makes it (64, 12)"),
    (_set("model_config.embed_dim", 17), "but model_config makes it"),
    (_set("model_config.hidden", "32"), "model_config hidden is '32'"),
    (_set("model_config.hidden", 10 ** 9), "model_config hidden is 1000000000: must be a whole number >= 1 and <="),
    (_set("model_config.frame_stride", True), "model_config frame_stride is True"),
    (_set("model_config.dropout", 2.0), "model_config dropout is 2.0"),
    (_set("model_config.dropout", float("nan")), "model_config dropout is nan"),
    (_set("model_config.layers", 2), "model_config has the keys"),
    (_set("model_config.frame_stride", KeyError), "model_config has the keys"),
    (_set("model", "s2vt"), "missing for the s2vt model"),
    (_set("feature_dim", 4096), "feature_dim is 4096 but model_config says 12"),
    (_set("frames", 0), "frames is 0"),
    (_set("vocab", KeyError), "'vocab' is missing or not a list"),
    (_set("state_dict", [1, 2]), "'state_dict' is missing or not a dict"),
    (_set("state_dict.out.bias", KeyError), "weights out.bias missing"),
    (_set("state_dict.out.bias", [0.0]), "weight out.bias is not a float tensor"),
    (_set("state_dict.out.bias", lambda t: t.long()), "weight out.bias is not a float tensor"),
    (_set("state_dict.out.bias", lambda t: t * float("nan")), "weight out.bias holds NaN"),
    (_set("feature_config", "vgg16"), "feature_config is a str, not a dict or None"),
])
@pytest.mark.parametrize("command", ["evaluate", "caption"])
def test_checkpoints_that_disagree_with_themselves_are_one_line(tmp_path, model, change, reason, command):
    ckpt = torch.load(model, weights_only=True)
    change(ckpt)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"never decoded: the model is read first")
    before = files(tmp_path)
    args = ["evaluate", bad, feats, labels, "--out", tmp_path / "eval"] if command == "evaluate" else \
        ["caption", video, "--model", bad, "--device", "cpu"]
    assert_one_error(invoke(*args), f"{bad}: an inconsistent checkpoint: ", reason)
    assert not changed(before, tmp_path)


@pytest.mark.parametrize("settings", [
    {"backbone": "vgg16", "frames": 6}, {"weights": 3},
    {"backbone": "vgg16", "weights": "none", "feature_dim": 4, "frames": "6", "size": 32},
])
def test_caption_names_feature_settings_it_cannot_reproduce(tmp_path, model, settings):
    ckpt = torch.load(model, weights_only=True)
    ckpt["feature_config"] = settings
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    (tmp_path / "clip.mp4").write_bytes(b"never decoded")
    assert_one_error(invoke("caption", tmp_path / "clip.mp4", "--model", bad, "--device", "cpu"),
                     bad, "lacks how the features were made")


# ---- 5. failure that looks like success ----------------------------------------------------------------

def test_run_exits_1_when_videos_failed_after_doing_the_rest(tmp_path, make_video):
    ids = []
    for i in range(6):
        ids.append(make_video(f"clip{i}.mp4", frames=6, seed=i).name)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 and nothing else")
    labels = write_labels(tmp_path / "labels.json", ids + ["broken.mp4"])
    out = tmp_path / "out"
    result = invoke("run", tmp_path / "videos", labels, "--out", out, *EXTRACT, "--hidden", "16", "--epochs", "1",
                    "--min-count", "1")
    assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.output
    assert "Traceback" not in result.output
    lines = problems(result)
    assert any("broken.mp4" in line for line in lines), lines
    assert lines[-1].startswith("vcap: 1 of the videos could not be extracted") and str(out) in lines[-1]
    assert (out / "model" / "best.pt").is_file() and (out / "eval" / "metrics.json").is_file()


@pytest.mark.parametrize("odd_at", [0, 3, 5])
@pytest.mark.parametrize("odd_shape", [(5, 12), (6, 13), (7, 12)])
def test_a_shape_mismatch_names_the_odd_file_not_the_first(tmp_path, odd_at, odd_shape):
    feats, labels = make_synthetic(tmp_path, n_videos=6)
    odd = feats / f"vid0_{odd_at}.avi.npy"
    np.save(odd, np.zeros(odd_shape, np.float32))
    line = assert_one_error(invoke("train", feats, labels, "--out", tmp_path / "run", *TRAIN),
                            f"{odd}: feature shape mismatch: {odd_shape}, but 5 of the 6 feature files are (6, 12)")
    assert line.count(".npy") == 2  # the odd one, and one of the others by name


# ---- 6. vcap's own reason first, never a library's text cut mid-word -----------------------------------

class Payload:
    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


MARKER = Path(tempfile.gettempdir()) / f"vcap-payload-ran-{os.getpid()}"


def _npy(kind: str, path: Path) -> None:
    if kind == "text named .npy":
        path.write_text("0.1 0.2 0.3\n0.4 0.5 0.6\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled objects":
        np.save(path, np.array([{"a": 1}, Payload()], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, np.zeros((6, 12), np.float32))
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "strings":
        np.save(path, np.array([["a"] * 12] * 6))
    elif kind == "one dimension":
        np.save(path, np.zeros(12, np.float32))
    elif kind == "no frames":
        np.save(path, np.zeros((0, 12), np.float32))


@pytest.mark.parametrize("kind, reason", [
    ("text named .npy", "not a .npy feature file (no NumPy header)"),
    ("empty", "not a .npy feature file (empty)"),
    ("pickled objects", "cannot read it as a feature array"),
    ("truncated", "cannot read it as a feature array"),
    ("strings", "features must be numbers"),
    ("one dimension", "features must be (frames, dim)"),
    ("no frames", "features must be (frames, dim)"),
])
def test_broken_feature_files_say_what_is_wrong_first(tmp_path, kind, reason):
    feats, labels = make_synthetic(tmp_path, n_videos=6)
    _npy(kind, feats / "vid0_2.avi.npy")
    line = assert_one_error(invoke("train", feats, labels, "--out", tmp_path / "run", *TRAIN),
                            f"{feats / 'vid0_2.avi.npy'}: {reason}")
    assert "allow_pickle" not in line and not MARKER.exists()


@pytest.mark.parametrize("kind, reason", [
    ("pickled code", "holds Python objects (posix.system) beyond tensors and plain data"),
    ("pickled class", "holds Python objects (test_bad_input.Payload) beyond tensors"),
    ("zeros", "not a vcap checkpoint (torch.load: "),
    ("plain pickle", "not a vcap checkpoint (torch.load: "),
    ("empty", "not a vcap checkpoint (empty file)"),
    ("a list", "not a vcap checkpoint (no 'vcap-captioner' marker"),
])
def test_foreign_checkpoints_say_why_in_vcaps_words(tmp_path, kind, reason):
    bad = tmp_path / "model.pt"
    if kind == "pickled code":
        torch.save({"format": "vcap-captioner", "x": Payload()}, bad)
    elif kind == "pickled class":
        torch.save({"format": "vcap-captioner", "x": Payload}, bad)
    elif kind == "zeros":
        bad.write_bytes(bytes(5000))
    elif kind == "plain pickle":
        bad.write_bytes(pickle.dumps({"format": "vcap-captioner"}))
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        torch.save([1, 2, 3], bad)
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    line = assert_one_error(invoke("evaluate", bad, feats, labels, "--out", tmp_path / "eval"), bad, reason)
    assert "Weights only load failed" not in line and not MARKER.exists()
    if " ..." in line:  # a shortened library text ends on a whole word of it
        with pytest.raises(Exception) as torch_says:
            torch.load(bad, weights_only=True)
        assert line.split(" ...")[0].split()[-1] in str(torch_says.value).split()
    assert len(line) < 400 and not (tmp_path / "eval").exists()


# ---- 7. tools vcap calls must not write where they should not ------------------------------------------

@pytest.mark.parametrize("setting", ["its package folder is read-only", "java missing"])
def test_evaluate_writes_nothing_into_pycocoevalcap(tmp_path, model, monkeypatch, setting):
    from pycocoevalcap.tokenizer import ptbtokenizer

    package = Path(ptbtokenizer.__file__).parents[1]
    if setting == "java missing":
        (tmp_path / "bin").mkdir()
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    elif shutil.which("java") is None:
        pytest.skip("no java here")
    else:  # as a system-wide install is: whatever tries to write a file there is refused
        real = tempfile.NamedTemporaryFile

        def refuse(*args, **kwargs):
            if kwargs.get("dir") and Path(kwargs["dir"]).resolve().is_relative_to(package.resolve()):
                raise PermissionError(errno.EACCES, "Permission denied", kwargs["dir"])
            return real(*args, **kwargs)

        monkeypatch.setattr(ptbtokenizer.tempfile, "NamedTemporaryFile", refuse)
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    before = files(package)
    result = invoke("evaluate", model, feats, labels, "--out", tmp_path / "eval")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "CIDEr" in metrics and ("METEOR" in metrics) == (setting != "java missing")
    assert problems(result) == (["vcap: warning: java not found on PATH; skipping METEOR and the PTB tokenizer"]
                                if setting == "java missing" else [])
    assert not changed(before, package)
