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
    import vcap.captioner.runfolder as runfolder

    feats, labels, out = old_run
    real = runfolder.write_checkpoint

    def interrupted_write(path, checkpoint):
        signal.raise_signal(signal.SIGINT)  # arrives while the folder changes (in this thread, not a torch one)
        real(path, checkpoint)

    monkeypatch.setattr(runfolder, "write_checkpoint", interrupted_write)
    args = ["train", feats, labels, "--out", out, "--overwrite", "--epochs", "3", *SMALL[:-2], "--hidden", "24"]
    result = invoke(*args)
    assert result.exit_code == 130
    [line] = lines(result)
    assert line.startswith("vcap: interrupted; last.pt holds the last finished epoch; continue with: vcap train")
    assert_one_run(out, hidden=24, epochs=1)
    monkeypatch.setattr(runfolder, "write_checkpoint", real)
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
        import vcap.captioner.runfolder as runfolder
        from vcap.cli import main
        real = runfolder.write_checkpoint
        def paused(path, checkpoint):
            print("WRITING", flush=True)
            time.sleep(2)
            real(path, checkpoint)
        runfolder.write_checkpoint = paused
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
    from vcap.extract.folder import extract_folder

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


@pytest.mark.parametrize("captions, min_count, reason", [
    (["...", "!!  ?", "  "], "1", "its training captions hold no words (only punctuation, symbols or spaces)"),
    (None, "1000", "--min-count 1000 is above every word's count (the most frequent, 'is', appears 6 times)"),
])
def test_captions_that_leave_no_word_to_learn_are_an_error_naming_the_reason(tmp_path, captions, min_count, reason):
    feats, labels = make_synthetic(tmp_path, n_videos=4)
    if captions:
        labels.write_text(json.dumps([{**item, "caption": captions} for item in json.loads(labels.read_text())]))
    result = invoke("train", feats, labels, "--out", tmp_path / "run", "--min-count", min_count)
    assert result.exit_code == 2
    assert lines(result) == [f"vcap: error: {labels}: {reason}; nothing to learn"]
    assert not (tmp_path / "run").exists()


def test_the_tokenizer_keeps_words_of_every_script_whole():
    from vcap.captioner.vocab import tokenize

    # vowel signs are combining marks: kept
    assert tokenize("लाल गेंद।") == ["लाल", "गेंद"]
    assert tokenize("A café, naïve man_1 🙂 $5!") == ["a", "café", "naïve", "man_1", "5"]
    assert tokenize("A man, running.") == ["a", "man", "running"]
    assert tokenize("e\u0301te\u0301 🙂+") == ["e\u0301te\u0301"]  # accents written apart stay; emoji and + go


def test_empty_captions_from_a_wide_beam_are_warned_about(monkeypatch, capsys):
    import vcap.captioner.decode as decode_module
    from vcap.captioner.config import DecodeConfig
    from vcap.captioner.vocab import EOS, SPECIALS, Vocab

    monkeypatch.setattr(decode_module, "decode", lambda model, feats, *args: [([EOS], 0.0)] * len(feats))
    monkeypatch.setattr(decode_module, "_warned", set())
    model = torch.nn.Linear(1, 1)
    captions = decode_module.caption_features(model, Vocab(SPECIALS + ["dog"]), torch.zeros(3, 2, 1),
                                              DecodeConfig(beam=50), None)
    assert captions == ["", "", ""]
    assert capsys.readouterr().err == ("vcap: warning: 3 of 3 captions came out empty: with --beam 50 a hypothesis "
                                       "that ends at once can outscore every caption; try a smaller --beam or a "
                                       "larger --length-alpha\n")


def test_best_pt_is_never_an_untrained_epoch_and_the_rule_is_said(tmp_path, monkeypatch):
    from vcap.captioner.runfolder import best_epoch

    history = [{"epoch": e, "val_loss": loss, "val_bleu1": 0.0} for e, loss in enumerate([1.0, 2.0, 3.0, 2.5], 1)]
    assert best_epoch(history, "loss", chooses=True, epochs=4) == 4  # not epoch 1's lowest loss
    assert best_epoch(history, "loss", chooses=False, epochs=4) == 4
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    result = invoke("train", feats, labels, "--out", tmp_path / "run", "--epochs", "2", "--val-fraction", "0.25",
                    *SMALL)
    assert result.exit_code == 0
    assert result.stdout.startswith("best.pt: the last epoch: 2 held-out videos are too few to choose by (fewer "
                                    "than 5), epoch 2: ")
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == 2


def test_val_fraction_0_trains_on_every_video_and_best_pt_is_the_last_epoch(tmp_path):
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    out = tmp_path / "run"
    result = invoke("train", feats, labels, "--out", out, "--epochs", "2", "--val-fraction", "0", *SMALL)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"best.pt: the last epoch: no videos are held out (--val-fraction 0), epoch 2: "
                             f"{out}/best.pt\n")
    assert json.loads((out / "config.json").read_text())["train_videos"] == 8
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 2


def test_degenerate_held_out_captions_are_warned_about_at_the_end_of_training(tmp_path, monkeypatch):
    from vcap.captioner import train as train_module
    from vcap.captioner.metrics import degenerate

    assert degenerate(["a man is cooking", "a dog runs"]) is None
    assert degenerate(["a a", "a a", "a a"]) == "all get the caption 'a a'"
    assert degenerate(["a the", "is a"]) == "they hold only stop words, e.g. 'a the'"
    monkeypatch.setattr(train_module, "caption_in_batches",
                        lambda model, vocab, feats_of, items, *args: [(list(items), ["a a"] * len(items))])
    feats, labels = make_synthetic(tmp_path, n_videos=8)
    result = invoke("train", feats, labels, "--out", tmp_path / "run", "--epochs", "1", "--val-fraction", "0.25",
                    *SMALL)
    assert result.exit_code == 0
    assert lines(result) == [f"vcap: warning: {tmp_path / 'run' / 'best.pt'}: its captions of the 2 held-out videos "
                             f"are degenerate (all get the caption 'a a'); train longer or on more videos"]


def test_ctrl_c_while_vcap_run_extracts_advises_the_command_that_works(tmp_path, make_video, monkeypatch):
    import vcap.pipeline.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "extract_labelled", interrupted)
    video = make_video("v0.mp4")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"id": "v0.mp4", "caption": ["a dog runs"]}]))
    args = [str(a) for a in ["run", video.parent, labels, "--out", tmp_path / "out"]]
    result = invoke(*args)
    assert result.exit_code == 130
    assert lines(result) == [f"vcap: interrupted; finished features are kept; continue with: vcap {' '.join(args)}"]
