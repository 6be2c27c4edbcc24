"""The report's own journal of confirmation measurements: ``<report>/confirm/``.

Confirming switching pairs costs oracle calls, and a report is re-run whenever someone
wants it fresh: a measurement must never be lost or paid twice. The confirmations go
through the job driver (`agent.insight.confirm.measure_designs`) on this folder, a
`FileJournal`:

- a design already in ``ledger.jsonl`` is answered from it without asking the oracle
  (results that failed for infrastructure reasons are not reused: a retry may succeed;
  physics failures and values are);
- a job submitted by a run that died before its result came back is re-attached through
  ``inflight.json`` (written before and right after submit, as a campaign's);
- every new result goes to the ledger (fsynced) before anyone sees it.

These measurements never enter the campaign's ledger. Reports written before the job
driver kept ``inflight.json`` as ``{design digest: {"handle": ...}}``; `confirm_journal`
turns such a file into the driver's jobs in flight, so those jobs are re-attached too.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.campaign.journal import FileJournal, Job, keep_in_flight
from agent.core.errors import StateError
from agent.insight.confirm import CONFIRM_TAG
from oracles.base import Handle, OracleError

__all__ = ["confirm_journal"]


def confirm_journal(folder: str | Path) -> FileJournal:
    """The journal in ``folder`` (created if missing), an older report's in-flight file upgraded."""
    journal = FileJournal(folder)
    path = journal.inflight_path
    if not path.exists():
        return journal
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return journal  # reading it through the journal names what is wrong
    if not isinstance(data, dict) or "sha256" in data:
        return journal  # the driver's own (sealed) file, or damage the journal reports
    jobs: list[Job] = []
    for key, entry in data.items():
        try:
            handle = Handle.from_json(entry.get("handle") if isinstance(entry, dict) else entry)
        except OracleError as exc:
            raise StateError(f"{path}: confirmation job {key!r} in flight is unreadable ({exc})") from None
        jobs.append(Job(handle.design, CONFIRM_TAG + str(key), handle=handle))
    keep_in_flight(journal, jobs)
    return journal
