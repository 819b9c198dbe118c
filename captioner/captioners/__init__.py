"""The captioner registry: one module in this folder per captioner, each holding everything about it.

A module here defines its network (a `vcap.captioner.models.Captioner`), its hyperparameters (`Config`, a
ModelConfig whose fields of its own have defaults) and `SPEC = CaptionerSpec(<module name>, Config, <network>)`;
the first line of its docstring is its summary in --help. CAPTIONERS lists the modules without importing them
(they import torch, and `vcap --help` must not); `spec` imports one when it is first used. Adding a captioner is
adding one file; `register` adds one at run time (a plug-in, a test).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from vcap.config import BadValue, check_float, check_int
from vcap.errors import VcapError


@dataclass(frozen=True)
class ModelConfig:
    """The hyperparameters every captioner takes, saved in checkpoints as model_config. No defaults: TrainConfig
    holds them and the data gives feature_dim and vocab_size. A captioner's own fields (in its subclass) have
    defaults, written there once, so a model_config without them still loads."""

    feature_dim: int
    vocab_size: int
    hidden: int
    embed_dim: int
    dropout: float
    frame_stride: int

    def __post_init__(self):
        check_int(self, "feature_dim", 1)
        check_int(self, "vocab_size", 1)
        check_shared(self)


def check_shared(config) -> None:
    """The ranges of the hyperparameters TrainConfig passes on to every captioner (checked there too, so that a
    bad --hidden fails before any data is read)."""
    check_int(config, "hidden", 1, 65536)
    check_int(config, "embed_dim", 1, 65536)
    check_float(config, "dropout", 0.0, 1.0, high_open=True)
    check_int(config, "frame_stride", 1, 1000)


@dataclass(frozen=True)
class CaptionerSpec:
    """Everything about one captioner: its name, its config class and its network, built as
    `model(config(**model_config))`."""

    name: str
    config: type[ModelConfig]
    model: type  # a vcap.captioner.models.Captioner (not imported here: that imports torch)

    def own_options(self) -> tuple[str, ...]:
        """Its hyperparameters beyond ModelConfig's: what --captioner-option sets."""
        shared = {f.name for f in dataclasses.fields(ModelConfig)}
        return tuple(f.name for f in dataclasses.fields(self.config) if f.name not in shared)


def _summary(module: str) -> str:
    """The first line of a module's docstring, read from its source (importing it would import torch)."""
    doc = ast.get_docstring(ast.parse((Path(__path__[0]) / f"{module}.py").read_text(encoding="utf-8")))
    return (doc or module).splitlines()[0].rstrip(".")


# name -> summary, for --help
CAPTIONERS: dict[str, str] = {name: _summary(name) for name in sorted(
    m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg and not m.name.startswith("_"))}
SPECS: dict[str, CaptionerSpec] = {}  # the captioners imported (by `spec`) or registered so far


def register(entry: CaptionerSpec) -> CaptionerSpec:
    """Add a captioner from outside this folder; its summary is the first line of its network's docstring."""
    if entry.name in CAPTIONERS:
        raise ValueError(f"captioner {entry.name!r} is registered twice")
    SPECS[entry.name] = entry
    CAPTIONERS[entry.name] = (entry.model.__doc__ or entry.name).strip().splitlines()[0].rstrip(".")
    return entry


def spec(name: str) -> CaptionerSpec:
    """The spec of captioner `name`, importing its module on first use."""
    if name not in SPECS:
        if name not in CAPTIONERS:
            raise VcapError(f"unknown captioner {name!r}: this vcap knows {', '.join(CAPTIONERS)}")
        found = importlib.import_module(f"{__name__}.{name}").SPEC
        if found.name != name:
            raise ValueError(f"{__name__}.{name}: its SPEC is named {found.name!r}, not after its module")
        SPECS[name] = found
    return SPECS[name]


def model_config(name: str, options: dict, **shared) -> dict:
    """The model_config of a new captioner `name`: the hyperparameters every captioner takes (`shared`) and its
    own `options` (--captioner-option), checked by its Config; one it does not have is a VcapError naming its own."""
    entry = spec(name)
    own = entry.own_options()
    unknown = sorted(set(options) - set(own))
    if unknown:
        has = f"its own are {', '.join(own)}" if own else "it has none of its own"
        raise VcapError(f"--captioner-option {unknown[0]}: the {name} captioner has no such option ({has})")
    try:
        return dataclasses.asdict(entry.config(**shared, **options))
    except BadValue as exc:
        if exc.field not in own:
            raise
        raise VcapError(f"--captioner-option {exc.field}={exc.value!r}: {exc.rule} (the {name} captioner)") \
            from None
