"""Submit a batch and collect its results without ever losing or repeating one.

The order of writes is the whole point:

1. ``inflight.json`` gets the designs (phase ``submitting``) *before* ``oracle.submit``;
2. right after submit returns, the handles (phase ``submitted``);
3. each terminal result goes to the ledger (fsync) the moment it is read, and only then
   is its job dropped from ``inflight.json``.

A process killed anywhere leaves either designs that may or may not have reached the
oracle (re-attached by the oracle's ``adopt`` when it has one, or re-sent when submitting
is idempotent there), handles to re-attach, or results already safe in the ledger.
Infrastructure failures are re-submitted after an exponential backoff, up to
``max_attempts`` per design; physics failures are recorded and never retried. A job that
runs past ``job_timeout_s`` is cancelled and recorded as TIMEOUT.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from agent.config import RetrySpec
from agent.errors import StateError
from agent.ledger import LedgerRecord
from agent.store import CampaignStore
from oracles.base import ErrorClass, Handle, JobStatus, Oracle, Result

__all__ = ["Job", "collect"]


@dataclass
class Job:
    """One design of a batch on its way through the oracle (JSON round trip via `to_json`)."""

    design: dict[str, float]
    tag: str
    attempt: int = 1
    handle: Handle | None = None
    not_before: float = 0.0  # earliest re-submission time after a failure

    def to_json(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "tag": self.tag,
            "attempt": self.attempt,
            "handle": None if self.handle is None else self.handle.to_json(),
            "not_before": self.not_before,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        h = data.get("handle")
        return cls(
            design={str(k): float(v) for k, v in data["design"].items()},
            tag=str(data["tag"]),
            attempt=int(data.get("attempt", 1)),
            handle=None if h is None else Handle.from_json(h),
            not_before=float(data.get("not_before", 0.0)),
        )


@dataclass
class _Flight:
    iteration: int
    jobs: list[Job] = field(default_factory=list)

    def save(self, store: CampaignStore, phase: str) -> None:
        if not self.jobs:
            store.clear_inflight()
            return
        payload = {"iteration": self.iteration, "phase": phase, "time": time.time()}
        store.write_inflight(payload | {"jobs": [j.to_json() for j in self.jobs]})


def _recover(oracle: Oracle, jobs: list[Job], where: str, since: float | None) -> None:
    """Give handles to jobs that were being submitted when the last process died.

    ``adopt(designs, since)`` (an optional oracle method) returns, per design, the job it
    started at or after ``since``, or ``None`` when the submission never arrived.
    """
    lost = [j for j in jobs if j.handle is None]
    if not lost or since is None:
        return
    adopt = getattr(oracle, "adopt", None)
    if callable(adopt):
        found = adopt([j.design for j in lost], since)
        for job, handle in zip(lost, found, strict=True):
            job.handle = handle
        return
    if not getattr(oracle, "idempotent_submit", False):
        raise StateError(
            f"{where}: {len(lost)} designs were being submitted to {oracle.name!r} when the last run stopped, "
            f"and that oracle cannot tell whether they arrived; check its queue, then remove {where} to go on"
        )


def collect(
    oracle: Oracle,
    store: CampaignStore,
    jobs: list[Job],
    iteration: int,
    retry: RetrySpec,
    *,
    deadline: float | None = None,
    since: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[LedgerRecord], list[Job]]:
    """Drive ``jobs`` to terminal results; return ``(new ledger records, jobs still in flight)``.

    Jobs with a ``handle`` are re-attached, the others submitted. Stops early (jobs left
    in ``inflight.json`` for the next run) when ``deadline`` (``time.time()``) passes.
    ``since``: when the last run began submitting the handle-less jobs (from its
    ``inflight.json``); ``None`` for a fresh batch.
    """
    where = str(store.root / "inflight.json")
    flight = _Flight(iteration, list(jobs))
    _recover(oracle, flight.jobs, where, since)
    ledger = store.ledger
    recorded = ledger.job_ids()
    new: list[LedgerRecord] = []
    bar = tqdm(total=len(flight.jobs), desc="oracle", unit="job", disable=not progress, leave=False)
    try:
        while flight.jobs:
            now = time.time()
            due = [j for j in flight.jobs if j.handle is None and j.not_before <= now]
            if due:
                flight.save(store, "submitting")
                handles = oracle.submit([j.design for j in due])
                for job, h in zip(due, handles, strict=True):
                    job.handle = h
                flight.save(store, "submitted")
                log(f"submitted {len(due)} designs to {oracle.name}")
            live = [j for j in flight.jobs if j.handle is not None]
            done, stuck = _finished(oracle, live, retry, now)
            if done or stuck:
                by_id = {r.handle.job_id: r for r in oracle.results([j.handle for j in done if j.handle])}
                for job in done + stuck:
                    assert job.handle is not None
                    result = by_id.get(job.handle.job_id) or _missing(job.handle, job in stuck, retry)
                    if job.handle.job_id not in recorded:
                        new.append(ledger.append(result, iteration=iteration, tag=job.tag))
                        recorded.add(job.handle.job_id)
                    flight.jobs.remove(job)
                    bar.update(1)
                    if _retryable(result) and job.attempt < retry.max_attempts:
                        wait = retry.backoff_s * 2 ** (job.attempt - 1)
                        flight.jobs.append(Job(job.design, job.tag, job.attempt + 1, None, time.time() + wait))
                        bar.total += 1
                        log(f"{result.status.value} ({result.message}); re-submitting in {wait:g} s")
                flight.save(store, "submitted")
            if not flight.jobs:
                break
            if deadline is not None and time.time() >= deadline:
                log(f"time is up with {len(flight.jobs)} jobs in flight; they are re-attached on the next run")
                break
            sleep(retry.poll_interval_s)
    finally:
        bar.close()
    return new, flight.jobs


def _finished(oracle: Oracle, live: list[Job], retry: RetrySpec, now: float) -> tuple[list[Job], list[Job]]:
    """``(jobs that reached a terminal state, jobs past their time limit)``; the latter are cancelled."""
    if not live:
        return [], []
    statuses = oracle.poll([j.handle for j in live if j.handle is not None])
    done = [j for j, s in zip(live, statuses, strict=True) if s.terminal]
    stuck: list[Job] = []
    if retry.job_timeout_s is not None:
        stuck = [
            j
            for j, s in zip(live, statuses, strict=True)
            if not s.terminal and j.handle is not None and now - j.handle.submitted_at > retry.job_timeout_s
        ]
        if stuck:
            oracle.cancel([j.handle for j in stuck if j.handle is not None])
    return done, stuck


def _missing(h: Handle, stuck: bool, retry: RetrySpec) -> Result:
    if not stuck:
        return Result.failure(
            h,
            ErrorClass.INFRASTRUCTURE,
            "the oracle reported the job finished but returned no result",
            status=JobStatus.ABANDONED,
        )
    return Result.failure(
        h,
        ErrorClass.INFRASTRUCTURE,
        f"no result after {retry.job_timeout_s:g} s: cancelled",
        status=JobStatus.TIMEOUT,
    )


def _retryable(r: Result) -> bool:
    return not r.ok and r.error_class is ErrorClass.INFRASTRUCTURE
