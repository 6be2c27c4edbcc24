"""A small on-disk cache for what a report computes that does not change between campaigns.

Why: the report of a two-minute campaign must not cost more than the campaign. Its
costliest part, the UMAP embedding of the bundled data, depends only on the data rows
and the embedding's settings, so it is computed once and read back by every later
report (tens of seconds the first time, milliseconds after).

Where: ``$INNLOOP_CACHE_DIR`` when set (one folder shared by every state folder of a
machine), else ``<state>/cache/``, beside everything else innloop writes. Entries that
no campaign changes at all (the default report's embedding of the bundled data) are
also shipped, read-only, in ``agent/report/data/`` (`SHIPPED`, reproduced by
``python -m agent.report.embed``), so even the first report on a new machine skips
umap-learn and numba's compilation; a shipped file is checked like any other.

Safety: entries are ``.npz`` files of plain arrays, written atomically
(`agent.core.atomic.write_bytes`) and read with ``allow_pickle=False``, so a cache file can
never run code. Each file is named by a content key (a hash of every input the entry
depends on, library versions included) and also stores that key and a SHA-256 of its
arrays: a file with another key, a bad checksum, a damaged zip or unexpected arrays is
treated as missing and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_bytes
from agent.core.paths import CACHE_ENV, cache_dir

__all__ = ["CACHE_ENV", "SHIPPED", "ArrayCache", "cache_dir", "content_key"]

SHIPPED = Path(__file__).resolve().parent / "data"
FORMAT = 1  # bump when what an entry means changes: every old entry is then recomputed
_KIND = re.compile(r"[a-z0-9-]{1,40}")


def content_key(*parts: Any) -> str:
    """A 32-hex-digit SHA-256 of ``parts``: arrays by dtype, shape and bytes; anything else as JSON."""
    h = hashlib.sha256(f"innloop-cache-{FORMAT}".encode())
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            h.update(("json:" + json.dumps(part, sort_keys=True, default=str)).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    return content_key(*(x for name in sorted(arrays) for x in (name, np.asarray(arrays[name]))))


class ArrayCache:
    """Named arrays under a content key, one ``<kind>-<key>.npz`` file per entry.

    Entries are read from ``root`` or else from the read-only ``shipped`` folders, and
    written to ``root``. ``hits``, ``misses`` and ``damaged`` count what `load` found.
    """

    def __init__(self, root: str | os.PathLike[str], shipped: tuple[Path, ...] = (SHIPPED,)) -> None:
        self.root = Path(root)
        self.shipped = shipped
        self.hits = 0
        self.misses = 0
        self.damaged = 0

    def path(self, kind: str, key: str, root: Path | None = None) -> Path:
        if not _KIND.fullmatch(kind) or not re.fullmatch(r"[0-9a-f]{32}", key):
            raise ValueError(f"bad cache entry name {kind!r}/{key!r}")
        return (self.root if root is None else root) / f"{kind}-{key}.npz"

    def load(self, kind: str, key: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
        """The finite arrays of these names and shapes stored under ``key``; None when missing, stale or damaged."""
        found = [p for p in (self.path(kind, key, r) for r in (self.root, *self.shipped)) if p.is_file()]
        if not found:
            self.misses += 1
            return None
        for path in found:
            got = self._read(path, key, shapes)
            if got is not None:
                self.hits += 1
                return got
        self.damaged += 1
        return None

    @staticmethod
    def _read(path: Path, key: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                stored = {name: np.array(z[name]) for name in z.files}
            arrays = {name: stored[name] for name in shapes}
            ok = str(stored["key"]) == key and str(stored["sha256"]) == _digest(arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        for name, shape in shapes.items():
            a = arrays[name]
            ok = ok and a.shape == tuple(shape) and a.dtype.kind in "fiub" and bool(np.isfinite(a).all())
        return arrays if ok else None

    def store(self, kind: str, key: str, arrays: Mapping[str, np.ndarray]) -> Path | None:
        """Write the entry atomically; a cache that cannot be written is no error (None)."""
        plain = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
        payload: dict[str, Any] = {"key": np.array(key), "sha256": np.array(_digest(plain)), **plain}
        buf = io.BytesIO()
        np.savez(buf, **payload)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return write_bytes(self.path(kind, key), buf.getvalue())
        except OSError:
            return None
