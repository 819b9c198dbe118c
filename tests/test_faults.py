"""Faults at the worst moment: a signal during a run folder's write, a full disk, two processes on one folder,
inputs at the limits of a parser or a number, data that leaves nothing to learn. Each ends in one line, its
exit code, and a folder that holds exactly one run."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vcap.cli import main
from captioner_fixtures import make_synthetic

SMALL = ["--hidden", "32", "--embed-dim", "16", "--dropout", "0.1", "--lr", "0.01", "--batch-size", "16",
         "--min-count", "1"]


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def lines(result) -> list[str]:
    """stderr without the per-epoch report and progress bars."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("vcap: epoch ")]


def run_files(out: Path) -> list[str]:
    """The files of OUT beside the lock of a process that holds it."""
    return sorted(p.name for p in out.iterdir() if p.name != ".vcap.lock")


def assert_one_run(out: Path, hidden: int, epochs: int) -> None:
    """Every file of OUT belongs to one run: its settings, its epochs, no temp file."""
    assert run_files(out) == ["best.pt", "config.json", "history.csv", "history.png", "last.pt"]
    assert json.loads((out / "config.json").read_text())["hidden"] == hidden
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert last["model_config"]["hidden"] == best["model_config"]["hidden"] == hidden
    assert last["epoch"] == epochs and len(last["history"]) == epochs
    assert len((out / "history.csv").read_text().splitlines()) == epochs + 1


@pytest.fixture
def old_run(tmp_path):
    """A whole 1-epoch run with --hidden 32 in tmp_path/run."""
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    out = tmp_path / "run"
    assert invoke("train", feats, labels, "--out", out, "--epochs", "1", *SMALL).exit_code == 0
    return feats, labels, out


def test_ctrl_c_during_the_first_write_of_overwrite_leaves_one_run_and_advice_that_works(old_run, monkeypatch):
    import vcap.captioner.train as train_module

    feats, labels, out = old_run
    real = train_module.write_checkpoint

    def interrupted_write(path, checkpoint):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the folder changes
        real(path, checkpoint)

    monkeypatch.setattr(train_module, "write_checkpoint", interrupted_write)
    args = ["train", feats, labels, "--out", out, "--overwrite", "--epochs", "3", *SMALL[:-2], "--hidden", "24"]
    result = invoke(*args)
    assert result.exit_code == 130
    [line] = lines(result)
    assert line.startswith("vcap: interrupted; last.pt holds the last finished epoch; continue with: vcap train")
    assert_one_run(out, hidden=24, epochs=1)
    monkeypatch.setattr(train_module, "write_checkpoint", real)
    advice = line.split("continue with: vcap ")[1].split()
    assert "--overwrite" not in advice and "--resume" in advice
    assert invoke(*advice).exit_code == 0
    assert_one_run(out, hidden=24, epochs=3)


def test_ctrl_c_in_the_first_epoch_leaves_the_old_run_and_advises_the_same_command(old_run, monkeypatch):
    import vcap.captioner.train as train_module

    feats, labels, out = old_run

    def interrupted_epoch(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_epoch", interrupted_epoch)
    args = [str(a) for a in ["train", feats, labels, "--out", out, "--overwrite", "--epochs", "2", *SMALL]]
    result = invoke(*args)
    assert result.exit_code == 130
    [line] = lines(result)
    assert line == f"vcap: interrupted; no epoch of this run was written; start it again with: vcap {' '.join(args)}"
    assert_one_run(out, hidden=32, epochs=1)


def test_a_full_disk_while_a_checkpoint_is_written_is_one_line_and_leaves_the_old_run(old_run, monkeypatch):
    feats, labels, out = old_run
    real_save = torch.save

    class FullDisk:  # what the OS does when the disk fills: a write refused with ENOSPC after a few bytes
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def flush(self):
            self.f.flush()

    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, FullDisk(f)))
    result = invoke("train", feats, labels, "--out", out, "--overwrite", "--epochs", "2", *SMALL[:-2], "--hidden", "24")
    assert result.exit_code == 2
    [line] = lines(result)
    assert line.startswith("vcap: error: ") and "no space left on the device" in line
    monkeypatch.setattr(torch, "save", real_save)
    assert_one_run(out, hidden=32, epochs=1)


