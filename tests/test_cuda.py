"""The CUDA paths: autocast, the fp16 grad scaler, pinned overlapped decode, NCCL. Skipped without a GPU;
run them wherever PyTorch sees one (`python -m pytest -q tests/test_cuda.py`)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vcap import cli
from vcap.captioner.checkpoint import load_model
from vcap.captioner.train import TrainConfig, train
from captioner_fixtures import TINY, make_synthetic
from vcap.extract.backbone import load_backbone
from vcap.extract.extractor import ExtractConfig, FeatureExtractor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

SMALL = dict(frames=4, size=64, weights="none")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_features_match_the_cpu_with_overlapped_decode(make_video, precision):
    videos = [make_video(f"v{i}.mp4", frames=10 + i, seed=i) for i in range(3)]
    encoder = load_backbone("vgg16", "none")
    on_cpu = FeatureExtractor(ExtractConfig(**SMALL, device="cpu", precision="fp32", workers=0), encoder=encoder)
    expected = {path: feats for path, feats, _ in on_cpu.features(videos)}
    on_gpu = FeatureExtractor(ExtractConfig(**SMALL, device="cuda", precision=precision, workers=2), encoder=encoder)
    assert on_gpu.device.type == "cuda"
    got = list(on_gpu.features(videos))
    assert [path for path, _, _ in got] == videos
    for path, feats, error in got:
        assert error is None and feats.dtype == np.float32 and feats.shape == (4, 4096)
        floor = 0.999 if precision == "fp32" else 0.99  # cuDNN may run fp32 convolutions in TF32
        assert cosines(feats, expected[path]).min() > floor


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_the_gpu_learns_and_loads_on_the_cpu(tmp_path, precision):
    feats, labels = make_synthetic(tmp_path, n_videos=48, seed=0)
    summary = train(TrainConfig(str(feats), str(labels), str(tmp_path / "model"), epochs=8, val_fraction=0.25,
                                device="cuda", precision=precision, teacher_forcing="inverse-sigmoid:50", **TINY))
    assert summary.best_val_bleu1 > 0.9
    model, _, _ = load_model(tmp_path / "model" / "best.pt", "cpu")
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


def test_run_and_caption_on_the_gpu(tmp_path, make_video):
    labels = []
    for kind, colour in enumerate(["red", "green", "blue"]):
        for clip in range(3):
            name = f"kind{kind}_{clip}.mp4"
            make_video(name, frames=12, seed=kind * 7 + 1)
            labels.append({"id": name, "caption": [f"a {colour} square moves right"]})
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    flags = ["--frames", "4", "--size", "64", "--weights", "none", "--device", "cuda"]
    out = tmp_path / "run"
    ran = CliRunner().invoke(cli.main, ["run", str(tmp_path / "videos"), str(tmp_path / "labels.json"), "--out",
                                        str(out), *flags, "--hidden", "32", "--epochs", "3", "--min-count", "1"])
    assert ran.exit_code == 0, ran.output
    video = tmp_path / "videos" / "kind0_0.mp4"
    captioned = CliRunner().invoke(cli.main, ["caption", str(video), "--model", str(out / "model" / "best.pt"),
                                              "--device", "cuda"])
    assert captioned.exit_code == 0, captioned.output
    assert captioned.stdout.startswith(f"{video}: ") and len(captioned.stdout.split(": ", 1)[1].split()) >= 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs two GPUs")
def test_two_gpus_train_under_torchrun_with_nccl(tmp_path):
    feats, labels = make_synthetic(tmp_path, n_videos=48, seed=0)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vcap", "train", str(feats), str(labels), "--out", str(tmp_path / "model"),
               "--hidden", "32", "--embed-dim", "16", "--lr", "0.01", "--min-count", "1", "--epochs", "8",
               "--batch-size", "16", "--teacher-forcing", "inverse-sigmoid:50", "--val-fraction", "0.25",
               "--device", "cuda"]  # under torchrun, cuda means each rank's own GPU
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "model" / "history.csv").open()))
    assert len(rows) == 8 and max(float(r["val_bleu1"]) for r in rows) > 0.9
