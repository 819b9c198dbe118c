"""`vcap extract`: the fc7 cut, weights loading, batching, the cache folder, resume and bad input."""
from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from vcap.cli import main
from vcap.extract.backbone import load_backbone
from vcap.extract.config import COMPILE_MIN_FRAMES
from vcap.captioner.data import check_features
from vcap.extract.config import ExtractConfig
from vcap.extract.extractor import FeatureExtractor
from vcap.extract.folder import extract_folder, find_videos
from vcap.errors import VcapError

SMALL = dict(frames=4, size=64, weights="none", device="cpu", workers=0)


@pytest.fixture(scope="module")
def random_vgg():
    return load_backbone("vgg16", "none")


def test_fc7_equals_torchvision_vgg16_through_classifier_up_to_fc7_relu(random_vgg):
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    ours = load_backbone("vgg16", "none")
    fc7 = {k: v for k, v in vgg.state_dict().items() if not k.startswith("classifier.6")}
    ours.net.load_state_dict(fc7, strict=False)
    x = frames.permute(0, 3, 1, 2).float() / 255
    x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = vgg.classifier[:5](torch.flatten(vgg.avgpool(vgg.features(x)), 1))
        got = ours(frames)
    assert got.shape == (2, 4096)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got >= 0).all()  # after the ReLU


def test_random_weights_are_the_same_network_every_time(random_vgg):
    again = load_backbone("vgg16", "none")
    assert all(torch.equal(a, b) for a, b in zip(random_vgg.state_dict().values(), again.state_dict().values()))


@pytest.mark.slow
def test_a_state_dict_file_gives_the_same_features_as_the_model_it_came_from(tmp_path, make_video, random_vgg):
    torch.manual_seed(0)
    full = torchvision.models.vgg16(weights=None)
    full.features.load_state_dict(random_vgg.net.features.state_dict())
    full.classifier[:5].load_state_dict(random_vgg.net.fc67.state_dict())
    weights = tmp_path / "vgg16.pth"
    torch.save(full.state_dict(), weights)
    video = make_video(frames=12)
    in_memory = FeatureExtractor(ExtractConfig(**{**SMALL, "precision": "fp32"}), encoder=random_vgg)
    from_file = FeatureExtractor(ExtractConfig(**{**SMALL, "precision": "fp32", "weights": str(weights)}))
    [(_, a, _)] = list(in_memory.features([video]))
    [(_, b, _)] = list(from_file.features([video]))
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_bad_weights_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    for path in (junk, other, tmp_path / "missing.pth"):
        with pytest.raises(VcapError, match=str(path.name)):
            load_backbone("vgg16", str(path))


