"""A person as the oracle: the batch goes out as a CSV, the values come back by ``innloop tell``.

A lab that measures by hand (an ellipsometer, a furnace run, a colleague's calculation)
takes part in a campaign like any back end. ``submit`` writes one job file per design and
rewrites ``to_measure.csv`` in the work folder: every open job with its id and its design
in physical units, and an empty column per value wanted. The person measures, fills in the
rows they have (or marks one failed with a reason) and hands the file to ``innloop tell
CAMPAIGN results.csv`` (`agent.campaign.tell`), which checks every row and calls `answer`
per job. The running campaign (or the next ``innloop run``) polls, finds the answers and
records them in its ledger as they come: partial results are kept at once, and the jobs
without an answer stay in flight, across restarts, until each has one.

Everything lives in files written atomically, so ``tell`` from another shell, a crash of
either side, or a second ``tell`` of the same file changes nothing twice:

- ``jobs/<id>.json``: the design and when it was asked for (the handle);
- ``answers/<id>.json``: the value(s), or the failure and its reason, with who measured
  it and when; an answer is final (a different second answer is refused, the same one is
  a no-op);
- ``cancelled/<id>``: a job the campaign gave up on (``retry.job_timeout_s``): it leaves
  ``to_measure.csv``, and an answer that comes later is refused.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from agent.core.atomic import write_json, write_text
from agent.core.materials import Material, as_material
from agent.core.paths import default_state_dir
from oracles.base import (
    ErrorClass,
    Handle,
    JobStatus,
    OracleError,
    OracleRefused,
    Result,
    absolute_path,
    check_own,
    designs_to_rows,
    newest_per_design,
    resolve_path_settings,
)

__all__ = ["TO_MEASURE", "ManualOracle"]

TO_MEASURE = "to_measure.csv"  # the open jobs, for the person (and a Prefect artifact)


class ManualOracle:
    """Jobs a person measures; values arrive through `answer` (``innloop tell``).

    ``values``: the names of the values a measurement gives (default: the material's
    target); ``to_measure.csv`` has an empty column for each. ``workdir`` defaults to
    ``$INNLOOP_STATE_DIR/oracles/manual``; a campaign puts it in its own folder.
    """

    name = "manual"

    def __init__(
        self,
        workdir: str | Path | None = None,
        material: str | Material = "mos2",
        values: Sequence[str] | None = None,
    ) -> None:
        mat = as_material(material)
        self.space = mat.space
        names = [mat.target] if values is None else [str(v) for v in values]
        if not names or len(set(names)) != len(names) or set(names) & set(self.space.names):
            raise OracleError(
                f"manual oracle: values must be distinct names that are not design parameters, got {names}"
            )
        self.values = tuple(names)
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "manual"
        for sub in ("jobs", "answers", "cancelled"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``workdir`` absolute against ``base`` (a campaign file's folder)."""
        return resolve_path_settings(settings, ("workdir",), base)

    def value_names(self) -> frozenset[str]:
        """The values an answer carries (`oracles.base.NamesValues`)."""
        return frozenset(self.values)

    @property
    def sheet(self) -> Path:
        """The CSV of open jobs a person measures from."""
        return self.workdir / TO_MEASURE

    # -- the protocol ------------------------------------------------------------------
    def submit(self, designs: Any) -> list[Handle]:
        rows = designs_to_rows(self.space, designs)
        handles = []
        for row in rows:
            job_id = f"manual-{uuid.uuid4().hex[:12]}"
            h = Handle(self.name, job_id, row, native_id=job_id, workdir=str(self.workdir), submitted_at=time.time())
            write_json(self._path("jobs", job_id), h.to_json())
            handles.append(h)
        self.write_sheet()
        return handles

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        check_own(self.name, handles)
        return [self._status(h) for h in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        out = []
        for h in handles:
            status = self._status(h)
            if status is JobStatus.CANCELLED:
                out.append(
                    Result.failure(h, ErrorClass.INFRASTRUCTURE, "cancelled before anyone answered", status=status)
                )
                continue
            answer = self._answer(h.job_id)
            if answer is None:
                out.append(Result(h, status))
                continue
            prov = {k: answer[k] for k in ("by", "measured_at", "told_at", "file") if answer.get(k) is not None}
            if answer["status"] == JobStatus.COMPLETED.value:
                values = {k: float(v) for k, v in answer["values"].items()}
                out.append(Result(h, JobStatus.COMPLETED, values=values, provenance=prov))
            else:
                why = str(answer.get("reason") or "marked failed, no reason given")
                out.append(Result.failure(h, ErrorClass.PHYSICS, why, provenance=prov))
        return out

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
        for h in handles:
            if self._answer(h.job_id) is None:
                write_text(self._path("cancelled", h.job_id), f"{time.time()}\n")
        self.write_sheet()

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the newest job asked for at or after ``since`` (`oracles.base.Adopts`)."""
        found = [h for h in self._jobs() if h.submitted_at >= since]
        return newest_per_design(designs_to_rows(self.space, designs), found)

    # -- answers (`oracles.base.TakesAnswers`) -------------------------------------------
    def open_jobs(self) -> list[Handle]:
        """The jobs waiting for a person: neither answered nor cancelled, oldest first."""
        return [h for h in self._jobs() if self._status(h) is JobStatus.PENDING]

    def answer(
        self, job_id: str, values: Mapping[str, float] | None, *, reason: str | None = None, **provenance: Any
    ) -> bool:
        """Record a person's answer for one job: ``values`` (every one of `values`' names),
        or ``None`` and a ``reason`` (failed). Returns whether it was new; the same answer
        again is a no-op, a different one (or one for a cancelled or unknown job) is refused."""
        h = self._handle(job_id)
        if values is not None:
            missing = [v for v in self.values if v not in values]
            if missing:
                raise OracleRefused(f"job {job_id}: an answer needs {list(self.values)}; missing {missing}")
            body: dict[str, Any] = {
                "status": JobStatus.COMPLETED.value,
                "values": {k: float(v) for k, v in values.items()},
            }
        else:
            body = {"status": JobStatus.FAILED.value, "reason": reason or "marked failed, no reason given"}
        body |= {k: v for k, v in provenance.items() if v is not None}
        if (old := self._answer(job_id)) is not None:
            same = {k: old.get(k) for k in ("status", "values", "reason")} == {
                k: body.get(k) for k in ("status", "values", "reason")
            }
            if same:
                return False
            raise OracleRefused(f"job {job_id} was answered already ({_said(old)}); an answer is final")
        if self._status(h) is JobStatus.CANCELLED:
            raise OracleRefused(f"job {job_id} was cancelled by the campaign; its answer is not taken")
        write_json(self._path("answers", job_id), body)
        self.write_sheet()
        return True

    def write_sheet(self) -> Path:
        """Rewrite ``to_measure.csv``: the open jobs, their designs and an empty column per value."""
        jobs = self.open_jobs()
        frame = pd.DataFrame(
            {
                "job_id": [h.job_id for h in jobs],
                "asked_at": [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.submitted_at)) for h in jobs],
            }
        )
        designs = self.space.to_frame(self.space.from_rows([h.design for h in jobs], source="manual jobs"))
        frame = pd.concat([frame, designs], axis=1)
        for v in self.values:
            frame[v] = ""
        return write_text(self.sheet, frame.to_csv(index=False, float_format="%.17g"))

    # -- files -------------------------------------------------------------------------
    def _path(self, kind: str, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise OracleRefused(f"{job_id!r} is not a manual job id")
        return self.workdir / kind / (f"{job_id}.json" if kind != "cancelled" else job_id)

    def _jobs(self) -> list[Handle]:
        out = []
        for path in sorted((self.workdir / "jobs").glob("*.json")):
            if not path.name.startswith("."):
                out.append(self._read(path, Handle.from_json))
        return sorted(out, key=lambda h: (h.submitted_at, h.job_id))

    def _handle(self, job_id: str) -> Handle:
        path = self._path("jobs", job_id)
        if not path.exists():
            raise OracleRefused(f"no manual job {job_id!r} in {self.workdir}")
        return self._read(path, Handle.from_json)

    def _answer(self, job_id: str) -> dict[str, Any] | None:
        path = self._path("answers", job_id)
        return self._read(path, _checked_answer) if path.exists() else None

    def _status(self, h: Handle) -> JobStatus:
        if not self._path("jobs", h.job_id).exists():
            raise OracleRefused(f"no manual job {h.job_id!r} in {self.workdir} (a handle of another folder?)")
        answer = self._answer(h.job_id)
        if answer is not None:
            return JobStatus(answer["status"])
        return JobStatus.CANCELLED if self._path("cancelled", h.job_id).exists() else JobStatus.PENDING

    @staticmethod
    def _read(path: Path, parse: Any) -> Any:
        try:
            return parse(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise OracleRefused(f"{path}: damaged manual-oracle file ({exc})") from None


def _checked_answer(data: Any) -> dict[str, Any]:
    """An answer file's content, or an error naming what is wrong with it."""
    if not isinstance(data, dict) or data.get("status") not in (JobStatus.COMPLETED.value, JobStatus.FAILED.value):
        raise ValueError("an answer has a status 'completed' or 'failed'")
    if data["status"] == JobStatus.COMPLETED.value:
        values = data.get("values")
        if not isinstance(values, dict) or not values:
            raise ValueError("a completed answer has values")
        data["values"] = {str(k): float(v) for k, v in values.items()}
    return data


def _said(answer: Mapping[str, Any]) -> str:
    if answer["status"] == JobStatus.COMPLETED.value:
        return ", ".join(f"{k} = {v:g}" for k, v in answer["values"].items())
    return f"failed: {answer.get('reason')}"
