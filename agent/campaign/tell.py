"""``innloop tell CAMPAIGN results.csv``: values measured by people, for jobs or from outside.

One file, two kinds of row, told apart by matching, never by guessing:

- a row for a job a person was asked to measure (the `manual` oracle, `oracles.manual`):
  its ``job_id``, or its design when no ``job_id`` is given, names an open job. It goes to
  the oracle as that job's answer (values, or ``status = failed`` and a ``reason``); the
  campaign's driver records it in the ledger like any oracle result.
- any other row is a measurement from outside: a colleague's result, an earlier experiment.
  It enters the ledger as ``external`` (`agent.campaign.ledger.EXTERNAL`) with who measured
  it and when (``by``, ``measured_at``, ``note``: free text from the file). It counts for the
  models and for hits, never as an oracle call, and never for the oracle-call budget.

Every row is checked before anything is written, and every bad one is named on its own
line (its line in the file, and what is wrong): a column that is neither a design parameter,
a measured value nor one of `META`; a design outside the space; a value that is missing or
not a number; a design the ledger (or the file itself) holds with another value; a design in
flight at an automatic oracle (its result comes from there). A row the ledger already holds
with the same value is skipped, so telling a file twice is harmless.

External rows wait in ``external/`` (one sealed file per ``tell``) and enter the ledger
under the campaign's run lock: at once when no run holds it, else at the running campaign's
next iteration (`ingest`). Their job ids are derived from the file's content and the row,
so a crash between the ledger and the removal of the waiting file records nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agent.campaign.config import CampaignConfig
from agent.campaign.journal import in_flight, read_state_json
from agent.campaign.ledger import EXTERNAL, LedgerRecord, seal, unseal
from agent.campaign.store import CampaignStore
from agent.core.atomic import write_json
from agent.core.errors import DataError, StateError
from oracles.base import Handle, JobStatus, NamesValues, Oracle, Result, TakesAnswers, design_digest

__all__ = ["META", "Answer", "Told", "ingest", "read_told", "tell_campaign", "waiting", "write_told"]

META = ("job_id", "asked_at", "status", "reason", "by", "measured_at", "note")  # besides designs and values
INBOX = "external"  # the campaign's folder of told external rows waiting for the ledger
_FAILED = {"failed", "fail"}
_COMPLETED = {"", "completed", "ok", "done"}


@dataclass(frozen=True)
class Answer:
    """A row for one of a person's open jobs: its values, or ``None`` and why it failed."""

    job_id: str
    values: dict[str, float] | None
    reason: str | None
    provenance: dict[str, str]


@dataclass
class Told:
    """A results file checked row by row: what goes where, and what was skipped (and why)."""

    answers: list[Answer] = field(default_factory=list)
    external: list[dict[str, Any]] = field(default_factory=list)  # {"job_id", "design", "values", provenance…}
    skipped: list[str] = field(default_factory=list)


