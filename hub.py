"""Models by URL: downloaded once into the user's cache folder, checked against the sha256 prefix their file
name carries (torch.hub's and torchvision's convention: name-<hex digits>.safetensors), then used from there.

The cache is $VCAP_HOME/models (VCAP_HOME defaults to ~/.cache/vcap). Nothing is unpickled: a .safetensors
file holds tensors and JSON text; a .pt is read with torch.load(weights_only=True)."""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from vcap.errors import VcapError, library_text
from vcap.files import atomic_write, ensure_folder, sha256_of

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(safetensors|pt)$")
TIMEOUT_S = 30  # a server that sends nothing for this long is treated as down
CHUNK = 1 << 20


def is_url(text: str | os.PathLike) -> bool:
    return str(text).startswith(("http://", "https://"))


def cache_folder() -> Path:
    return Path(os.environ.get("VCAP_HOME") or Path.home() / ".cache" / "vcap") / "models"


def fetch(url: str) -> Path:
    """The local copy of the model at `url`: from the cache when a copy with the right hash is there, else
    downloaded, verified and kept. A name without a hash, a hash mismatch, an HTTP error or no network is
    one VcapError naming the URL."""
    name = Path(urllib.parse.urlparse(url).path).name
    found = HASH_IN_NAME.search(name)
    if not found:
        raise VcapError(f"{url}: the file name carries no sha256 prefix to check it by (expected "
                        f"<name>-<8+ hex digits>.safetensors, as `vcap export` names it)")
    prefix, cached = found[1], cache_folder() / name
    if cached.is_file() and sha256_of(cached).startswith(prefix):
        return cached
    ensure_folder(cached.parent)
    with atomic_write(cached) as tmp:  # a failed or refused download leaves nothing in the cache
        digest = _download(url, tmp)
        if not digest.startswith(prefix):
            raise VcapError(f"{url}: its content has sha256 {digest[:len(prefix)]}..., not the {prefix} its name "
                            f"carries; refused (a changed or corrupted file)")
    return cached


def _download(url: str, target: Path) -> str:
    """Stream `url` into `target`; returns the content's sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, target.open("wb") as f:
            while block := response.read(CHUNK):
                digest.update(block)
                f.write(block)
    except urllib.error.HTTPError as exc:
        raise VcapError(f"{url}: cannot download (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise VcapError(f"{url}: cannot download ({library_text(str(reason))}); check the network, or pass a "
                        f"local file") from None
    return digest.hexdigest()
