"""The ledger: every oracle result a campaign ever received, one checksummed JSON line each.

A result costs node-hours, so it goes to disk (append, flush, fsync) the moment it
arrives, before anything else uses it; a caller recording many at once (thousands of
jobs finishing in one poll round) may append them unsynced and `Ledger.sync` once,
before it acts on any of them. Lines are only ever appended; each carries the
SHA-256 of its own content, so a flipped bit is reported instead of silently trained on.
A crash mid-append leaves a final line with no newline: it was never acknowledged, so
readers skip it and the writer cuts it off (`Ledger.repair`) before appending again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.errors import StateError
from oracles.base import OracleError, Result

__all__ = ["EXTERNAL", "Ledger", "LedgerRecord", "canonical_json", "fsync_dir", "seal", "unseal"]

# The oracle name (and tag) of a measurement given from outside (`agent.campaign.tell`): a
# colleague's result, an earlier experiment. It counts for the models and for hits, never as
# an oracle call.
EXTERNAL = "external"


def canonical_json(body: Any) -> str:
    """The one serialisation that checksums are taken over: sorted keys, no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def _sha256(body: Any) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def seal(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (as it will read back from JSON) plus a ``sha256`` of its canonical form."""
    if "sha256" in body:
        raise StateError("a sealed record must not carry its own 'sha256' field")
    plain: dict[str, Any] = json.loads(canonical_json(body))  # what a reader will see
    return {**plain, "sha256": _sha256(plain)}


def unseal(data: Any, where: str) -> dict[str, Any]:
    """Check a sealed record's checksum and return it without the ``sha256`` field."""
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected a JSON object, got {type(data).__name__}")
    body = dict(data)
    stored = body.pop("sha256", None)
    if not isinstance(stored, str):
        raise StateError(f"{where}: no sha256 checksum")
    if _sha256(body) != stored:
        raise StateError(f"{where}: checksum mismatch (the content was altered or damaged)")
    return body


@dataclass(frozen=True)
class LedgerRecord:
    """One ledger line: the result, the iteration it belongs to and why it was measured."""

    seq: int
    iteration: int
    time: float
    result: Result
    tag: str

    @property
    def external(self) -> bool:
        """Given from outside (`EXTERNAL`), not measured by the campaign's oracle."""
        return self.result.handle.oracle == EXTERNAL

    def to_json(self) -> dict[str, Any]:
        body = {"seq": self.seq, "iteration": self.iteration, "time": self.time, "tag": self.tag}
        return seal({**body, "result": self.result.to_json()})


def fsync_dir(path: Path) -> None:
    """Make a new directory entry (a created or renamed file) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    """Append-only JSON-lines file of oracle results; each line carries a sha256 of its own content."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.torn = 0  # final lines without a newline seen by the last read (0 or 1)
        self._job_ids: set[str] | None = None  # filled by the first read, then kept up to date
        self._count = 0
        self._unsynced: tuple[bool, bool] | None = None  # (file data, directory entry) not yet fsynced

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the ledger: {exc}") from None

    def _parse(self, raw: bytes, lineno: int) -> LedgerRecord:
        where = f"{self.path} line {lineno}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateError(f"{where}: not valid JSON ({exc})") from None
        body = unseal(data, where)
        fields: dict[str, type | tuple[type, ...]] = {
            "seq": int,
            "iteration": int,
            "time": (int, float),
            "tag": str,
            "result": dict,
        }
        for key, kind in fields.items():
            value = body.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise StateError(f"{where}: field {key!r} is missing or of the wrong type")
        try:
            result = Result.from_json(body["result"])
        except OracleError as exc:
            raise StateError(f"{where}: {exc}") from None
        return LedgerRecord(body["seq"], body["iteration"], float(body["time"]), result, body["tag"])

    def records(self) -> list[LedgerRecord]:
        """Read and verify every complete line; a torn final line is skipped and counted in ``torn``."""
        lines = self._read_bytes().split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline (or is empty)
        self.torn = 1 if tail else 0
        out: list[LedgerRecord] = []
        seen: set[str] = set()
        for lineno, raw in enumerate(lines, start=1):
            rec = self._parse(raw, lineno)
            if rec.seq != len(out):
                raise StateError(f"{self.path} line {lineno}: seq {rec.seq}, expected {len(out)}")
            job_id = rec.result.handle.job_id
            if job_id in seen:
                raise StateError(f"{self.path} line {lineno}: job {job_id!r} is recorded twice")
            seen.add(job_id)
            out.append(rec)
        self._job_ids, self._count = seen, len(out)
        return out

    def repair(self) -> int:
        """Cut off a torn final line (and nothing else); return the number of bytes removed."""
        data = self._read_bytes()
        if not data or data.endswith(b"\n"):
            self.torn = 0
            return 0
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        self.torn = 0
        return len(data) - keep

    def _ensure_loaded(self) -> set[str]:
        if self._job_ids is None:
            self.records()
        assert self._job_ids is not None
        return self._job_ids

    def append(self, result: Result, *, iteration: int, tag: str = "", sync: bool = True) -> LedgerRecord:
        """Write one result (O_APPEND) and return its record; each job only once.

        ``sync=False`` leaves the fsync to a later `sync`: the caller must not act on the
        result (drop its job from ``inflight.json``) before that.
        """
        job_ids = self._ensure_loaded()
        job_id = result.handle.job_id
        if job_id in job_ids:
            raise StateError(f"{self.path}: job {job_id!r} is already in the ledger; a result is recorded once")
        if self.torn:
            self.repair()  # else the new line would be glued onto the fragment and corrupt both
        rec = LedgerRecord(self._count, int(iteration), time.time(), result, str(tag))
        line = (json.dumps(rec.to_json(), separators=(",", ":")) + "\n").encode()
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, size)  # leave no half line behind a failed write (e.g. disk full)
                raise
        finally:
            os.close(fd)
        job_ids.add(job_id)
        self._count += 1
        if sync:
            if created or (self._unsynced and self._unsynced[1]):
                fsync_dir(self.path.parent)
            self._unsynced = None
        else:
            self._unsynced = (True, created or bool(self._unsynced and self._unsynced[1]))
        return rec

    def sync(self) -> None:
        """Make every line appended with ``sync=False`` durable: one fsync for all of them."""
        if self._unsynced is None:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._unsynced[1]:
            fsync_dir(self.path.parent)
        self._unsynced = None

    def job_ids(self) -> set[str]:
        return set(self._ensure_loaded())

    def __len__(self) -> int:
        self._ensure_loaded()
        return self._count
