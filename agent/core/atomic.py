"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything innloop persists (handles of submitted jobs, results, model metadata) goes
through here, because a crash in the middle of a plain write would lose measured work.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes", "write_json", "write_text"]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see `write_bytes`."""
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike[str], payload: Any, *, indent: int | None = None) -> Path:
    return write_text(path, json.dumps(payload, indent=indent, default=str))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write to a temporary sibling, flush it to disk, then rename over ``path``.

    A sibling, so the rename never crosses file systems (which would not be atomic); a
    unique one, so concurrent writers never share it; removed again if anything fails.
    """
    path = Path(path)
    tmp = _staged(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def create_bytes(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write ``path`` atomically only if it does not exist yet; ``False`` when another writer was
    first (its file is left as it is). The complete temporary file is hard-linked into place,
    which fails when the name is taken: two processes deciding the same thing never both win."""
    path = Path(path)
    tmp = _staged(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _staged(path: Path, data: bytes) -> str:
    """``data`` in a new temporary sibling of ``path``, on disk (fsynced); its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp
