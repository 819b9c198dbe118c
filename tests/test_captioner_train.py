"""Training learns, checkpoints round-trip, resume continues exactly where it stopped."""
import csv
import itertools
from pathlib import Path

import pytest
import torch

from vcap.captioner.checkpoint import load_model
from vcap.captioner.config import DecodeConfig
from vcap.captioner.data import FeatureBank, attach_features, load_labels
from vcap.captioner.decode import caption_features
from vcap.captioner.metrics import mlds_bleu1_corpus
from vcap.captioner.models import build_model
from vcap.captioner.runfolder import resumed_config
from vcap.captioner.train import TrainConfig, teacher_schedule, train
from vcap.captioner.vocab import BOS
from captioner_fixtures import TINY, make_synthetic
from vcap.errors import VcapError



@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    feats, labels = make_synthetic(root, n_videos=48, seed=0)
    _, test_labels = make_synthetic(root, n_videos=16, seed=1, name="test.json")  # unseen videos, same classes
    return feats, labels, test_labels


def _held_out_bleu(ckpt: Path, feats: Path, labels: Path) -> float:
    model, vocab, _ = load_model(ckpt)
    videos, _, _ = attach_features(load_labels(labels), feats, labels)
    caps = caption_features(model, vocab, FeatureBank([p for _, _, p in videos]).batch(list(range(len(videos)))),
                            DecodeConfig(), None)
    return mlds_bleu1_corpus(dict(zip([v for v, _, _ in videos], caps)), {v: c for v, c, _ in videos})


@pytest.mark.parametrize("model, epochs", [("attention", 8), ("s2vt", 16)])
def test_learns_captions_that_depend_on_the_features(synthetic, tmp_path, model, epochs):
    feats, labels, test_labels = synthetic
    summary = train(TrainConfig(str(feats), str(labels), str(tmp_path), captioner=model, epochs=epochs,
                                val_fraction=0.25, teacher_forcing="inverse-sigmoid:50", **TINY))
    assert summary.best_val_bleu1 > 0.9
    assert _held_out_bleu(tmp_path / "best.pt", feats, test_labels) > 0.9
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, summary.epochs_run + 1))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (tmp_path / "history.png").stat().st_size > 0


def test_checkpoint_round_trip(synthetic, tmp_path):
    feats, labels, _ = synthetic
    (feats / "manifest.json").write_text('{"features": {"backbone": "vgg16", "frames": 6}}')
    try:
        train(TrainConfig(str(feats), str(labels), str(tmp_path), epochs=1, **TINY))
    finally:
        (feats / "manifest.json").unlink()
    raw = torch.load(tmp_path / "best.pt", weights_only=True)
    assert raw["vocab"][:4] == ["<PAD>", "<BOS>", "<EOS>", "<UNK>"]
    model, vocab, info = load_model(tmp_path / "best.pt")
    assert info["feature_config"] == {"backbone": "vgg16", "frames": 6}
    assert (info["feature_dim"], info["frames"], info["model"]) == (12, 6, "attention")
    x = torch.randn(3, 6, 12)
    again, _, _ = load_model(tmp_path / "best.pt")
    beam = DecodeConfig(beam=2)
    assert caption_features(model, vocab, x, beam, None) == caption_features(again, vocab, x, beam, None)
    with torch.no_grad():
        assert torch.equal(model.encode(x)[0], again.encode(x)[0])


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("hello")
    with pytest.raises(VcapError, match=r"model.pt: not a vcap checkpoint \("):
        load_model(bad)
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(VcapError, match="not a vcap checkpoint"):
        load_model(bad)


