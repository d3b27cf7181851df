"""One way to write a file that must never be half-written: the library, the report store, every export.

``atomic_write(path)`` hands out a temporary path in the same folder; when the block ends without an
error the file is fsynced, given its final mode and renamed over ``path`` (or linked to it when
``overwrite=False``), and the folder is fsynced so the rename survives a power cut. On any error the
temporary file is removed and ``path`` is untouched: a reader sees the old file or the new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path, mode: int = 0o644, overwrite: bool = True) -> Iterator[Path]:
    """Context manager: yields a temporary ``Path`` to write; on success it replaces ``path`` atomically.

    ``overwrite=False`` raises FileExistsError if ``path`` exists, also when it appears while writing.
    OSError (read-only folder, full disk) propagates after the temporary file is removed.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another name")
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".partial", dir=path.parent)  # a long name fits
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written to {path.name}; the file was left as it was")
        _fsync_file(tmp)
        os.chmod(tmp, mode)  # mkstemp makes it 0o600
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write_text(path, text: str, mode: int = 0o644, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8, '\\n' line ends) to ``path`` through ``atomic_write``."""
    with atomic_write(path, mode, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return Path(path)


@contextmanager
def atomic_folder(path) -> Iterator[Path]:
    """A folder built under a temporary name and swapped in whole (checkpoints): never half a folder."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); folders cannot be opened for fsync on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _link_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists; a hard link makes the check and the move one step."""
    try:
        os.link(tmp, path)  # FileExistsError if path exists, atomically
    except FileExistsError:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or choose another name"
        ) from None
    except OSError:  # no hard links on this filesystem (FAT, some network shares): check, then rename
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; pass overwrite=True to replace it, or choose another name"
            ) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
