"""Crash-safe file writes: a result is either whole or absent, never half-written; a write the OS refuses
(full disk, read-only folder, a file where a folder should be) is one VcapError naming the path and cause.
One writer at a time per folder (`hold_folder`); signals held while a folder changes (`write_together`)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from vcap.errors import VcapError, library_text

try:
    import fcntl
except ImportError:  # Windows: no locks, one process per folder is the user's to keep
    fcntl = None

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_error(path: str | os.PathLike, exc: OSError, is_folder: bool = False) -> VcapError:
    """The one translation of an OS write failure into a user's error: what `path` is, why, what to do."""
    path = Path(path)
    folder = path if is_folder else path.parent
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and _nearly_full(folder)):
        # numpy reports a disk that fills mid-write as "N requested and M written", without an errno
        cause = f"no space left on the device holding {folder}/; free some and run the same command again"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        refused = "read-only file system" if code == errno.EROFS else "permission denied"
        cause = f"{refused}; choose a folder you can write to"
    elif code in (errno.ENOTDIR, errno.EEXIST) and (blocker := _file_in_the_way(path)):
        cause = f"{blocker} is a file, not a folder; choose another output folder"
    elif code == errno.EISDIR:
        cause = "a folder is in the way; remove it or choose another output folder"
    elif code == errno.EFBIG:
        cause = "file too large for the file system or for this process's size limit, ulimit -f"
    else:
        cause = os.strerror(code).lower() if code else library_text(exc)
    return VcapError(f"{path}: cannot write ({cause})")


def _nearly_full(folder: Path) -> bool:
    for parent in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(parent).free < 1 << 20
    return False


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of `path` and its parents that exists and is not a folder."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def ensure_folder(path: str | os.PathLike) -> Path:
    """Make the folder `path` and prove a file can be made in it, so a run that cannot write its results
    fails before its work rather than after it. The probe is an unnamed temp file: nothing is left."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise write_error(path, exc, is_folder=True) from None
    return path


_TEMP = ".tmp"  # atomic_write's temp files: .<name>.<8 random characters>.tmp<suffix>


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block finishes.

    A crash or Ctrl-C mid-write leaves the old file (or none), never a half-written one.
    `suffix` keeps writers that append an extension (np.save adds .npy) writing to the yielded name.
    The block only writes: an OSError in it is a write failure, reported as a VcapError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP + suffix, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any other file
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(folder: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Remove the temp files atomic_write leaves for `names` in `folder` when a process is killed (kill -9)
    mid-write. Only vcap's own naming matches; call it while holding the folder (see `folder_lock`)."""
    pattern = re.compile("|".join(rf"\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}{re.escape(_TEMP)}.*" for name in names))
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them: a folder that changes state in the
    block is found, after Ctrl-C or a kill, as it was before or as it is after, never between."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])


def write_together(folder: str | os.PathLike, writers: dict[str, Callable[[Path], None]],
                   remove: tuple[str, ...] = ()) -> None:
    """Change several files of `folder` as one: each `writers[name](temp path)` writes a temp file; only when
    all are written are they renamed onto their names (and the files in `remove` deleted), with SIGINT and
    SIGTERM held meanwhile. A failed write (a full disk) leaves every file as it was."""
    folder = Path(folder)
    with signals_deferred():
        with contextlib.ExitStack() as stack:
            for name, write in writers.items():
                tmp = stack.enter_context(atomic_write(folder / name, suffix=Path(name).suffix))
                try:
                    write(tmp)
                except OSError as exc:
                    raise write_error(folder / name, exc) from None
        for name in set(remove) - set(writers):
            try:
                (folder / name).unlink(missing_ok=True)
            except OSError as exc:
                raise write_error(folder / name, exc) from None


LOCK = ".vcap.lock"


@contextlib.contextmanager
def locked(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` for the block, its holder's pid written in it; removed after.

    `wait`: queue behind a holder (a few processes merging one manifest); otherwise a holder is a VcapError
    naming its pid (a second run writing into one folder). The OS ends a lock with its process, so the lock
    of a process that died (kill -9, a crash) is taken over, never waited for."""
    path = Path(path)
    if fcntl is None:
        yield
        return
    f = _lock(path, wait)
    with f:
        try:
            f.truncate(0)
            f.write(str(os.getpid()))
            f.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # while still holding it: a process that opened it meanwhile retries (see _lock)
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock(path: Path, wait: bool):
    """The open, locked lock file. A file its holder removed while this one waited is not the lock any more:
    open the path again."""
    while True:
        try:
            f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+")
        except OSError as exc:
            raise write_error(path, exc) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = f.read().strip()
            f.close()
            raise VcapError(f"{path.parent}: in use by another vcap process "
                            f"({'pid ' + holder if holder.isdigit() else 'starting'}); wait for it to end, "
                            f"or choose another folder") from None
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        f.close()


def hold_folder(folder: str | os.PathLike) -> contextlib.AbstractContextManager:
    """One writer at a time in `folder` (a training run's OUT, an evaluation's OUT): a second is refused."""
    return locked(Path(folder) / LOCK, wait=False)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's content, read in blocks (weights files and models are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