def test_resume_continues_where_it_stopped(synthetic, tmp_path):
    feats, labels, _ = synthetic
    cfg = dict(feats=str(feats), labels=str(labels), precision="fp32", **TINY)
    straight = train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **cfg))
    train(TrainConfig(out=str(tmp_path / "b"), epochs=1, **cfg))
    resumed = train(TrainConfig(out=str(tmp_path / "b"), epochs=2, resume=True, **cfg))
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]
    assert strip(resumed.history) == strip(straight.history)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    old = torch.load(tmp_path / "b" / "last.pt", weights_only=True)  # a run from before --captions-per-video
    del old["train_config"]["captions_per_video"]
    torch.save(old, tmp_path / "b" / "last.pt")
    assert resumed_config(tmp_path / "b").captions_per_video == 1 != TrainConfig.captions_per_video


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_curve(synthetic, tmp_path):
    feats, labels, _ = synthetic
    cfg = dict(feats=str(feats), labels=str(labels), epochs=2, precision="fp32", **{**TINY, "dropout": 0.0})
    eager = train(TrainConfig(out=str(tmp_path / "eager"), **cfg)).history
    compiled = train(TrainConfig(out=str(tmp_path / "compiled"), compile=True, **cfg)).history
    for a, b in zip(eager, compiled):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
    keys = [set(torch.load(tmp_path / run / "best.pt", weights_only=True)["state_dict"])
            for run in ("eager", "compiled")]
    assert keys[0] == keys[1]  # a plain model's parameter names: the checkpoint loads without torch.compile


@pytest.mark.parametrize("name", ["attention", "s2vt"])
def test_training_forward_matches_the_step_by_step_decoder(name):
    """forward() runs the output layer once over all steps; it must equal feeding step() one word at a time:
    the caption's words with teacher_prob 1, the model's own previous argmax with teacher_prob 0."""
    torch.manual_seed(0)
    model = build_model(name, feature_dim=12, vocab_size=30, hidden=16, embed_dim=8, dropout=0.0, frame_stride=1).eval()
    feats, caps = torch.randn(3, 5, 12), torch.randint(4, 30, (3, 7))
    caps[:, 0] = BOS
    for teacher_prob in (1.0, 0.0):
        state, words, expected = model.encode(feats), caps[:, 0], []
        for t in range(caps.shape[1] - 1):
            logits, state = model.step(words, state)
            expected.append(logits)
            words = caps[:, t + 1] if teacher_prob == 1.0 else logits.argmax(-1)
        torch.testing.assert_close(model(feats, caps, teacher_prob), torch.stack(expected, 1))


@pytest.mark.parametrize("name", ["attention", "s2vt"])
def test_a_video_encoded_once_for_several_captions_trains_as_one_copy_a_caption(name):
    """rows: the batch's captions share encoded videos; logits and gradients equal those of the videos repeated."""
    torch.manual_seed(0)
    model = build_model(name, feature_dim=12, vocab_size=30, hidden=16, embed_dim=8, dropout=0.0, frame_stride=1)
    feats, caps, rows = torch.randn(3, 5, 12), torch.randint(4, 30, (5, 7)), torch.tensor([2, 0, 2, 1, 2])
    caps[:, 0] = BOS
    grads = []
    for logits in (model(feats, caps, 1.0, rows), model(feats[rows], caps, 1.0)):
        model.zero_grad()
        logits.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        torch.testing.assert_close(logits, model(feats[rows], caps, 1.0))
    for shared, repeated in zip(*grads):
        torch.testing.assert_close(shared, repeated)


def test_attention_scores_and_their_hand_written_gradients_match_autograd():
    from vcap.captioner.captioners.attention import AdditiveScores

    torch.manual_seed(0)
    keys, query, v = (torch.randn(*shape, dtype=torch.double, requires_grad=True)
                      for shape in ((3, 5, 4), (3, 4), (4,)))
    before = keys.detach().clone()
    assert torch.autograd.gradcheck(AdditiveScores.apply, (keys, query, v))
    grad = torch.randn(3, 5, dtype=torch.double)
    ours = torch.autograd.grad(AdditiveScores.apply(keys, query, v), (keys, query, v), grad)
    plain = torch.autograd.grad(torch.tanh(keys + query.unsqueeze(1)) @ v, (keys, query, v), grad)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)
    assert torch.equal(keys, before)  # the keys are left alone: the tanh runs in place on a new sum


