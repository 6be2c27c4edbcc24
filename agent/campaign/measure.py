"""Measure designs once each through the job driver, resumably: ``innloop measure`` and confirmation.

`measure_rows` takes designs to the oracle on a `Journal` (`agent.campaign.journal`): a
design whose result is already in the journal's ledger is answered from it, a job a
killed run left in flight is re-attached, and only the rest is submitted. A result is
final when it is a value or a physics failure; one that failed for infrastructure
reasons (after the retries `RetrySpec` allows) is tried again by the next call. Records
carry the tag ``<tag><design digest>``, so one ledger serves any set of designs.

`measure` is ``innloop measure``: its journal is the folder ``OUT.journal/`` beside the
output (``ledger.jsonl``, ``inflight.json``); the output CSV is written from the ledger
once every design has a result. Running the same command again (after Ctrl-C, a killed
shell, ``--timeout``, an outage) re-attaches to the jobs in flight and never submits a
design already recorded. The journal and every rule are those of a campaign's batch:
outages waited out (``outage_s``, then `OracleUnavailable`), time limits
(``job_timeout_s``: cancelled, TIMEOUT), infrastructure failures retried with backoff.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agent.campaign.config import RetrySpec
from agent.campaign.driver import Log, Progress, Refuse, drive
from agent.campaign.journal import FileJournal, Job, Journal, in_flight, keep_in_flight
from agent.core.atomic import write_text
from agent.core.errors import ConfigError, StateError
from oracles.base import (
    ErrorClass,
    Handle,
    Oracle,
    OracleError,
    Result,
    absolute_path,
    design_digest,
    designs_to_rows,
)

__all__ = ["Tally", "final", "journal_path", "latest_results", "measure", "measure_retry", "measure_rows"]

MEASURE_TAG = "measure:"


@dataclass
class Tally:
    """Distinct designs of `measure_rows` calls: answered from the ledger, re-attached, submitted now."""

    reused: int = 0
    reattached: int = 0
    submitted: int = 0


def final(result: Result) -> bool:
    """A result no retry would change: a value, or a failure that is not the infrastructure's."""
    return result.ok or result.error_class is not ErrorClass.INFRASTRUCTURE


def latest_results(journal: Journal, tag: str, oracle: str) -> dict[str, Result]:
    """Per design digest, the last result the journal's ledger holds from ``oracle`` under ``tag``."""
    out: dict[str, Result] = {}
    for rec in journal.ledger.records():
        if rec.tag.startswith(tag) and rec.result.handle.oracle == oracle:
            out[rec.tag.removeprefix(tag)] = rec.result
    return out


def measure_rows(
    oracle: Oracle,
    rows: Sequence[dict[str, float]],
    journal: Journal,
    retry: RetrySpec,
    *,
    tag: str = MEASURE_TAG,
    where: str = "inflight.json",
    again: str = "the next call",
    deadline: float | None = None,
    refuse: Refuse | None = None,
    tally: Tally | None = None,
    progress: Progress = lambda _done, _out, _failed: None,
    log: Log = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Job]:
    """Bring every design of ``rows`` to a final result in ``journal`` (see the module); return
    the jobs still in flight when ``deadline`` passed (none otherwise).

    The results are read back with `latest_results`. ``refuse``: submit one design at a
    time and hand those the oracle refuses to it (`agent.campaign.driver.drive`).
    In-flight jobs for designs not in ``rows`` (or already answered) are re-attached if
    paid for, never submitted. Raises what `drive` raises (`OracleUnavailable`, `OracleRefused`, ...).
    """
    wanted: dict[str, dict[str, float]] = {}
    for row in rows:
        wanted.setdefault(design_digest(row), row)
    known = {k for k, r in latest_results(journal, tag, oracle.name).items() if final(r)}
    jobs, since = in_flight(journal)
    flying = {j.tag.removeprefix(tag) for j in jobs if j.tag.startswith(tag)}
    new = [Job(row, tag + key) for key, row in wanted.items() if key not in known | flying]
    if tally is not None:
        tally.reused += len(known & wanted.keys())
        tally.reattached += len((flying - known) & wanted.keys())
        tally.submitted += len(new)
    if new or jobs:
        log(f"{len(wanted)} designs: {len(known & wanted.keys())} in the ledger, {len(new)} to submit")

    def orphan(job: Job) -> bool:  # not asked for now, or already answered: never submitted
        key = job.tag.removeprefix(tag)
        return key not in wanted or key in known

    _, left = drive(
        oracle,
        journal,
        jobs + new,
        retry,
        since=since,
        deadline=deadline,
        where=where,
        again=again,
        refuse=refuse,
        orphan=orphan,
        progress=progress,
        log=log,
        sleep=sleep,
    )
    return left


