"""The oracle protocol: submit -> poll -> results, with handles that survive a restart.

Oracle results are the expensive part of a campaign (node-hours of DFT, a robot's time),
so the protocol is built around never losing or repeating one:

- `submit` returns one `Handle` per design. A handle is plain JSON (oracle name, our job
  id, the back end's native id, working folder, the design itself), so a process that
  died after submitting can re-attach from saved handles instead of submitting again.
- `poll` is cheap and never blocks; `results` returns a `Result` per handle, also for
  jobs that failed, with the status, the error class (infrastructure: retrying is
  sensible; physics: e.g. SCF not converged, record it and move on), provenance and the
  log's location.
- A back end that cannot be reached raises `OracleError` from any call. From `submit`
  that must mean one of: nothing of the batch stays at the back end (undo what was
  started, as `vasp` does), or re-sending the same designs finds the jobs that did start
  (`IdempotentSubmit`, as `table` is: its answers are free), or `Adopts`: ``adopt(designs,
  since)`` finds them (as `mock`, `http`, `gpaw` and `vasp` do; it also finds the jobs of
  a process killed between submit and saving the handles). The job driver relies on it to
  retry a failed submit without paying twice.

What an oracle can do beyond the four calls is declared, never probed: it implements a
capability protocol (`Adopts`, `IdempotentSubmit`, `KeepsRunning`, `MeasuresPool`, `NamesValues`,
`ResolvesPaths`, `TakesAnswers`) and
callers check it with ``isinstance`` (``issubclass`` for a class).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from agent.core.errors import InnloopError
from agent.core.space import DesignSpace

__all__ = [
    "Adopts",
    "ErrorClass",
    "Handle",
    "IdempotentSubmit",
    "JobStatus",
    "KeepsRunning",
    "MeasuresPool",
    "NamesValues",
    "Oracle",
    "OracleError",
    "OracleRefused",
    "OracleUnavailable",
    "ResolvesPaths",
    "Result",
    "TakesAnswers",
    "absolute_command",
    "absolute_path",
    "designs_to_rows",
    "json_design",
    "resolve_path_settings",
]


class OracleError(InnloopError):
    """An oracle cannot be used as asked: bad handle, missing settings, back end down.

    A campaign treats a plain `OracleError` from a call as an outage and waits it out.
    """


class OracleRefused(OracleError):
    """The oracle answered, and waiting will not change the answer: authentication refused,
    a request it rejects, a handle or local record that is not its own or is damaged.
    A campaign stops at once on this one (with its jobs kept in flight) for a person to look."""


class OracleUnavailable(OracleError):
    """The oracle stayed unreachable past ``retry.outage_s``; its jobs are kept for the next run."""

    exit_code = 3  # the input is fine; run again once the oracle is back


class JobStatus(StrEnum):
    """Where a job stands. ``terminal`` states never change again."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)


class ErrorClass(StrEnum):
    """Why a job did not give a value: retry infrastructure faults, record physics ones."""

    INFRASTRUCTURE = "infrastructure"
    PHYSICS = "physics"