def test_offline_imagenet_weights_say_how_to_get_them(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(VcapError, match="--weights /path/to/vgg16-397923af.pth"):
        load_backbone("vgg16", "imagenet")


def test_batching_across_videos_does_not_change_features(make_video, random_vgg):
    videos = [make_video(f"v{i}.mp4", frames=10 + i, seed=i) for i in range(3)]
    config = dict(SMALL, precision="fp32")
    whole = FeatureExtractor(ExtractConfig(**config, frame_batch=64), encoder=random_vgg)
    one = {p: f for p, f, _ in whole.features(videos)}
    many = FeatureExtractor(ExtractConfig(**config, frame_batch=3), encoder=random_vgg).features(videos)
    for path, feats, error in many:
        assert error is None and feats.shape == (4, 4096)
        np.testing.assert_allclose(feats, one[path], rtol=1e-4, atol=1e-5)


def test_decoder_choice_does_not_change_features(make_video, random_vgg):
    pytest.importorskip("decord")
    video = make_video("x.avi", frames=30, fourcc="XVID")
    extractors = [FeatureExtractor(ExtractConfig(**SMALL, precision="fp32", decoder=d), encoder=random_vgg)
                  for d in ("pyav", "decord", "opencv")]
    feats = [next(extractor.features([video]))[1] for extractor in extractors]
    for other in feats[1:]:
        np.testing.assert_allclose(feats[0], other, rtol=1e-3, atol=1e-3)


def test_bf16_features_stay_close_to_fp32(make_video, random_vgg):
    video = make_video(frames=8)
    fp32, bf16 = (next(FeatureExtractor(ExtractConfig(**SMALL, precision=p), encoder=random_vgg).features([video]))[1]
                  for p in ("fp32", "bf16"))
    cosine = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cosine.min() > 0.99


@pytest.mark.slow
def test_compiled_backbone_gives_the_eager_features_with_a_short_last_pass(make_video, random_vgg):
    videos = [make_video(f"v{i}.mp4", frames=10 + i, seed=i) for i in range(3)]  # 12 frames: passes of 5, 5, 2
    config = dict(SMALL, precision="fp32", frame_batch=5)
    eager = FeatureExtractor(ExtractConfig(**config, compile=False), encoder=random_vgg)
    compiled = FeatureExtractor(ExtractConfig(**config, compile=True), encoder=random_vgg)
    expected = {p: f for p, f, _ in eager.features(videos)}
    for path, feats, error in compiled.features(videos):
        assert error is None
        np.testing.assert_allclose(feats, expected[path], rtol=1e-4, atol=1e-5)
    assert compiled._compiled is not None and not compiled._compile_failed


def test_a_failing_compile_warns_once_and_runs_uncompiled(make_video, random_vgg, monkeypatch, capsys):
    def broken(*args, **kwargs):
        def run(batch):
            raise RuntimeError("no C++ compiler found")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    videos = [make_video(f"v{i}.mp4", frames=10, seed=i) for i in range(2)]
    config = dict(SMALL, precision="fp32", frame_batch=4)
    plain, compiled = (FeatureExtractor(ExtractConfig(**config, compile=c), encoder=random_vgg) for c in (False, True))
    expected = [f for _, f, _ in plain.features(videos)]
    got = [f for _, f, _ in compiled.features(videos)]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))
    assert capsys.readouterr().err.count("torch.compile failed (RuntimeError: no C++ compiler found)") == 1


def test_compile_by_default_only_for_cpu_jobs_big_enough_to_pay(random_vgg):
    auto = FeatureExtractor(ExtractConfig(**SMALL), encoder=random_vgg)
    assert not auto.compiles(COMPILE_MIN_FRAMES - 1) and auto.compiles(COMPILE_MIN_FRAMES)
    auto.frames_done = COMPILE_MIN_FRAMES - 10  # many small jobs of one extractor add up
    assert not auto.compiles(9) and auto.compiles(10)
    assert not FeatureExtractor(ExtractConfig(**SMALL, compile=False), encoder=random_vgg).compiles(10**6)
    assert FeatureExtractor(ExtractConfig(**SMALL, compile=True), encoder=random_vgg).compiles(1)


def test_extract_folder_writes_one_npy_per_video_and_a_manifest(tmp_path, make_video):
    make_video("a_1_5.avi", fourcc="XVID")
    make_video("sub/b_2_9.mp4", seed=1)
    out = tmp_path / "feats"
    summary = extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL))
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, {})
    for name in ("a_1_5.avi.npy", "b_2_9.mp4.npy"):
        feats = np.load(out / name)
        assert feats.shape == (4, 4096) and feats.dtype == np.float32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["features"]["frames"] == 4 and manifest["features"]["weights"] == "none"
    assert manifest["features"]["backbone"] == "vgg16" and "torch" in manifest["versions"]
    assert manifest["run"]["compiled"] is False  # 8 frames: too few for a compile to pay
    assert not list(out.glob(".*tmp*"))  # no temp files left


def test_float16_storage_is_the_cast_of_the_float32_features_and_trains(tmp_path, make_video):
    make_video("a.mp4")
    config = dict(SMALL, precision="fp32")
    summaries = {d: extract_folder(tmp_path / "videos", tmp_path / d, ExtractConfig(**config, dtype=d))
                 for d in ("float32", "float16")}
    assert all(s.done == 1 for s in summaries.values())
    full, half = (np.load(tmp_path / d / "a.mp4.npy") for d in ("float32", "float16"))
    assert half.dtype == np.float16 and half.nbytes * 2 == full.nbytes
    np.testing.assert_array_equal(half, full.astype(np.float16))
    assert json.loads((tmp_path / "float16" / "manifest.json").read_text())["run"]["dtype"] == "float16"
    assert check_features(tmp_path / "float16" / "a.mp4.npy") == (4, 4096)  # training reads them as they are