def measure_retry(
    *,
    poll_s: float = 1.0,
    job_timeout_s: float | None = None,
    outage_s: float = 3600.0,
    max_attempts: int = 3,
) -> RetrySpec:
    """The `RetrySpec` of ``innloop measure``'s flags, with one clear error for a bad value."""
    try:
        return RetrySpec().updated(
            poll_interval_s=poll_s, job_timeout_s=job_timeout_s, outage_s=outage_s, max_attempts=max_attempts
        )
    except ConfigError as exc:
        raise ConfigError(f"innloop measure: {exc}") from None


def journal_path(out: Path) -> Path:
    """``OUT.journal``: the folder that keeps a measurement's results and jobs in flight."""
    return out.with_name(out.name + ".journal")


def measure(
    oracle: Oracle,
    designs: Any,
    out: str | Path,
    *,
    retry: RetrySpec | None = None,
    poll_interval: float | None = None,
    timeout_s: float | None = None,
    log: Log = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Measure ``designs`` (the oracle space's columns) and write one row per design to ``out``.

    A relative ``out`` is taken against the current folder, once. ``retry``: the driver's
    rules (default `RetrySpec`'s), ``poll_interval`` overriding its ``poll_interval_s``.
    ``timeout_s``: stop waiting after that long (`OracleError`; the jobs keep running and
    the next call re-attaches to them). Identical designs are measured once.
    """
    out = absolute_path(out)
    rows = designs_to_rows(oracle.space, designs)
    rules = (retry or RetrySpec()).updated(poll_interval_s=poll_interval)
    out.parent.mkdir(parents=True, exist_ok=True)
    journal = FileJournal(journal_path(out))
    _upgrade_handles(out, journal)
    _check_oracle(journal, oracle.name)
    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(f"innloop measure: --timeout must be a positive number of seconds, got {timeout_s}")
    deadline = None if timeout_s is None else time.time() + timeout_s
    left = measure_rows(
        oracle,
        rows,
        journal,
        rules,
        where=str(journal.inflight_path),
        again="running the same `innloop measure` again",
        deadline=deadline,
        progress=lambda done, flying, failed: log(f"{done} results, {flying} jobs in flight ({failed} failed)"),
        log=log,
        sleep=sleep,
    )
    if left:
        raise OracleError(
            f"{len(left)} of {len(rows)} designs still at the oracle after {timeout_s:g} s; "
            f"run the same command again to re-attach (jobs kept in {journal.folder})"
        )
    table = _table(rows, latest_results(journal, MEASURE_TAG, oracle.name))
    write_text(out, table.to_csv(index=False, float_format="%.6g"))
    done = int((table["status"] == "completed").sum())
    log(f"wrote {len(table)} rows to {out}: {done} completed, {len(table) - done} not")
    return table


def _table(rows: list[dict[str, float]], results: dict[str, Result]) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for row in rows:
        r = results.get(design_digest(row))
        if r is None:  # cannot happen once every job has finished; said plainly if it does
            records.append(dict(row) | {"status": "not measured"})
            continue
        rec: dict[str, Any] = dict(row)
        rec.update(r.values or {})
        rec.update(
            status=r.status.value,
            error_class=None if r.error_class is None else r.error_class.value,
            message=r.message,
            oracle=r.handle.oracle,
            job_id=r.handle.job_id,
            log=r.log,
        )
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _check_oracle(journal: FileJournal, name: str) -> None:
    """Refuse a journal that holds another oracle's results or jobs: they are not this oracle's answers."""
    jobs, _ = in_flight(journal)
    others = {r.result.handle.oracle for r in journal.ledger.records()} | {j.handle.oracle for j in jobs if j.handle}
    others.discard(name)
    if others:
        raise StateError(
            f"{journal.folder} keeps the measurements of oracle {sorted(others)[0]!r}, not {name!r}; "
            "choose another --out, or remove that folder if those results no longer matter"
        )


def _upgrade_handles(out: Path, journal: FileJournal) -> None:
    """Jobs in ``OUT.handles.json`` (written by innloop before the journal) become jobs in flight."""
    old = out.with_name(out.name + ".handles.json")
    if not old.exists():
        return
    try:
        handles = [Handle.from_json(h) for h in json.loads(old.read_text(encoding="utf-8"))["handles"]]
    except (OSError, ValueError, KeyError, TypeError, OracleError) as exc:
        raise StateError(f"{old}: unreadable ({exc}); it holds the handles of submitted jobs: repair it") from None
    jobs, since = in_flight(journal)
    recorded = journal.ledger.job_ids() | {j.handle.job_id for j in jobs if j.handle}
    jobs += [
        Job(h.design, MEASURE_TAG + design_digest(h.design), handle=h) for h in handles if h.job_id not in recorded
    ]
    keep_in_flight(journal, jobs, submitting=since)
    old.unlink()
