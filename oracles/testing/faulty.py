"""`FaultyOracle`: any oracle with scripted faults, to test what a loop does when they happen.

Real back ends fail in a handful of ways, most of them rare and none on demand. This
wrapper injects each of them deterministically, so a test (or a site checking its
set-up) can make them happen and assert what the loop did:

- job faults, chosen per design and attempt (`Fault`): from a ``script`` keyed by
  `design_digest` (the k-th submission of a design gets ``script[digest][k]``; ``None``
  or past the end: no fault), else drawn at ``rate`` from ``kinds`` with a generator
  seeded by ``(seed, design, attempt)``;
- peer faults, counted per protocol call and settable at any time: ``down`` (the next n
  calls raise `OracleError` before reaching the back end: a lab server that is down),
  ``lose_reply`` (the next n submits start their jobs, then raise: the reply was lost),
  ``slow`` (the next n calls take ``slow_s`` longer: put the wrapper behind
  `oracles.lab_server` and the http client times out).

Handles are the wrapped oracle's own; the faults of a job live in this object, so a
wrapper re-attaches only to jobs submitted through it (one process, like a test).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from oracles.base import (
    Adopts,
    ErrorClass,
    Handle,
    IdempotentSubmit,
    JobStatus,
    NamesValues,
    Oracle,
    OracleError,
    Result,
    design_digest,
)

__all__ = ["Fault", "FaultyOracle"]


class Fault(StrEnum):
    """What goes wrong with one job, and what the wrapper reports for it."""

    PHYSICS = "physics"  # FAILED, physics: the SCF never converges
    WALLTIME = "walltime"  # TIMEOUT, infrastructure: killed at the scheduler's wall time
    LOST = "lost"  # ABANDONED, infrastructure: the scheduler has no record of the job
    GARBAGE = "garbage"  # the output is not a record at all: FAILED, infrastructure
    TRUNCATED = "truncated"  # the output ends mid-record: FAILED, infrastructure
    STUCK = "stuck"  # RUNNING until cancelled: only a job time limit ends it
    LATE = "late"  # RUNNING until cancelled, ignores the cancel and completes `late_s` after it


@dataclass
class _Job:
    fault: Fault | None
    cancelled_at: float | None = None


class FaultyOracle:
    """``inner`` with faults injected; exposes ``adopt``/``idempotent_submit``/``value_names``
    only when ``inner`` does."""

    adopt: Callable[[Any, float], list[Handle | None]]  # set in __init__ when the inner oracle has it
    value_names: Callable[[], frozenset[str]]  # likewise: a result here is the inner one's, or none

    def __init__(
        self,
        inner: Oracle,
        script: Mapping[str, Sequence[Fault | None]] | None = None,
        *,
        rate: float = 0.0,
        kinds: Sequence[Fault] = tuple(Fault),
        seed: int = 0,
        late_s: float = 0.0,
        slow_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0.0 <= rate <= 1.0 or (rate and not kinds) or late_s < 0 or slow_s < 0:
            raise OracleError("FaultyOracle: rate in [0, 1] with some kinds, late_s and slow_s >= 0")
        self.inner = inner
        self.name = inner.name
        self.space = inner.space
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.rate, self.kinds, self.seed = rate, tuple(kinds), int(seed)
        self.late_s, self.slow_s, self._sleep = late_s, slow_s, sleep
        self.down = 0  # peer faults: calls left to spend (see the module docstring)
        self.lose_reply = 0
        self.slow = 0
        self.calls: Counter[str] = Counter()  # protocol calls received, failed ones included
        self.attempts: Counter[str] = Counter()  # jobs started at the inner oracle, per design digest
        self.jobs: dict[str, _Job] = {}
        if isinstance(inner, IdempotentSubmit):  # the capabilities of the inner oracle, no more
            self.idempotent_submit = True
        if isinstance(inner, Adopts):
            self.adopt = self._adopt
        if isinstance(inner, NamesValues):
            self.value_names = inner.value_names

    def __repr__(self) -> str:
        return f"FaultyOracle({self.inner!r})"

    # -- the protocol ------------------------------------------------------------------
    def submit(self, designs: Any) -> list[Handle]:
        self._call("submit")
        handles = self.inner.submit(designs)
        for h in handles:
            digest = design_digest(h.design)
            self.jobs[h.job_id] = _Job(self.fault_for(h.design, self.attempts[digest]))
            self.attempts[digest] += 1
        if self._take("lose_reply"):
            raise OracleError(f"{self.name}: the reply to a submission of {len(handles)} designs was lost (injected)")
        return handles

    def _adopt(self, designs: Any, since: float) -> list[Handle | None]:
        self._call("adopt")
        assert isinstance(self.inner, Adopts)  # set only then, in __init__
        return self.inner.adopt(designs, since)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        self._call("poll")
        return [r.status for r in self._outcomes(handles)]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        self._call("results")
        return self._outcomes(handles)

    def cancel(self, handles: Sequence[Handle]) -> None:
        self._call("cancel")
        now = time.time()
        forward = []
        for h in handles:
            job = self.jobs.get(h.job_id)
            if job is not None and job.cancelled_at is None:
                job.cancelled_at = now
            if job is None or job.fault is not Fault.LATE:  # a late job's back end never hears of the cancel
                forward.append(h)
        if forward:
            self.inner.cancel(forward)

    # -- faults ------------------------------------------------------------------------
    def fault_for(self, design: dict[str, float], attempt: int) -> Fault | None:
        """The fault of the ``attempt``-th (from 0) submission of ``design``."""
        digest = design_digest(design)
        if digest in self.script:
            planned = self.script[digest]
            return planned[attempt] if attempt < len(planned) else None
        if not self.rate:
            return None
        rng = np.random.default_rng([self.seed, int(digest[:12], 16), attempt])
        return self.kinds[int(rng.integers(len(self.kinds)))] if rng.random() < self.rate else None

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        if self._take("slow"):
            self._sleep(self.slow_s)
        if self._take("down"):
            raise OracleError(f"{self.name}: back end unreachable (injected fault; {method} refused)")

    def _take(self, counter: str) -> bool:
        left = int(getattr(self, counter))
        if left > 0:
            setattr(self, counter, left - 1)
        return left > 0

    def _outcomes(self, handles: Sequence[Handle]) -> list[Result]:
        inner = self.inner.results(handles)
        return [self._outcome(r, self.jobs.get(r.handle.job_id)) for r in inner]

    def _outcome(self, r: Result, job: _Job | None) -> Result:
        h, fault = r.handle, None if job is None else job.fault
        prov = dict(r.provenance) | {"injected_fault": None if fault is None else fault.value}
        if job is not None and fault is Fault.STUCK:
            if job.cancelled_at is None:
                return Result(h, JobStatus.RUNNING, provenance=prov)
            return Result(h, JobStatus.CANCELLED, message="cancelled", provenance=prov)
        finished_late = (
            job is not None and job.cancelled_at is not None and time.time() >= job.cancelled_at + self.late_s
        )
        if fault is Fault.LATE and not finished_late:
            return Result(h, JobStatus.RUNNING, provenance=prov)
        if fault is None or fault is Fault.LATE or not r.status.terminal:
            return r  # a late job's result is the inner one, whenever it is asked for
        if fault is Fault.PHYSICS:
            msg = "SCF did not converge within NELM electronic steps (injected)"
            return Result.failure(h, ErrorClass.PHYSICS, msg, provenance=prov, log=r.log)
        if fault is Fault.WALLTIME:
            msg = f"job {h.native_id or h.job_id} exhausted its time limit: killed by the scheduler (injected)"
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, msg, status=JobStatus.TIMEOUT, provenance=prov)
        if fault is Fault.LOST:
            msg = f"the scheduler has no record of job {h.native_id or h.job_id}: lost (injected)"
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, msg, status=JobStatus.ABANDONED, provenance=prov)
        raw = json.dumps(r.to_json())
        raw = raw[: len(raw) // 2] if fault is Fault.TRUNCATED else "\x00\x9f<html>502 Bad Gateway</html>"
        return read_output(h, raw, prov)


def read_output(h: Handle, raw: str, prov: dict[str, Any] | None = None) -> Result:
    """Parse a job's raw output (a `Result` record as JSON); anything unreadable is an infrastructure failure."""
    try:
        result = Result.from_json(json.loads(raw))
        if result.handle.job_id != h.job_id:
            raise ValueError(f"the output belongs to job {result.handle.job_id}")
        return result
    except (ValueError, TypeError, AttributeError, OracleError) as exc:
        msg = f"output of job {h.job_id} is truncated or unreadable ({type(exc).__name__}: {str(exc)[:120]})"
        return Result.failure(h, ErrorClass.INFRASTRUCTURE, msg, provenance=prov or {})