def test_features_beyond_float16s_range_are_a_failure_not_an_inf(tmp_path, make_video, monkeypatch):
    make_video("a.mp4")
    huge = lambda self, paths, spans: ((i, np.full((4, 4096), 1e6, np.float32), None)  # noqa: E731
                                       for i in range(len(paths)))
    monkeypatch.setattr(FeatureExtractor, "indexed_features", huge)
    summary = extract_folder(tmp_path / "videos", tmp_path / "feats", ExtractConfig(**SMALL, dtype="float16"))
    assert summary.done == 0 and "float16's range" in summary.failed["a.mp4"]
    assert not list((tmp_path / "feats").glob("*.npy"))


def test_bad_videos_are_listed_and_the_rest_still_extract(tmp_path, make_video):
    make_video("good.mp4")
    (tmp_path / "videos" / "empty.avi").write_bytes(b"")
    (tmp_path / "videos" / "text.mp4").write_text("hello")
    out = tmp_path / "feats"
    result = CliRunner().invoke(main, ["extract", str(tmp_path / "videos"), str(out), "--frames", "4", "--size", "64",
                                       "--weights", "none", "--workers", "0"])
    assert result.exit_code == 1
    assert "1 done" in result.output and "2 failed" in result.output
    assert sorted(p.name for p in out.glob("*.npy")) == ["good.mp4.npy"]
    failures = json.loads((out / "manifest.json").read_text())["failures"]
    assert set(failures) == {"empty.avi", "text.mp4"} and "empty file" in failures["empty.avi"]
    assert "Traceback" not in result.output


def test_interrupted_run_keeps_finished_files_and_resumes(tmp_path, make_video, monkeypatch):
    for i in range(3):
        make_video(f"v{i}.mp4", seed=i)
    out = tmp_path / "feats"
    real_features = FeatureExtractor.indexed_features

    def dies_after_one(self, paths, spans=None):
        for n, item in enumerate(real_features(self, paths, spans)):
            if n == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(FeatureExtractor, "indexed_features", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL))
    assert [p.name for p in out.glob("*.npy")] == ["v0.mp4.npy"]
    assert not list(out.glob(".*tmp*"))
    first = (out / "v0.mp4.npy").stat().st_mtime_ns
    monkeypatch.setattr(FeatureExtractor, "indexed_features", real_features)
    summary = extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL))
    assert (summary.done, summary.skipped) == (2, 1)
    assert (out / "v0.mp4.npy").stat().st_mtime_ns == first


def test_a_folder_refuses_features_made_with_other_settings(tmp_path, make_video):
    make_video()
    out = tmp_path / "feats"
    extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL))
    with pytest.raises(VcapError, match="frames 4 -> 5"):
        extract_folder(tmp_path / "videos", out, ExtractConfig(**{**SMALL, "frames": 5}))


def test_duplicate_video_names_are_refused(tmp_path, make_video):
    make_video("a/x.mp4")
    make_video("b/x.mp4")
    with pytest.raises(VcapError, match="share the id 'x.mp4'"):
        find_videos(tmp_path / "videos")


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["extract", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no videos found" in result.output


def test_no_compile_on_the_command_line_overrides_the_default(tmp_path, make_video, monkeypatch):
    from vcap.extract import extractor as extractor_module

    monkeypatch.setattr(extractor_module, "COMPILE_MIN_FRAMES", 1)  # any job would compile by default
    make_video("a.mp4")
    args = ["extract", str(tmp_path / "videos"), str(tmp_path / "out"), "--frames", "4", "--size", "64",
            "--weights", "none", "--workers", "0", "--no-compile"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["run"]["compiled"] is False