def test_epoch_batches_take_every_sample_once_in_groups_of_one_video(tmp_path):
    from vcap.captioner.data import CaptionDataset
    from vcap.captioner.train import epoch_batches
    from vcap.captioner.vocab import Vocab

    videos = [(f"v{v}", ["a b"] * n, tmp_path / f"v{v}.npy") for v, n in enumerate([9, 4, 1, 6, 8])]
    dataset = CaptionDataset(videos, Vocab.build(["a b"], 1), FeatureBank([p for _, _, p in videos]), 5)
    video_of = [v for v, _ in dataset.samples]
    for k in (1, 3, 4):  # captions of a video in a batch
        batches = epoch_batches(dataset, 8, k, seed=7)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(dataset))) and [len(b) for b in batches[:-1]] == [8] * 3
        assert epoch_batches(dataset, 8, k, seed=7) == batches != epoch_batches(dataset, 8, k, seed=8)
        runs = [(v, len(list(g))) for v, g in itertools.groupby(video_of[i] for i in flat)]
        # a video's captions come in consecutive groups of k, one group holding the rest
        assert all(r % k in (0, len(videos[v][1]) % k) for v, r in runs)
        assert len(runs) < len(flat) if k > 1 else len(runs) > len(videos)  # shuffled, not in file order


def test_teacher_forcing_schedule():
    p = teacher_schedule("inverse-sigmoid:100")
    assert p(0) == pytest.approx(100 / 101) and p(1000) < 0.01 and p(0) > p(300) > p(600)
    assert teacher_schedule("always")(10**6) == 1.0
    with pytest.raises(VcapError, match="--teacher-forcing"):
        teacher_schedule("sometimes")


def test_embeddings_file(synthetic, tmp_path):
    feats, labels, _ = synthetic
    vec = tmp_path / "glove.txt"
    vec.write_text("man " + " ".join(["0.5"] * 16) + "\nzebra " + " ".join(["1"] * 16) + "\n")
    train(TrainConfig(str(feats), str(labels), str(tmp_path / "m"), epochs=1, embeddings=str(vec),
                      **{**TINY, "lr": 1e-9, "weight_decay": 0.0}))  # (almost) no update: the loaded vectors stay
    model, vocab, _ = load_model(tmp_path / "m" / "best.pt")
    assert torch.allclose(model.embed.weight[vocab.index["man"]], torch.full((16,), 0.5))
    vec.write_text("man 0.1 0.2\n")
    with pytest.raises(VcapError, match="--embed-dim 2"):
        train(TrainConfig(str(feats), str(labels), str(tmp_path / "n"), epochs=1, embeddings=str(vec), **TINY))


def test_frame_stride_is_saved_and_applied_when_captioning(synthetic, tmp_path):
    feats, labels, _ = synthetic
    train(TrainConfig(str(feats), str(labels), str(tmp_path), epochs=1, frame_stride=2, **TINY))
    model, _, info = load_model(tmp_path / "best.pt")
    assert info["model_config"]["frame_stride"] == 2
    x = torch.randn(2, 6, 12)
    keep = x.clone()
    keep[:, 1::2] = torch.randn(2, 3, 12)  # frames the model skips must not change its output
    with torch.no_grad():
        assert torch.allclose(model(x, torch.tensor([[1, 4, 5]] * 2)), model(keep, torch.tensor([[1, 4, 5]] * 2)))


def test_select_on_loss_keeps_the_lowest_validation_loss(synthetic, tmp_path):
    feats, labels, _ = synthetic
    summary = train(TrainConfig(str(feats), str(labels), str(tmp_path), epochs=3, select_on="loss",
                                label_smoothing=0.1, weight_decay=0.01, **TINY))
    best = min(summary.history, key=lambda h: h["val_loss"])
    assert summary.best_epoch == best["epoch"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == best["epoch"]
    with pytest.raises(VcapError, match="--select-on"):
        train(TrainConfig(str(feats), str(labels), str(tmp_path / "x"), select_on="cider", **TINY))