def read_told(
    path: Path,
    config: CampaignConfig,
    records: list[LedgerRecord],
    busy: Mapping[str, str],
    oracle: Oracle | None,
    waiting: Mapping[str, dict[str, float]] | None = None,
) -> Told:
    """Check every row of ``path`` against the campaign; raise one `DataError` listing every bad row.

    ``records``: the ledger; ``busy``: design digest -> why the oracle will measure it (a job in
    the journal, a batch chosen and not sent yet: `busy_designs`); ``waiting``: design digest ->
    values of external rows told earlier that wait for the ledger; ``oracle``: the campaign's
    oracle when it takes answers from people (`oracles.base.TakesAnswers`), else ``None``.
    """
    material = config.design_material()
    space = material.space
    frame = _read_csv(path)
    names = set(space.names)
    measured = [material.target, *(c.property for c in config.constraints)]
    if isinstance(oracle, NamesValues):
        measured += sorted(set(oracle.value_names()) - set(measured))
    columns = [  # an unknown column is named beside the bad rows
        f"{path}: column {c!r} is neither a design parameter of {space.name!r} ({', '.join(space.names)}), "
        f"a measured value ({', '.join(measured)}) nor one of {', '.join(META)}"
        for c in frame.columns
        if c not in names and c not in measured and c not in META
    ]
    missing = [f"{path}: missing design column {n!r}" for n in space.names if n not in frame.columns]
    if material.target not in frame.columns:
        missing.append(f"{path}: missing the measured value's column {material.target!r}")
    if missing:  # no row can be read: the file's columns are the problem
        raise DataError("\n".join(columns + missing))
    problems: list[str] = []
    open_jobs: dict[str, Handle] = {h.job_id: h for h in oracle.open_jobs()} if isinstance(oracle, TakesAnswers) else {}
    open_by_design: dict[str, list[str]] = {}
    for h in open_jobs.values():
        open_by_design.setdefault(design_digest(h.design), []).append(h.job_id)
    known = {
        design_digest(r.result.handle.design): (
            (r.result.values or {}).get(material.target),
            f"job {r.result.handle.job_id}",
        )
        for r in records
        if r.result.ok
    }
    for key, vals in (waiting or {}).items():
        known.setdefault(key, (vals.get(material.target), "told earlier, waiting for the running campaign"))
    answering = sorted(oracle.value_names()) if isinstance(oracle, NamesValues) else [material.target]
    told: Told = Told()
    seen: dict[str, dict[str, float]] = {}
    taken: set[str] = set()
    rows: list[dict[str, str]] = [{str(k): str(v) for k, v in r.items()} for r in frame.to_dict("records")]
    for i, row in enumerate(rows):
        where = f"{path} line {i + 2}"
        try:
            design = _design(space, row, where)
            status, values, reason = _values(row, measured, material.target, where)
        except DataError as exc:
            problems.append(str(exc))
            continue
        key = design_digest(design)
        prov = {k: str(row[k]).strip() for k in ("by", "measured_at", "note") if str(row.get(k, "")).strip()}
        job_id = str(row.get("job_id", "")).strip()
        if job_id or (key in open_by_design and any(j not in taken for j in open_by_design[key])):
            if not job_id:
                job_id = next(j for j in open_by_design[key] if j not in taken)
            elif job_id not in open_jobs:
                problems.append(f"{where}: job_id {job_id!r} is not a job waiting for a person's answer")
                continue
            elif design_digest(open_jobs[job_id].design) != key:
                problems.append(f"{where}: the design differs from the one job {job_id} asks for")
                continue
            if job_id in taken:
                problems.append(f"{where}: job {job_id} is answered twice in this file")
                continue
            if values is not None and (lacking := [v for v in answering if v not in values]):
                problems.append(f"{where}: job {job_id} needs every value it measures; no {', '.join(lacking)}")
                continue
            taken.add(job_id)
            told.answers.append(Answer(job_id, values, reason, prov))
            continue
        if status == JobStatus.FAILED.value:
            problems.append(f"{where}: 'failed' is for a job a person was asked to measure; this design is none")
            continue
        assert values is not None
        if key in busy and key not in open_by_design:
            problems.append(f"{where}: this design is {busy[key]}; its result comes from the oracle")
            continue
        target = values[material.target]
        if (old := known.get(key)) is not None:
            had, which = old
            if had is None or not math.isclose(had, target, rel_tol=1e-9, abs_tol=1e-12):
                problems.append(
                    f"{where}: this design is known with {material.target} = {had} ({which}), not {target:g}"
                )
            else:
                told.skipped.append(f"{where}: already known ({which})")
            continue
        if (same := seen.get(key)) is not None:
            if same != values:
                problems.append(f"{where}: the same design appears earlier in this file with other values")
            else:
                told.skipped.append(f"{where}: the same row appears earlier in this file")
            continue
        seen[key] = values
        # named by what it says: the same measurement told twice is one ledger record
        said = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
        told.external.append({"job_id": f"{EXTERNAL}-{key[:16]}-{said}", "design": design, "values": values} | prov)
    if columns or problems:
        counts = ((len(columns), "column"), (len(problems), "row"))
        count = " and ".join(f"{n} bad {what}{'s' if n != 1 else ''}" for n, what in counts if n)
        raise DataError(f"{path}: {count}, nothing was recorded:\n" + "\n".join(columns + problems))
    return told


def tell_campaign(
    store: CampaignStore, config: CampaignConfig, path: Path, oracle: Oracle | None
) -> tuple[Told, list[LedgerRecord]]:
    """Check ``path`` (`read_told`), hand the answers to ``oracle`` and record the external rows:
    at once when no run holds the campaign's lock, else at the running campaign's next iteration.
    Returns what was told and the ledger records written now."""
    takes = oracle if isinstance(oracle, TakesAnswers) else None
    busy = busy_designs(store, config)
    told = read_told(path, config, store.ledger.records(), busy, takes, waiting_rows(store))
    write_told(store, told, path, takes, now=time.time())
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(store.running())
        except StateError:  # a run holds it: that run records them before its next iteration
            return told, []
        return told, ingest(store, store.last_completed() + 1)


def write_told(store: CampaignStore, told: Told, path: Path, oracle: Oracle | None, *, now: float) -> Path | None:
    """Hand the answers to the oracle and put the external rows in the waiting folder; return that file."""
    for a in told.answers:
        assert isinstance(oracle, TakesAnswers)  # `read_told` made answers only for such an oracle
        oracle.answer(a.job_id, a.values, reason=a.reason, file=str(path), told_at=now, **a.provenance)
    if not told.external:
        return None
    body = {"file": str(path), "told_at": now, "rows": told.external}
    name = hashlib.sha256(repr(sorted(r["job_id"] for r in told.external)).encode()).hexdigest()[:16]
    (store.root / INBOX).mkdir(exist_ok=True)
    return write_json(store.root / INBOX / f"{name}.json", seal(body), indent=1)


