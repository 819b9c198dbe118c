"""OUT/manifest.json: how the features in a folder were made, and which videos failed.

Several processes may extract into one folder at once (torchrun ranks, `--shard` jobs on a shared disk):
every change is a read-merge-write under an exclusive lock, and each process only touches the
failure entries of its own videos.
"""
from __future__ import annotations

import contextlib
import json
import platform
from pathlib import Path

from vcap.errors import VcapError

from vcap.files import atomic_write, locked

MANIFEST = "manifest.json"


def read_manifest(out: str | Path, fix: str = "make it again with `vcap extract`") -> dict | None:
    """The one reader of OUT/manifest.json (extract, train): None without one; a VcapError ending in `fix`
    for a file that is not one."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest["features"], dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise VcapError(f"{path}: not a vcap feature manifest; {fix}") from None
    return manifest


def _locked(out: Path) -> contextlib.AbstractContextManager:
    return locked(out / ".manifest.lock", wait=True)


def check_settings(out: Path, settings: dict) -> dict | None:
    """Refuse to mix features made with other settings into one folder; -> the manifest read (None: none yet)."""
    manifest = read_manifest(out, fix="use an empty output folder")
    # The precision is not a setting that makes caches differ (bf16 and fp32 features give the same captions),
    # but a manifest may still list it among them.
    old = {k: v for k, v in manifest["features"].items() if k != "precision"} if manifest is not None else settings
    if old != settings:
        diff = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v)
        raise VcapError(f"{out}: holds features made with other settings ({diff}); use another output folder")
    return manifest


def claim_folder(out: Path, settings: dict, run: dict) -> None:
    """Record `settings` (checked again under the lock: another process may have been first) and this run."""
    with _locked(out):
        manifest = check_settings(out, settings) or {"features": settings, "failures": {}}
        precisions = sorted(set(manifest.get("precisions", [])) | {run["precision"]})
        _write(out, {**manifest, "run": run, "precisions": precisions, "versions": versions()})


def record_results(out: Path, failed: dict[str, str], succeeded: list[str]) -> None:
    """Merge this process's outcome: its new failures in, its successes out of the failure list."""
    with _locked(out):
        manifest = read_manifest(out)
        failures = dict(manifest.get("failures", {}))
        for video in succeeded:
            failures.pop(video, None)
        failures.update(failed)
        _write(out, {**manifest, "failures": dict(sorted(failures.items()))})


def _write(out: Path, manifest: dict) -> None:
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def versions() -> dict:
    import cv2
    import numpy as np
    import torch
    import torchvision

    from vcap.extract.sampler import decoder

    av, decord = decoder("pyav").library, decoder("decord").library

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "decord": getattr(decord, "__version__", None),
        "pyav": getattr(av, "__version__", None),
    }
