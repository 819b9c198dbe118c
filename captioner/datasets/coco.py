"""COCO caption format: {"images": [{"id", "file_name"?, "split"?}], "annotations": [{"image_id", "caption"}]},
what pycocoevalcap and many tools read and write; an "image" is a video here."""
from __future__ import annotations

from pathlib import Path

from vcap.captioner.datasets.sample import Sample, grouped_captions, objects, split_name

NAME = "coco"
LAYOUT = "COCO captions"
SUMMARY = 'COCO captions {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}'
VIDEOS = "an image's file_name is the video's file name (without one, its id)"


def detect(data) -> bool:
    return isinstance(data, dict) and "annotations" in data and "images" in data


def read(path: Path, data) -> list[Sample]:
    captions = grouped_captions(data, "annotations", "image_id", path, LAYOUT)
    return [Sample(key, Path(image["file_name"]).name if isinstance(image.get("file_name"), str) else key,
                   tuple(captions.get(key, ())), split_name(image.get("split"), path, where))
            for key, image, where in objects(data, "images", "id", path, LAYOUT)]
