"""The http oracle's journal of idempotency keys: what makes a lost reply or a crash harmless.

A key is ``sha256(namespace, design, n)``: ``namespace`` is random per work folder and
``n`` numbers the keys the journal minted, so a key is never reused for another
submission. ``WORKDIR/journal.json`` records, per design, the keys still *pending* (sent,
reply not yet seen) and the *claims* of the latest submit (key, time claimed). It is
written atomically, under an exclusive lock, BEFORE any request goes out:

- a submit that raised leaves its keys pending; submitting the same designs again
  re-sends them, so the server hands back the jobs it already has;
- a process killed after a submit returned but before its handles were saved finds the
  keys it claimed since then (`KeyJournal.newest_claims`) and re-sends those.

Only pending keys and the latest submit's claims are kept (a submit's jobs are adopted
before the next submit), so the journal stays small however long a campaign runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.core.atomic import write_json
from oracles.base import OracleRefused, canonical_design, design_digest

__all__ = ["KeyJournal", "idempotency_key"]


def idempotency_key(namespace: str, design: dict[str, Any], n: int) -> str:
    """The deterministic key of ``design`` with the ``n``-th key number of ``namespace``."""
    text = json.dumps([namespace, canonical_design(design), int(n)])
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(design: dict[str, Any]) -> str:
    return design_digest(design)[:16]


class KeyJournal:
    """``WORKDIR/journal.json`` and its lock file; one submitting process per work folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / "journal.json"

    @contextmanager
    def locked(self, write: bool = True) -> Iterator[dict[str, Any]]:
        """Read-modify-write the journal under one exclusive lock; written atomically on exit."""
        with open(self.workdir / "journal.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            journal: dict[str, Any] = {"namespace": uuid.uuid4().hex, "serial": 0, "designs": {}}
            if self.path.exists():
                try:
                    journal = json.loads(self.path.read_text())
                    entries = journal["designs"].values()
                    # a journal of per-design attempt counters: number new keys past every old one
                    journal.setdefault("serial", max((int(e.get("attempts", 0)) for e in entries), default=0))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
                    raise OracleRefused(f"{self.path} is corrupt ({exc}); it guards against duplicate jobs") from None
            yield journal
            if write:
                write_json(self.path, journal)

    def claim(self, rows: list[dict[str, float]]) -> list[str]:
        """Reuse keys still pending for these designs (a lost reply), else mint new ones; record when.

        Claims of earlier submits are dropped here: the caller adopts a submit's jobs before
        it submits again, so only pending keys and this submit's claims can still be needed.
        """
        keys: list[str] = []
        now = time.time()
        with self.locked() as journal:
            designs: dict[str, Any] = journal["designs"]
            for digest in list(designs):
                entry = designs[digest]
                entry["claims"] = []
                if not entry.get("pending"):
                    del designs[digest]
            for row in rows:
                entry = designs.setdefault(_digest(row), {"pending": [], "claims": []})
                reusable = [k for k in entry["pending"] if k not in keys]
                if reusable:
                    key = reusable[0]
                else:
                    key = idempotency_key(journal["namespace"], row, journal["serial"])
                    journal["serial"] += 1
                    entry["pending"].append(key)
                entry["claims"].append([key, now])
                keys.append(key)
        return keys

    def release(self, rows: list[dict[str, float]], keys: list[str]) -> None:
        """Keys whose replies came back are no longer re-sent by a submit (adopt still finds them)."""
        with self.locked() as journal:
            for row, key in zip(rows, keys, strict=True):
                entry = journal["designs"].get(_digest(row))
                if entry and key in entry["pending"]:
                    entry["pending"].remove(key)

    def newest_claims(self, rows: list[dict[str, float]], since: float) -> list[str | None]:
        """Per design, its newest key claimed at or after ``since`` (each key once), else ``None``."""
        keys: list[str | None] = []
        with self.locked(write=False) as journal:
            for row in rows:
                claims = journal["designs"].get(_digest(row), {}).get("claims", [])
                fresh = [k for k, t in sorted(claims, key=lambda c: -c[1]) if t >= since and k not in keys]
                keys.append(fresh[0] if fresh else None)
        return keys
