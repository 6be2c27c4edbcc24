"""A journal: where a job driver keeps results (a `Ledger`) and the jobs at the oracle.

The in-flight file is written atomically and sealed (a checksum, `agent.campaign.ledger.seal`):
before a submit it holds the designs (phase ``submitting``, with the time the submit
began), right after it the handles (phase ``submitted``). `in_flight` reads it back for
the run that re-attaches; `keep_in_flight` writes it. A campaign's folder is a journal
(`agent.campaign.store.CampaignStore`); `FileJournal` is one in a folder of its own (a
report's ``confirm/``, ``innloop measure``'s ``OUT.journal/``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.campaign.ledger import Ledger, fsync_dir, seal, unseal
from agent.core.atomic import write_json
from agent.core.errors import StateError
from oracles.base import Handle, OracleError, json_design

__all__ = ["FileJournal", "Job", "Journal", "in_flight", "keep_in_flight", "read_state_json"]


def read_state_json(path: Path, what: str) -> Any:
    """Parse a state file, turning every failure into one `StateError` that names the file and ``what``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"{path}: {what} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: cannot read {what}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}: {what} is not valid JSON (truncated or damaged?): {exc}") from None


@dataclass
class Job:
    """One design on its way through the oracle (JSON round trip via `to_json`)."""

    design: dict[str, Any]  # name -> number, or a category's name
    tag: str
    attempt: int = 1
    handle: Handle | None = None
    not_before: float = 0.0  # earliest re-submission time after a failure

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # the handle too: `Handle.to_json` is its asdict

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        h = data.get("handle")
        return cls(
            design=json_design(data["design"]),
            tag=str(data["tag"]),
            attempt=int(data.get("attempt", 1)),
            handle=None if h is None else Handle.from_json(h),
            not_before=float(data.get("not_before", 0.0)),
        )


class Journal(Protocol):
    """Where the driver keeps results (the ledger) and jobs at the oracle (the in-flight file).

    `agent.campaign.store.CampaignStore` is one; `FileJournal` is one in a folder of its own.
    """

    @property
    def ledger(self) -> Ledger: ...

    def write_inflight(self, payload: dict[str, Any]) -> None: ...

    def read_inflight(self) -> dict[str, Any] | None: ...

    def clear_inflight(self) -> None: ...


class FileJournal:
    """A `Journal` in ``folder``: ``ledger.jsonl`` and ``inflight.json`` (sealed, written atomically).

    ``create=False`` leaves the folder to be made by whoever owns it (a campaign's store
    creates its folder with the config, not when it is merely looked at).
    """

    def __init__(self, folder: str | Path, *, create: bool = True) -> None:
        self.folder = Path(folder)
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.folder / "ledger.jsonl")
        self.inflight_path = self.folder / "inflight.json"

    def write_inflight(self, payload: dict[str, Any]) -> None:
        """Record jobs at the oracle (before and after submit) so a restart can re-attach to them."""
        if not isinstance(payload, dict):
            raise StateError(f"in-flight payload must be a dict, got {type(payload).__name__}")
        write_json(self.inflight_path, seal(payload), indent=1)

    def read_inflight(self) -> dict[str, Any] | None:
        if not self.inflight_path.exists():
            return None
        return unseal(read_state_json(self.inflight_path, "the in-flight job list"), str(self.inflight_path))

    def clear_inflight(self) -> None:
        self.inflight_path.unlink(missing_ok=True)
        if self.folder.is_dir():
            fsync_dir(self.folder)


def in_flight(journal: Journal) -> tuple[list[Job], float | None]:
    """The jobs a journal holds, and when their submit began if its outcome is unknown (else ``None``)."""
    payload = journal.read_inflight()
    if not payload:
        return [], None
    try:
        jobs = [Job.from_json(j) for j in payload.get("jobs", [])]
        since = float(payload["time"]) if payload.get("phase") == "submitting" else None
    except (KeyError, TypeError, ValueError, AttributeError, OracleError) as exc:
        raise StateError(f"the jobs in flight are malformed: {exc}") from None
    return jobs, since


def keep_in_flight(journal: Journal, jobs: list[Job], *, iteration: int = 0, submitting: float | None = None) -> None:
    """Write ``jobs`` as the journal's jobs in flight (phase ``submitting`` since ``submitting``, if given)."""
    if not jobs:
        journal.clear_inflight()
        return
    phase, when = ("submitted", time.time()) if submitting is None else ("submitting", submitting)
    journal.write_inflight({"iteration": iteration, "phase": phase, "time": when, "jobs": [j.to_json() for j in jobs]})
