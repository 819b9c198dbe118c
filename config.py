"""What every stage's config shares: option names, range checks, and splitting one command's options among
the stage configs. No torch or numpy here: `vcap --help` imports the configs and must stay instant.

Each default is written once, in its stage's frozen dataclass; the CLI passes on only what a user set.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from vcap.errors import VcapError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def flag(field: str) -> str:
    """The command-line spelling of a config field: frame_batch -> --frame-batch."""
    return "--" + field.replace("_", "-")


class BadValue(VcapError):
    """A config value out of range, naming the option; `field`, `value` and `rule` let a caller that did not take
    the value from that option (a checkpoint's model_config, --captioner-option) say where it came from."""

    def __init__(self, field: str, value: Any, rule: str):
        super().__init__(f"{flag(field)} {value}: {rule}")
        self.field, self.value, self.rule = field, value, rule


def check(ok: bool, field: str, value: Any, rule: str) -> None:
    """A config value out of range is a one-line VcapError naming the option, raised when the config is built."""
    if not ok:
        raise BadValue(field, value, rule)


# The largest value an option without a range of its own takes: finite numbers past these overflow the
# conversions behind them (a C int for torch and OpenCV, seconds times frames per second into a frame index).
WHOLE_LIMIT = 2**31 - 1
NUMBER_LIMIT = 1e9


def check_int(config, field: str, low: int, high: int = WHOLE_LIMIT, optional: bool = False) -> None:
    value = getattr(config, field)
    if value is None and optional:
        return
    within = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    check(within, field, value, f"must be a whole number >= {low} and <= {high}")


def check_float(config, field: str, low: float, high: float = NUMBER_LIMIT, high_open: bool = False) -> None:
    value = getattr(config, field)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    within = number and value >= low and (value < high if high_open else value <= high)
    check(within, field, value, f"must be a finite number >= {low:g} and {'<' if high_open else '<='} {high:g}")


def check_choice(config, field: str, choices) -> None:
    value = getattr(config, field)
    check(value in choices, field, value, f"choose from {', '.join(choices)}")


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def default_of(cls, name: str) -> Any:
    """A dataclass field's default, for help texts (so the CLI never writes a default a second time)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def pick(options: dict, cls) -> dict:
    """The options that are fields of `cls`."""
    names = field_names(cls)
    return {k: v for k, v in options.items() if k in names}