def test_temp_files_a_killed_run_left_are_removed_by_the_next_run_of_the_folder(old_run):
    feats, labels, out = old_run
    stale = [out / ".last.pt.k1llx9_q.tmp.pt", out / ".history.csv.ab12cd34.tmp.csv"]
    theirs = out / ".last.pt.notes"  # not vcap's naming: left alone
    for path in (*stale, theirs):
        path.write_bytes(b"half")
    assert invoke("train", feats, labels, "--out", out, "--resume", "--epochs", "2").exit_code == 0
    assert not any(p.exists() for p in stale) and theirs.exists()
    theirs.unlink()
    assert_one_run(out, hidden=32, epochs=2)


@pytest.mark.slow
def test_sigterm_during_the_write_ends_with_one_line_and_one_run(old_run, tmp_path):
    """A real process, killed while its checkpoint write is paused at a marker."""
    feats, labels, out = old_run
    script = textwrap.dedent(f"""
        import sys, time
        import vcap.captioner.train as train_module
        from vcap.cli import main
        real = train_module.write_checkpoint
        def paused(path, checkpoint):
            print("WRITING", flush=True)
            time.sleep(2)
            real(path, checkpoint)
        train_module.write_checkpoint = paused
        sys.argv = ["vcap"] + {[str(a) for a in ["train", feats, labels, "--out", out, "--overwrite", "--epochs",
                                                  "3", *SMALL[:-2], "--hidden", "24"]]!r}
        main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "WRITING"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    shown = [line for line in stderr.splitlines() if line.strip() and not line.startswith("vcap: epoch ")]
    assert len(shown) == 1 and shown[0].startswith("vcap: terminated; last.pt holds the last finished epoch")
    assert_one_run(out, hidden=24, epochs=1)


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding `folder` as a writer would, until killed."""
    code = (f"import time; from vcap.files import hold_folder\nwith hold_folder({str(folder)!r}):\n"
            f"    print('HELD', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def test_a_second_training_run_into_one_folder_is_refused_naming_the_holder(old_run):
    feats, labels, out = old_run
    holder = _holder(out)
    try:
        result = invoke("train", feats, labels, "--out", out, "--overwrite", "--epochs", "1", *SMALL[:-2],
                        "--hidden", "24")
        assert result.exit_code == 2
        [line] = lines(result)
        assert line == (f"vcap: error: {out}: in use by another vcap process (pid {holder.pid}); wait for it "
                        f"to end, or choose another folder")
        assert_one_run(out, hidden=32, epochs=1)
    finally:
        holder.kill()
        holder.wait()
    # the lock of a process that died is taken over
    assert (out / ".vcap.lock").read_text() == str(holder.pid)
    assert invoke("train", feats, labels, "--out", out, "--resume", "--epochs", "2").exit_code == 0
    assert_one_run(out, hidden=32, epochs=2)
    assert not (out / ".vcap.lock").exists()


def test_an_evaluation_into_a_folder_in_use_is_refused(old_run, tmp_path):
    feats, labels, out = old_run
    (tmp_path / "eval").mkdir()
    holder = _holder(tmp_path / "eval")
    try:
        result = invoke("evaluate", out / "best.pt", feats, labels, "--out", tmp_path / "eval")
        assert result.exit_code == 2 and f"(pid {holder.pid})" in lines(result)[-1]
        assert run_files(tmp_path / "eval") == []
    finally:
        holder.kill()
        holder.wait()


def test_a_resumed_run_checks_the_training_state_of_last_pt(old_run):
    feats, labels, out = old_run
    last = torch.load(out / "last.pt", weights_only=True)
    del last["optimizer"]
    torch.save(last, out / "last.pt")
    result = invoke("train", feats, labels, "--out", out, "--resume", "--epochs", "2")
    assert result.exit_code == 2
    assert lines(result) == [f"vcap: error: {out / 'last.pt'}: cannot be resumed: its optimizer or random-number "
                             f"state is missing; train anew with --overwrite"]


def test_a_resumed_extraction_makes_again_the_features_files_that_are_not_whole(tmp_path, make_video):
    from vcap.extract.config import ExtractConfig
    from vcap.extract.extractor import extract_folder

    for i in range(3):
        make_video(f"v{i}.mp4", seed=i)
    out = tmp_path / "feats"
    config = ExtractConfig(frames=2, size=32, weights="none", device="cpu", workers=0)
    extract_folder(tmp_path / "videos", out, config)
    whole = (out / "v0.mp4.npy").read_bytes()
    (out / "v1.mp4.npy").write_bytes(whole[:-8])  # cut short
    (out / "v2.mp4.npy").write_bytes(b"\x93NUMPY garbage")
    summary = extract_folder(tmp_path / "videos", out, config)
    assert (summary.done, summary.skipped) == (2, 1)
    assert {np.load(out / f"v{i}.mp4.npy").shape for i in range(3)} == {np.load(out / "v0.mp4.npy").shape}


def test_every_id_vcap_accepts_reads_back_from_each_file_it_writes(tmp_path):
    """predictions.txt is "id,caption" per line: a caption holds no comma (the tokenizer drops punctuation), so
    the last comma ends the id; an id that would break a line is refused where labels are read."""
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    data = json.loads(labels.read_text())
    odd = ["a, b.avi", "लाल ü.avi", "x\u200dy \"q\".avi", ",,.avi"]
    for item, new in zip(data, odd):
        (feats / f"{item['id']}.npy").rename(feats / f"{new}.npy")
        item["id"] = new
    labels.write_text(json.dumps(data))
    out = tmp_path / "run"
    assert invoke("train", feats, labels, "--out", out, "--epochs", "1", "--val-fraction", "0.5", *SMALL).exit_code == 0
    assert invoke("evaluate", out / "best.pt", feats, labels, "--out", tmp_path / "eval").exit_code == 0
    text = (tmp_path / "eval" / "predictions.txt").read_text(encoding="utf-8")
    from_txt = dict(line.rsplit(",", 1) for line in text.split("\n") if line)
    assert from_txt == json.loads((tmp_path / "eval" / "predictions.json").read_text(encoding="utf-8"))
    assert set(from_txt) == {item["id"] for item in data}
    for breaking in ("two\u2028lines.avi", "nel\x85.avi", "del\x7f.avi"):
        data[0]["id"] = breaking
        labels.write_text(json.dumps(data))
        result = invoke("train", feats, labels, "--out", tmp_path / "other", *SMALL)
        assert result.exit_code == 2 and "holds a control character or line break" in lines(result)[0]


def test_labels_that_exhaust_the_json_parser_are_one_line(tmp_path):
    feats, _ = make_synthetic(tmp_path, n_videos=4)
    labels = tmp_path / "deep.json"
    labels.write_text("[" * 100_000 + "]" * 100_000)  # valid JSON, deeper than Python's recursion goes
    result = invoke("train", feats, labels, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert lines(result) == [f"vcap: error: {labels}: nested too deeply to be a labels file"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, option, value, said", [
    ("train", "--seed", "99999999999999999999", "99999999999999999999: must be a whole number >= 0 and <= 2147483647"),
    ("train", "--batch-size", str(2**64), f"{2**64}: must be a whole number >= 1 and <= 2147483647"),
    ("train", "--grad-clip", "1e300", "1e+300: must be a finite number >= 0 and <= 1e+09"),
    ("caption", "--every", "1e300", "1e+300: must be a finite number >= 0.1 and <= 1e+09"),
])
def test_an_option_past_what_its_conversion_holds_is_one_line(tmp_path, make_video, command, option, value, said):
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    args = {"train": [feats, labels, "--out", tmp_path / "run"],
            "caption": [make_video(), "--model", tmp_path / "best.pt"]}[command]
    result = invoke(command, *args, option, value)
    assert result.exit_code == 2
    assert lines(result) == [f"vcap: error: {option} {said}"]