def ingest(store: CampaignStore, iteration: int) -> list[LedgerRecord]:
    """Record the waiting external rows in the ledger (with ``iteration``); call under the run lock.

    A row whose job id the ledger holds (a crash after recording, before the waiting file
    was removed) is not recorded again; the file goes once all of its rows are in.
    """
    folder = store.root / INBOX
    if not folder.is_dir():
        return []
    ledger, new = store.ledger, []
    have = ledger.job_ids()
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    for p in files:
        body = unseal(read_state_json(p, "told external measurements"), str(p))
        for row in body.get("rows", []):
            if row["job_id"] in have:
                continue
            provenance = {"source": EXTERNAL, "file": body["file"], "told_at": body["told_at"]}
            provenance |= {k: row[k] for k in ("by", "measured_at", "note") if k in row}
            h = Handle(EXTERNAL, row["job_id"], row["design"], submitted_at=float(body["told_at"]))
            result = Result(h, JobStatus.COMPLETED, values=dict(row["values"]), provenance=provenance)
            new.append(ledger.append(result, iteration=iteration, tag=EXTERNAL, sync=False))
        ledger.sync()
        p.unlink()
    return new


def waiting(store: CampaignStore) -> int:
    """External rows told but not yet in the ledger (a run held the lock)."""
    folder = store.root / INBOX
    total = 0
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        total += len(unseal(read_state_json(p, "told external measurements"), str(p)).get("rows", []))
    return total


# -- one row -----------------------------------------------------------------------------------
def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"results file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _design(space: Any, row: Mapping[str, str], where: str) -> dict[str, Any]:
    """The row's design (`DesignSpace.to_rows` form), or a `DataError` naming the problem."""
    one: dict[str, Any] = {}
    for p in space.parameters:
        cell = str(row[p.name]).strip()
        if p.kind == "categorical":
            one[p.name] = [cell]
            continue
        try:
            one[p.name] = [float(cell)]
        except ValueError:
            raise DataError(f"{where}: {p.name} = {cell!r} is not a number") from None
    X = space.from_frame(pd.DataFrame(one), source=where)
    if (why := space.problems(X)[0]) is not None:
        raise DataError(f"{where}: outside the design space: {why}")
    row_out: dict[str, Any] = space.to_rows(X)[0]
    return row_out


def _values(
    row: Mapping[str, str], measured: list[str], target: str, where: str
) -> tuple[str, dict[str, float] | None, str | None]:
    """``(status, values, reason)`` of a row: a finite target (and any other value given), or failed."""
    status = str(row.get("status", "")).strip().lower()
    if status in _FAILED:
        reason = str(row.get("reason", "")).strip()
        if not reason:
            raise DataError(f"{where}: a failed row needs a reason")
        return JobStatus.FAILED.value, None, reason
    if status not in _COMPLETED:
        raise DataError(f"{where}: status {status!r} is neither 'completed' (or empty) nor 'failed'")
    values: dict[str, float] = {}
    for name in measured:
        cell = str(row.get(name, "")).strip()
        if not cell:
            continue
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"{where}: {name} = {cell!r} is not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{where}: {name} = {cell!r} is not a finite number")
        values[name] = v
    if target not in values:
        raise DataError(f"{where}: no {target} value (leave the row out, or mark it failed with a reason)")
    return JobStatus.COMPLETED.value, values, None


def busy_designs(store: CampaignStore, config: CampaignConfig) -> dict[str, str]:
    """Designs the oracle will measure (digest -> why): every job in the journal, with or without
    a handle, and the batch of the iteration under way (chosen, perhaps waiting for approval)."""
    jobs, _ = in_flight(store)
    out = {
        design_digest(j.design): f"in flight at the oracle ({j.handle.job_id if j.handle else 'being sent'})"
        for j in jobs
    }
    batch = store.root / "iterations" / f"{store.last_completed() + 1:04d}" / "batch.csv"
    if batch.exists():
        space = config.design_material().space
        frame = pd.read_csv(batch)
        for row in space.to_rows(space.from_frame(frame, source=str(batch))):
            out.setdefault(design_digest(row), "chosen for the iteration under way")
    return out


def waiting_rows(store: CampaignStore) -> dict[str, dict[str, float]]:
    """External rows told earlier that wait for the ledger: design digest -> values."""
    folder = store.root / INBOX
    out: dict[str, dict[str, float]] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for row in unseal(read_state_json(p, "told external measurements"), str(p)).get("rows", []):
            out[design_digest(row["design"])] = dict(row["values"])
    return out
