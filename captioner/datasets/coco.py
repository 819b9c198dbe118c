"""COCO caption format: {"images": [{"id", "file_name"?, "split"?}], "annotations": [{"image_id", "caption"}]},
what pycocoevalcap and many tools read and write; an "image" is a video here."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from .sample import Sample, clean_captions, split_name

NAME = "coco"
SUMMARY = 'COCO captions {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}'
VIDEOS = "an image's file_name is the video's file name (without one, its id)"


def detect(data) -> bool:
    return isinstance(data, dict) and "annotations" in data and "images" in data


def read(path: Path, data) -> list[Sample]:
    images, notes = data.get("images"), data.get("annotations")
    if not isinstance(images, list) or not isinstance(notes, list):
        raise VcapError(f"{path}: 'images' and 'annotations' must be lists (COCO captions)")
    captions: dict[str, list[str]] = {}
    for i, note in enumerate(notes):
        if not isinstance(note, dict) or "image_id" not in note:
            raise VcapError(f"{path}: annotations[{i}]: expected an object with 'image_id' and 'caption'")
        captions.setdefault(str(note["image_id"]), []).extend(
            clean_captions(note.get("caption"), path, f"annotations[{i}]"))
    out = []
    for i, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise VcapError(f"{path}: images[{i}]: expected an object with 'id'")
        key = str(image["id"])
        name = Path(image["file_name"]).name if isinstance(image.get("file_name"), str) else key
        out.append(Sample(key, name, tuple(captions.get(key, ())), split_name(image.get("split"), path,
                                                                             f"images[{i}]")))
    return out