@dataclass(frozen=True)
class Handle:
    """Everything needed to find a submitted job again, from any process."""

    oracle: str
    job_id: str
    design: dict[str, Any]  # name -> number, or a category's name
    native_id: str | None = None
    workdir: str | None = None
    submitted_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Handle:
        """Rebuild a handle, naming what is wrong with a malformed one."""
        if not isinstance(data, dict):
            raise OracleError(f"a handle must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("oracle", "job_id", "design") if k not in data]
        if missing:
            raise OracleError(f"handle is missing {missing}: {json.dumps(data)[:200]}")
        unknown = sorted(set(data) - {"oracle", "job_id", "design", "native_id", "workdir", "submitted_at"})
        if unknown:
            raise OracleError(f"handle has unknown fields {unknown}")
        design = data["design"]
        if not isinstance(design, dict) or not all(
            isinstance(v, int | float | str) and not isinstance(v, bool) for v in design.values()
        ):
            raise OracleError(f"handle {data.get('job_id')!r}: design must map names to numbers or category names")
        return cls(
            oracle=str(data["oracle"]),
            job_id=str(data["job_id"]),
            design=json_design(design),
            native_id=None if data.get("native_id") is None else str(data["native_id"]),
            workdir=None if data.get("workdir") is None else str(data["workdir"]),
            submitted_at=float(data.get("submitted_at", 0.0)),
        )


@dataclass
class Result:
    """What the oracle said about one job; ``values`` only when COMPLETED."""

    handle: Handle
    status: JobStatus
    values: dict[str, float] | None = None
    error_class: ErrorClass | None = None
    message: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    log: str | None = None

    @classmethod
    def failure(
        cls,
        handle: Handle,
        error_class: ErrorClass,
        message: str,
        *,
        status: JobStatus = JobStatus.FAILED,
        provenance: dict[str, Any] | None = None,
        log: str | None = None,
    ) -> Result:
        """A job that gave no value, with why (``status``) and whose fault (``error_class``)."""
        return cls(handle, status, error_class=error_class, message=message, provenance=provenance or {}, log=log)

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.COMPLETED and self.values is not None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["handle"] = self.handle.to_json()
        d["status"] = self.status.value
        d["error_class"] = None if self.error_class is None else self.error_class.value
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        try:
            return cls(
                handle=Handle.from_json(data["handle"]),
                status=JobStatus(data["status"]),
                values=None if data.get("values") is None else {k: float(v) for k, v in data["values"].items()},
                error_class=None if data.get("error_class") is None else ErrorClass(data["error_class"]),
                message=data.get("message"),
                provenance=dict(data.get("provenance") or {}),
                log=data.get("log"),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise OracleError(f"malformed result record: {exc}") from None


@runtime_checkable
class Oracle(Protocol):
    """Anything that measures designs. Every method takes and returns lists in order."""

    name: str
    space: DesignSpace

    def submit(self, designs: Any) -> list[Handle]: ...

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]: ...

    def results(self, handles: Sequence[Handle]) -> list[Result]: ...

    def cancel(self, handles: Sequence[Handle]) -> None: ...


# -- optional capabilities: declared by implementing them, checked with isinstance --------------
@runtime_checkable
class Adopts(Protocol):
    """An oracle that finds the jobs a submit started, so a submit whose reply was lost (or a
    process killed between submit and saving its handles) is re-attached, never paid twice.

    ``adopt(designs, since)`` returns, per design, the newest job of this oracle for that
    design submitted at or after ``since`` (`time.time()`), or ``None`` (`newest_per_design`).
    """

    def adopt(self, designs: Any, since: float) -> list[Handle | None]: ...


@runtime_checkable
class IdempotentSubmit(Protocol):
    """An oracle whose `submit`, sent the same designs again after it raised, hands back the
    jobs it already has (its answers are free, as a table's are): re-sending costs nothing."""

    idempotent_submit: Literal[True]


@runtime_checkable
class MeasuresPool(Protocol):
    """An oracle that can measure only the designs it lists (a table of past results): the
    loop chooses among ``pool()`` (one row per design, the space's columns) and trains no
    generator, since generated designs could not be measured."""

    def pool(self) -> pd.DataFrame: ...


@runtime_checkable
class NamesValues(Protocol):
    """An oracle that knows before measuring which values its results carry (the mock's
    ``gap``; a table's columns): a campaign limited on another property is refused before
    anything is submitted (`agent.campaign.constraints`) instead of never finding a hit."""

    def value_names(self) -> frozenset[str]: ...


@runtime_checkable
class KeepsRunning(Protocol):
    """An oracle that cannot stop a job it started (SiLA 2 without CancelController): a job past
    ``retry.job_timeout_s`` is waited for, never cancelled and sent again (that would pay twice)."""

    cancels: Literal[False]


@runtime_checkable
class TakesAnswers(Protocol):
    """An oracle whose values a person gives (`oracles.manual`): ``innloop tell`` matches the rows
    of a results file to its ``open_jobs`` and hands each over with ``answer`` (``values``, or
    ``None`` and a ``reason`` for a failed one; who and when as keywords)."""

    def open_jobs(self) -> list[Handle]: ...

    def answer(
        self, job_id: str, values: Mapping[str, float] | None, *, reason: str | None = None, **provenance: Any
    ) -> bool: ...


def designs_to_rows(space: DesignSpace, designs: Any) -> list[dict[str, Any]]:
    """Validate designs (a table or list of dicts with the space's columns, or an ``(n, d)``
    array) into dicts of real values (`DesignSpace.to_rows`: category names, whole integers).

    Malformed designs raise one `DesignError`/`DataError` before anything is submitted.
    """
    if isinstance(designs, list) and designs and all(isinstance(d, dict) for d in designs):
        designs = pd.DataFrame.from_records(designs)
    if isinstance(designs, pd.DataFrame):
        X = space.from_frame(designs, source="designs")
    else:
        X = np.asarray(designs, dtype=np.float64)
    return space.to_rows(space.validate(X))


def site_setting(value: float | None, env: str, default: float) -> float:
    """An explicit setting, else the site's ``INNLOOP_…`` environment variable, else ``default``."""
    if value is not None:
        return float(value)
    raw = os.environ.get(env)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise OracleError(f"environment variable {env}={raw!r} is not a number") from None


@runtime_checkable
class ResolvesPaths(Protocol):
    """An oracle class whose settings include paths (a work folder, a table, a token file, a
    program): it says which, and makes them absolute against ``base`` (a campaign file's
    folder, `agent.campaign.config`). A class without it has no path settings."""

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]: ...


