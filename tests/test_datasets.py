"""Dataset readers: each layout as the test writes it, the genuine annotation files in ../shared/data/datasets
(skipped when absent) against their published counts, and ids resolving to feature files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcap.captioner.data import attach_features, load_labels
from vcap.captioner.datasets import READERS, detect_format, feature_name, read_labels, split_counts
from vcap.errors import VcapError

from conftest import SHARED_DATA

DATASETS = SHARED_DATA / "datasets"


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


MSRVTT = {"info": {}, "videos": [
    {"video_id": "video0", "split": "train", "start time": 1.5, "end time": 9.0, "id": 0},
    {"video_id": "video1", "split": "validate", "start time": 0, "end time": 10, "id": 1},
    {"video_id": "video2", "split": "test", "start time": 0, "end time": 10, "id": 2}],
    "sentences": [{"video_id": "video2", "caption": " a man talks", "sen_id": 0},
                  {"video_id": "video0", "caption": "a dog runs ", "sen_id": 1},
                  {"video_id": "video0", "caption": "a dog plays", "sen_id": 2},
                  {"video_id": "video1", "caption": "a cat sleeps", "sen_id": 3}]}
ACTIVITYNET = {"v_abc": {"duration": 70.28999999999999, "timestamps": [[0, 2.78], [61.29, 60.71], [4.97, 4.97],
                                                                       [50, 70.3]],
                         "sentences": ["A man walks in.", " He sits.", "\nHe waves.", " He leaves."]}}
YOUCOOK2 = {"database": {"GLd3aX16zBg": {"duration": 241.62, "subset": "training", "recipe_type": "113",
                                         "annotations": [{"segment": [90, 102], "id": 0, "sentence": "spread it"},
                                                         {"segment": [114, 127], "id": 1, "sentence": "cut it"}]},
                         "xyz": {"duration": 100, "subset": "validation", "annotations": [
                             {"segment": [1, 5], "id": 0, "sentence": "boil water"}]}}}
VATEX = [{"videoID": "8JW_7yCjSyHg_000000_000010", "enCap": ["a man sings", " a man plays guitar"]},
         {"videoID": "abcdefghijk_000012_000022", "enCap": ["people dance"]}]
COCO = {"images": [{"id": 7, "file_name": "clips/video7.mp4", "split": "val"}, {"id": 8}],
        "annotations": [{"image_id": 7, "caption": "a bird flies", "id": 1},
                        {"image_id": 8, "caption": "a car drives", "id": 2}]}
MSVD_CSV = ("VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description\n"
            "-4wsuPCjDBc,5,15,1,clean,10,English,a squirrel is eating\n"
            "-4wsuPCjDBc,5,15,2,clean,10,German,ein eichhoernchen\n"
            "-4wsuPCjDBc,5,15,3,clean,10,English,\" a chipmunk eats \"\n"
            "zzz_x,1,4,4,clean,10,English,a woman cuts\n")


@pytest.mark.parametrize("name, data, file, counts", [
    ("msrvtt", MSRVTT, "train_val_videodatainfo.json", {"train": (1, 1, 2), "val": (1, 1, 1), "test": (1, 1, 1)}),
    ("activitynet", ACTIVITYNET, "train.json", {"train": (1, 4, 4)}),
    ("youcook2", YOUCOOK2, "annotations.json", {"train": (1, 2, 2), "val": (1, 1, 1)}),
    ("vatex", VATEX, "vatex_validation_v1.0.json", {"val": (2, 2, 3)}),
    ("coco", COCO, "captions.json", {"val": (1, 1, 1), "all": (1, 1, 1)}),
    ("msvd-csv", MSVD_CSV, "MSR Video Description Corpus.csv", {"all": (2, 2, 3)}),
    ("mlds", [{"id": "a.avi", "caption": ["x", "y"]}], "labels.json", {"all": (1, 1, 2)}),
])
def test_each_layout_is_recognised_and_counted(tmp_path, name, data, file, counts):
    path = write(tmp_path / file, data)
    assert detect_format(path) == name
    assert split_counts(read_labels(path)) == counts
    assert split_counts(read_labels(path, format=name)) == counts


def test_msrvtt_splits_ids_and_captions(tmp_path):
    path = write(tmp_path / "videodatainfo.json", MSRVTT)
    (train,) = read_labels(path, split="train")
    assert (train.id, train.video, train.captions, train.span) == ("video0", "video0", ("a dog runs", "a dog plays"),
                                                                 None)
    assert [s.id for s in read_labels(path, split="val")] == ["video1"]  # MSR-VTT's "validate"
    assert load_labels(path, split="test") == [("video2", ["a man talks"])]


def test_timed_segments_survive_the_published_quirks(tmp_path):
    samples = read_labels(write(tmp_path / "train.json", ACTIVITYNET))
    spans = {s.span: s for s in samples}
    assert set(spans) == {(0.0, 2.78), (60.71, 61.29), (4.97, 4.97), (50.0, 70.29)}  # swapped, zero, clipped
    assert spans[(60.71, 61.29)].captions == ("He sits.",) and spans[(4.97, 4.97)].captions == ("He waves.",)
    assert {s.video for s in samples} == {"v_abc"} and all(s.split == "train" for s in samples)
    assert feature_name(spans[(0.0, 2.78)]) == "v_abc@0.00-2.78"
    assert feature_name(spans[(0.0, 2.78)], "{video}.mkv") == "v_abc.mkv@0.00-2.78"


def test_vatex_ids_split_from_the_right_and_msvd_mapping_names_vids(tmp_path):
    assert read_labels(write(tmp_path / "vatex_validation.json", VATEX))[0].video == "8JW_7yCjSyHg_000000_000010"
    with pytest.raises(VcapError, match="is not <youtube id>_<start>_<end>"):
        read_labels(write(tmp_path / "vatex_bad.json", [{"videoID": "abc_12"}]))
    csv = write(tmp_path / "corpus.csv", MSVD_CSV)
    write(tmp_path / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\r\nzzz_x_1_4 vid1301")
    samples = {s.id: s for s in read_labels(csv)}
    assert samples["vid1"].video == "-4wsuPCjDBc_5_15" and samples["vid1"].split == "train"
    assert samples["vid1"].captions == ("a squirrel is eating", "a chipmunk eats")
    assert samples["vid1301"].split == "test" and samples["vid1301"].video == "zzz_x_1_4"


@pytest.mark.parametrize("content, format, message", [
    ({"x": 1}, "auto", "expected a JSON list"),
    (MSRVTT, "activitynet", "not activitynet labels: expected ActivityNet"),
    (MSRVTT, "nonsense", "--labels-format nonsense: choose from auto, activitynet"),
    ({"v_a": {"timestamps": [[1, 2]], "sentences": []}}, "auto", "two lists of one length"),
    ({"v_a": {"timestamps": [["a", 2]], "sentences": ["x"]}}, "auto", "expected a [start, end] pair"),
    ({"database": {"y": {"subset": "holdout", "annotations": []}}}, "auto", "unknown split 'holdout'"),
    ("VideoID,Start\nx,1\n", "msvd-csv", "not msvd-csv labels"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path, content, format, message):
    path = write(tmp_path / "labels.json", content)
    with pytest.raises(VcapError) as err:
        read_labels(path, format)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value) or "--labels-format" in str(err.value)


def test_a_split_the_file_lacks_is_named_with_those_it_has(tmp_path):
    with pytest.raises(VcapError, match=r"no samples of split test \(it has train\)"):
        read_labels(write(tmp_path / "train.json", ACTIVITYNET), split="test")


def test_dataset_ids_find_the_features_extract_writes(tmp_path):
    path = write(tmp_path / "videodatainfo.json", MSRVTT)
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "video0.mp4.npy", np.zeros((4, 8), np.float32))  # vcap extract's name for video0.mp4
    np.save(feats / "video1.npy", np.ones((4, 8), np.float32))
    kept, skipped, _ = attach_features(load_labels(path), feats, path)
    assert [(vid, f.name) for vid, _, f in kept] == [("video0", "video0.mp4.npy"), ("video1", "video1.npy")]
    assert skipped == 1


def test_every_reader_entry_is_complete():
    for name, reader in READERS.items():
        assert reader.name == name and reader.summary and reader.videos and callable(reader.detect)


def test_each_module_of_the_package_is_a_reader_tried_by_name_the_loose_last():
    import pkgutil

    from vcap.captioner import datasets

    modules = [m.name for m in pkgutil.iter_modules(datasets.__path__) if m.name != "sample"]
    assert len(READERS) == len(modules)
    specific = [name for name, reader in READERS.items() if not reader.loose]
    assert list(READERS) == [*sorted(specific), "mlds"]


# ---- the genuine files -----------------------------------------------------------------------------------

def real(relative: str) -> Path:
    path = DATASETS / relative
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


def test_msrvtt_gives_the_published_counts():
    counts = {**split_counts(read_labels(real("msrvtt/train_val_videodatainfo.json"))),
              **split_counts(read_labels(real("msrvtt/test_videodatainfo.json")))}
    assert {k: v[0] for k, v in counts.items()} == {"train": 6513, "val": 497, "test": 2990}
    assert sum(v[2] for v in counts.values()) == 200_000
    assert [s.id for s in read_labels(real("msrvtt/test_videodatainfo.json"), split="test")][:2] == ["video7010",
                                                                                                   "video7011"]


def test_activitynet_gives_the_published_counts():
    samples = read_labels(real("activitynet_captions/train.json"), "activitynet", "train")
    assert split_counts(samples) == {"train": (10009, 37421, 37421)}
    assert all(a <= b for a, b in (s.span for s in samples))  # the reversed ones are swapped
    assert all(not c.startswith((" ", "\n")) for s in samples for c in s.captions)
    assert split_counts(read_labels(real("activitynet_captions/val_1.json")))["val"][:2] == (4917, 17505)


def test_youcook2_and_vatex_give_the_published_counts():
    counts = split_counts(read_labels(real("youcook2/youcookii_annotations_trainval.json")))
    assert counts["train"][0] == 1333 and counts["val"][0] == 457
    assert counts["train"][2] + counts["val"][2] == 13829  # segments: one sentence each
    assert split_counts(read_labels(real("vatex/vatex_private_test_without_annotations.json"))) == {
        "test": (6278, 6278, 0)}


def test_msvd_mapping_gives_the_usual_split(tmp_path):
    mapping = real("msvd/youtube_mapping.txt")
    clips = [line.split()[0] for line in mapping.read_text().splitlines()]
    rows = "".join(f"{c.rsplit('_', 2)[0]},{c.rsplit('_', 2)[1]},{c.rsplit('_', 2)[2]},1,clean,1,English,a thing\n"
                   for c in clips)
    write(tmp_path / "MSR Video Description Corpus.csv",
          "VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description\n" + rows)
    (tmp_path / "youtube_mapping.txt").write_bytes(mapping.read_bytes())
    counts = split_counts(read_labels(tmp_path / "MSR Video Description Corpus.csv"))
    assert {k: v[0] for k, v in counts.items()} == {"train": 1200, "val": 100, "test": 670}


# ---- timed samples: features of a span's frames only ------------------------------------------------------

def write_halves(path: Path, halves: list[tuple[int, int, int]], frames_each: int = 12) -> Path:
    """An MJPG video (every frame coded alone, so a cut decodes to the same pixels) of one flat colour per half."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    for colour in halves:
        for i in range(frames_each):
            img = np.full((48, 64, 3), colour, np.uint8)
            cv2.putText(img, str(i), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            writer.write(img)
    writer.release()
    return path


def test_a_span_has_the_features_of_the_video_cut_to_it(tmp_path):
    from vcap.extract.config import ExtractConfig
    from vcap.extract.folder import extract_folder

    config = ExtractConfig(frames=4, size=64, weights="none", device="cpu", workers=0, precision="fp32")
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    write_halves(tmp_path / "full" / "v_abc.avi", [(200, 30, 30), (30, 30, 200)])
    write_halves(tmp_path / "cut" / "v_abc.avi", [(30, 30, 200)])
    spans = {"v_abc.avi": [("v_abc@0.00-1.00", (0.0, 1.0)), ("v_abc@1.00-2.00", (1.0, 2.0))]}
    summary = extract_folder(tmp_path / "full", tmp_path / "feats", config, only=set(), spans=spans)
    assert summary.done == 2 and not summary.failed
    extract_folder(tmp_path / "cut", tmp_path / "cut_feats", config)
    first, second = (np.load(tmp_path / "feats" / f"v_abc@{s}.npy") for s in ("0.00-1.00", "1.00-2.00"))
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, np.load(tmp_path / "cut_feats" / "v_abc.avi.npy"), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "feats").glob("*.npy")) == ["v_abc@0.00-1.00.npy", "v_abc@1.00-2.00.npy"]
