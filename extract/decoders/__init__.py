"""The decoder registry: one module in this folder per decoding library, holding everything about its decoder:
`DECODER = Decoder(...)` (extract/decoding.py) and `ORDER = <int>`, its place in the order `--decoder auto`
tries the decoders per video (lowest first; 10, 20, 30 leave room for a new one between two others).

The registry is read without importing a decoder, since each imports its codec library (and numpy and cv2
through extract/decoding.py): the folder's modules name the decoders, and each ORDER line is read from the
module's source with `ast`. So the CLI's --help and ExtractConfig's checks cost no codec library, and adding a
decoder is adding one file. `decoder(name)` imports the module when a video is to be read. A module may share
its library's name (decord.py imports decord): imports are absolute, so it gets the library, not itself.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vcap.extract.decoding import Decoder


def _order(name: str) -> int:
    """The `ORDER = <int>` line of module `name`, found in its source."""
    path = Path(__file__).with_name(f"{name}.py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ORDER"]
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int)):
            return node.value.value
    raise ValueError(f"{path}: a decoder module states its place for --decoder auto as ORDER = <int>")


# The decoders' names, in the order --decoder auto tries them.
NAMES: tuple[str, ...] = tuple(sorted((m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")),
                                      key=lambda name: (_order(name), name)))


def decoder(name: str) -> Decoder:
    """The `Decoder` entry of decoder `name` (one of NAMES); its module, and so its library, imported now."""
    return importlib.import_module(f"{__name__}.{name}").DECODER