def absolute_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Path:
    """``path`` made absolute once, where the user gave it: ``~`` expanded, a relative path taken
    against ``base`` (default: the current folder), ``..`` folded; symbolic links are kept, not
    followed (a venv's ``bin/python`` is a link, and only by that name does it find its venv).

    Job processes start in their own folders (a GPAW job in its job folder, a scheduler job
    wherever the scheduler puts it), so a relative path handed on to them would name
    another file there; oracles keep and pass on absolute paths only.
    """
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base if base is not None else Path.cwd()) / p
    return Path(os.path.abspath(p))


def absolute_command(command: Sequence[str], base: str | os.PathLike[str] | None = None) -> list[str]:
    """An argv whose program, when given by a path (``./run.sh``, ``bin/vasp``, ``~/vasp``), is
    absolute (against ``base``, default the current folder); a bare name stays a name for
    ``PATH`` to find. The arguments are the program's own business and stay as they are."""
    argv = [str(a) for a in command]
    if argv and (os.sep in argv[0] or argv[0].startswith("~")):
        argv[0] = str(absolute_path(argv[0], base))
    return argv


def resolve_path_settings(
    settings: Mapping[str, Any], keys: Iterable[str], base: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """``settings`` with the text values of ``keys`` made absolute against ``base`` (`absolute_path`):
    the oracles' ``resolve_paths`` hooks, which a campaign file's settings go through
    (``agent.campaign.config``: relative to the file's folder)."""
    out = dict(settings)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str | os.PathLike) and str(value):
            out[key] = str(absolute_path(value, base))
    return out


def site_text(value: str | None, env: str, default: str | None = None) -> str | None:
    """An explicit text setting, else the site's ``INNLOOP_…`` variable (if non-empty), else ``default``."""
    if value is not None:
        return value
    return os.environ.get(env) or default


def json_design(design: Mapping[str, Any]) -> dict[str, Any]:
    """A design read back from JSON: category names and integers as they were, other numbers
    as floats (what `DesignSpace.to_rows` wrote)."""
    return {str(k): v if isinstance(v, str | int) else float(v) for k, v in design.items()}


def canonical_design(design: Mapping[str, Any]) -> dict[str, float | str]:
    """A design with sorted names and numbers rounded to 1e-10 (a category's name kept as it
    is): equal designs, equal JSON."""
    return {k: v if isinstance(v, str) else round(float(v), 10) for k, v in sorted(design.items())}


def design_digest(design: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical design: a stable name for "this design" across processes."""
    return hashlib.sha256(json.dumps(canonical_design(design)).encode()).hexdigest()


def newest_per_design(rows: Sequence[dict[str, float]], found: Iterable[Handle]) -> list[Handle | None]:
    """For `adopt`: per row, the newest of ``found`` with its design (``None``: none left).

    Each handle is given out once, so a design that appears twice in a batch gets its two
    jobs; the handle carries the row as submitted (the same design, canonical numbers).
    """
    by_design: dict[str, list[Handle]] = {}
    for h in found:
        by_design.setdefault(design_digest(h.design), []).append(h)
    for jobs in by_design.values():
        jobs.sort(key=lambda h: h.submitted_at)
    out: list[Handle | None] = []
    for row in rows:
        jobs = by_design.get(design_digest(row), [])
        out.append(replace(jobs.pop(), design=row) if jobs else None)
    return out


def check_own(name: str, handles: Sequence[Handle]) -> None:
    """Refuse handles that belong to another oracle: re-attaching to the wrong back end loses work."""
    for h in handles:
        if h.oracle != name:
            raise OracleRefused(f"handle {h.job_id!r} belongs to oracle {h.oracle!r}, not {name!r}")
