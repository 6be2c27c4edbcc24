"""The job driver: submit designs and collect their results without ever losing or repeating one.

Every submitter of innloop goes through `drive`: the campaign's batches (`collect`),
``innloop measure`` (`agent.campaign.measure`) and a report's confirmation measurements
(`agent.insight.confirm`). It works on a `Journal` (`agent.campaign.journal`): a
`Ledger` of results plus an in-flight file written atomically (a campaign's folder, or
a `FileJournal` folder of its own).

The order of writes is the whole point:

1. the in-flight file gets the designs (phase ``submitting``) *before* ``oracle.submit``;
2. right after submit returns, the handles (phase ``submitted``);
3. each terminal result goes to the ledger the moment it is read (the results of one
   poll round appended together, then one fsync), and only then is its job dropped from
   the in-flight file.

A process killed anywhere leaves either designs that may or may not have reached the
oracle (re-attached by the oracle's ``adopt`` when it has one, or re-sent when submitting
is idempotent there), handles to re-attach, or results already safe in the ledger.
Infrastructure failures are re-submitted after an exponential backoff, up to
``max_attempts`` per design; physics failures are recorded and never retried. A job that
runs past ``job_timeout_s`` is cancelled and recorded as TIMEOUT, unless its result read
right after the cancel says it completed. A job id's ledger record is final: a result
that turns up later for a recorded job is logged, never recorded twice.

An oracle that cannot be reached (a call raises `OracleError`) changes nothing: the jobs
stay in flight and the calls are tried again after a backoff (``backoff_s`` doubled, at
most ``max_backoff_s``) until ``deadline``, or `OracleUnavailable` after ``outage_s``.
A submit that raised is retried as the protocol (`oracles.base`) makes safe: designs for
an `Adopts` oracle (mock, http) stay ``submitting`` and are adopted first, an
`IdempotentSubmit` oracle (table) hands back the jobs it already has, and any other
promises that a submit that raised left nothing behind (every shipped back end that
starts paid work, vasp and gpaw included, is `Adopts`). A `DesignError` or
`DataError` from submit means the oracle refused the designs before starting anything.
Each poll round costs O(jobs in flight): thousands of jobs may be in flight at once.

Two choices are the caller's. With ``refuse``, designs are submitted one at a time and
one the oracle refuses (anything but a plain `OracleError`, which is an outage) is handed
to ``refuse`` while the others go on; without it a refusal stops the run, jobs kept.
With ``orphan``, jobs a previous run left for designs no one asks for now are re-attached
when they have (or ``adopt`` finds) a handle, since they are paid for, and never submitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.campaign.config import RetrySpec
from agent.campaign.journal import Job, Journal, keep_in_flight
from agent.campaign.ledger import LedgerRecord
from agent.core.errors import DataError, DesignError, StateError
from oracles.base import (
    Adopts,
    ErrorClass,
    Handle,
    IdempotentSubmit,
    JobStatus,
    KeepsRunning,
    Oracle,
    OracleError,
    OracleRefused,
    OracleUnavailable,
    Result,
)

__all__ = ["Log", "Progress", "Refuse", "drive"]

Log = Callable[[str], None]
Progress = Callable[[int, int, int], None]  # (results recorded, jobs in flight, failed results)
Refuse = Callable[[Job, Exception], None]


@dataclass
class _Flight:
    """The jobs at the oracle; ``unsure``: when a submit whose outcome is unknown began."""

    journal: Journal
    iteration: int
    jobs: list[Job] = field(default_factory=list)
    unsure: float | None = None
    recorded: set[str] = field(default_factory=set)  # job ids in the ledger
    new: list[LedgerRecord] = field(default_factory=list)
    freed: int = 0  # results that left the flight for good (an infrastructure failure re-sent does not)

    def save(self) -> None:
        keep_in_flight(self.journal, self.jobs, iteration=self.iteration, submitting=self.unsure)

    def settle(self, finished: list[tuple[Job, Result]], retry: RetrySpec, log: Log) -> None:
        """Ledger first (one fsync for the round), then drop the jobs; queue retries after a backoff."""
        ledger = self.journal.ledger
        for job, result in finished:
            job_id = result.handle.job_id
            if job_id in self.recorded:
                log(f"job {job_id} is in the ledger already; its {result.status.value} now is not recorded again")
            else:
                self.new.append(ledger.append(result, iteration=self.iteration, tag=job.tag, sync=False))
                self.recorded.add(job_id)
        ledger.sync()
        gone = {id(job) for job, _ in finished}
        self.jobs = [j for j in self.jobs if id(j) not in gone]
        for job, result in finished:
            if not _retryable(result) or job.attempt >= retry.max_attempts:
                self.freed += 1
                continue
            wait = _backoff(retry, job.attempt)
            self.jobs.append(Job(job.design, job.tag, job.attempt + 1, None, time.time() + wait))
            log(f"{result.status.value} ({result.message}); re-submitting in {wait:g} s")


@dataclass
class _Outage:
    """Consecutive rounds in which the oracle raised: how long to wait, and when to give up."""

    since: float | None = None
    tries: int = 0

    def wait(self, oracle: Oracle, retry: RetrySpec, exc: OracleError, jobs: int, kept: str) -> float:
        now = time.time()
        self.since = now if self.since is None else self.since
        self.tries += 1
        down = now - self.since
        if down >= retry.outage_s:
            raise OracleUnavailable(
                f"oracle {oracle.name!r} unreachable for {down:.1f} s (retry.outage_s = {retry.outage_s:g}); "
                f"last error: {exc}. The {jobs} jobs in flight are {kept}"
            )
        backoff = _backoff(retry, self.tries, floor=retry.poll_interval_s)  # never hammer a peer that is down
        return max(0.0, min(backoff, self.since + retry.outage_s - now))


def _recover(oracle: Oracle, jobs: list[Job], where: str, since: float | None) -> None:
    """Give handles to jobs whose submit began at ``since`` and whose outcome is unknown (a crash).

    An `Adopts` oracle gives per design the job started since, or ``None``.
    """
    lost = [j for j in jobs if j.handle is None]
    if not lost or since is None:
        return
    if isinstance(oracle, Adopts):
        found = oracle.adopt([j.design for j in lost], since)
        for job, handle in zip(lost, found, strict=True):
            job.handle = handle
        return
    if not isinstance(oracle, IdempotentSubmit):
        raise StateError(
            f"{where}: {len(lost)} designs were being submitted to {oracle.name!r} when the last run stopped, "
            f"and that oracle cannot tell whether they arrived; check its queue, then remove {where} to go on"
        )


def drive(
    oracle: Oracle,
    journal: Journal,
    jobs: list[Job],
    retry: RetrySpec,
    *,
    iteration: int = 0,
    deadline: float | None = None,
    since: float | None = None,
    where: str = "inflight.json",
    again: str = "the next `innloop run`",
    refuse: Refuse | None = None,
    orphan: Callable[[Job], bool] | None = None,
    max_in_flight: int | None = None,
    enough: int | None = None,
    progress: Progress = lambda _done, _out, _failed: None,
    log: Log = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[LedgerRecord], list[Job]]:
    """Drive ``jobs`` to terminal results; return ``(new ledger records, jobs still in flight)``.

    ``max_in_flight``: at most that many jobs hold a handle at once (those beyond wait,
    in the journal, for a slot); the count is the journal's, so it holds across restarts.
    ``enough``: return, the other jobs kept in the journal, once that many results have
    left the flight for good (an infrastructure failure that is re-sent stays in it);
    ``0`` submits what is due, polls once and returns (an asynchronous loop's refill).

    Jobs with a ``handle`` are re-attached, the others submitted; results are recorded
    with ``iteration`` and the job's tag. Stops early (jobs left in the journal for the
    next run) when ``deadline`` (``time.time()``) passes. ``since``: when the last run
    began submitting the handle-less jobs (`in_flight`); ``None`` for a fresh batch.
    Raises `OracleUnavailable` once every call to the oracle has failed for
    ``retry.outage_s`` (``where`` names the in-flight file and ``again`` the run that
    re-attaches, for its message). ``progress`` hears the counts after every submit and
    every poll round that recorded results. ``refuse`` and ``orphan``: see the module.
    """
    flight = _Flight(journal, iteration, list(jobs), unsure=since, recorded=journal.ledger.job_ids())
    outage = _Outage()
    kept = f"kept in {where} and re-attached by {again}"

    def report() -> None:
        progress(len(flight.new), len(flight.jobs), sum(not r.result.ok for r in flight.new))

    report()
    while flight.jobs:
        now = time.time()
        try:
            if _submit_due(oracle, flight, where, now, log, refuse, orphan, max_in_flight):
                report()
            done, stuck = _finished(oracle, [j for j in flight.jobs if j.handle], retry, now)
            results = oracle.results([j.handle for j in done + stuck if j.handle]) if done or stuck else []
        except OracleRefused:
            raise  # waiting cannot fix it; the jobs stay in flight for the next run
        except OracleError as exc:
            wait = outage.wait(oracle, retry, exc, len(flight.jobs), kept)
            log(f"{oracle.name} unreachable ({exc}); {len(flight.jobs)} jobs stay in flight, retry in {wait:.3g} s")
            if deadline is not None and time.time() + wait >= deadline:
                break
            sleep(wait)
            continue
        outage = _Outage()
        by_id = {r.handle.job_id: r for r in results}
        cancelled = {id(j) for j in stuck}
        finished: list[tuple[Job, Result]] = []
        for job in done + stuck:
            assert job.handle is not None
            result = by_id.get(job.handle.job_id)
            if result is None or (id(job) in cancelled and not result.ok):  # completed as it was cancelled: kept
                result = _missing(job.handle, id(job) in cancelled, retry)
            finished.append((job, result))
        if finished:
            flight.settle(finished, retry, log)
            flight.save()
            report()
        if not flight.jobs or (deadline is not None and time.time() >= deadline):
            break
        if enough is not None and flight.freed >= enough:
            break
        sleep(_pause(flight.jobs, retry, deadline))
    if flight.jobs and (enough is None or flight.freed < enough):
        log(f"time is up with {len(flight.jobs)} jobs in flight; they are re-attached by {again}")
    return flight.new, flight.jobs


def _pause(jobs: list[Job], retry: RetrySpec, deadline: float | None) -> float:
    """``poll_interval_s``, or longer while every job waits out a backoff; never past ``deadline``."""
    now = time.time()
    wait = retry.poll_interval_s
    if not any(j.handle for j in jobs):
        wait = max(wait, min(j.not_before for j in jobs) - now)
    return wait if deadline is None else max(0.0, min(wait, deadline - now))


def _submit_due(
    oracle: Oracle,
    flight: _Flight,
    where: str,
    now: float,
    log: Log,
    refuse: Refuse | None,
    orphan: Callable[[Job], bool] | None,
    cap: int | None = None,
) -> bool:
    """Adopt what an unsure submit may have started, then submit the jobs due (handles saved at
    once), no more than leaves ``cap`` jobs with a handle.

    Returns whether any job was submitted or refused.
    """
    if flight.unsure is not None:
        _recover(oracle, flight.jobs, where, flight.unsure)
        flight.unsure = None
    if orphan is not None:
        dropped = [j for j in flight.jobs if j.handle is None and orphan(j)]
        if dropped:
            flight.jobs = [j for j in flight.jobs if not (j.handle is None and orphan(j))]
            flight.save()
            log(f"{len(dropped)} designs of an earlier run that no one asks for now are not submitted")
    due = [j for j in flight.jobs if j.handle is None and j.not_before <= now]
    if cap is not None:
        due = due[: max(0, cap - sum(j.handle is not None for j in flight.jobs))]
    if not due:
        return False
    flight.unsure = time.time()
    flight.save()
    try:
        refused = _submit(oracle, due, refuse, flight.save)
    except (DesignError, DataError):  # the designs were checked before anything started
        flight.unsure = None
        flight.save()
        raise
    except OracleError:
        if not isinstance(oracle, Adopts):  # nothing stayed behind, or re-sending finds it
            flight.unsure = None
            flight.save()
        raise
    gone = {id(job) for job, _ in refused}
    flight.jobs = [j for j in flight.jobs if id(j) not in gone]
    flight.unsure = None
    flight.save()
    for job, exc in refused:
        assert refuse is not None  # only then does `_submit` refuse a design
        refuse(job, exc)
    log(
        f"submitted {len(due) - len(refused)} designs to {oracle.name}; {len(refused)} refused"
        if refused
        else f"submitted {len(due)} designs to {oracle.name}"
    )
    return True


def _submit(
    oracle: Oracle, due: list[Job], refuse: Refuse | None, save: Callable[[], None]
) -> list[tuple[Job, Exception]]:
    """Give ``due`` their handles: in one call, or (with ``refuse``) one design at a time.

    Returns the jobs whose design the oracle refused (only with ``refuse``). A plain
    `OracleError` is an outage and stops the round, jobs submitted so far keeping their handles.
    One at a time, each handle is saved (``save``) before the next submit: a process killed
    between two submits re-attaches the jobs it started, as `Adopts` may only find the last.
    """
    if refuse is None:
        handles = oracle.submit([j.design for j in due])
        for job, h in zip(due, handles, strict=True):
            job.handle = h
        return []
    refused: list[tuple[Job, Exception]] = []
    for job in due:
        try:
            (job.handle,) = oracle.submit([job.design])
        except OracleRefused as exc:
            refused.append((job, exc))
        except OracleError:
            raise
        except Exception as exc:  # a design the oracle will not take must not stop the others
            refused.append((job, exc))
        else:
            save()  # this handle is safe before the next design is sent
    return refused


def _finished(oracle: Oracle, live: list[Job], retry: RetrySpec, now: float) -> tuple[list[Job], list[Job]]:
    """``(jobs that reached a terminal state, jobs past their time limit)``; the latter are cancelled."""
    if not live:
        return [], []
    statuses = oracle.poll([j.handle for j in live if j.handle is not None])
    done = [j for j, s in zip(live, statuses, strict=True) if s.terminal]
    running = [j for j, s in zip(live, statuses, strict=True) if not s.terminal]
    limit = None if isinstance(oracle, KeepsRunning) else retry.job_timeout_s  # cancelling would pay twice
    stuck = [] if limit is None else [j for j in running if j.handle and now - j.handle.submitted_at > limit]
    if stuck:
        oracle.cancel([j.handle for j in stuck if j.handle is not None])
    return done, stuck


def _missing(h: Handle, stuck: bool, retry: RetrySpec) -> Result:
    if stuck:
        why = f"no result after {retry.job_timeout_s:g} s: cancelled"
        return Result.failure(h, ErrorClass.INFRASTRUCTURE, why, status=JobStatus.TIMEOUT)
    why = "the oracle reported the job finished but returned no result"
    return Result.failure(h, ErrorClass.INFRASTRUCTURE, why, status=JobStatus.ABANDONED)


def _backoff(retry: RetrySpec, n: int, floor: float = 0.0) -> float:
    """The ``n``-th wait: ``backoff_s`` (at least ``floor``) doubled ``n - 1`` times, at most ``max_backoff_s``."""
    return min(max(retry.backoff_s, floor) * 2 ** (n - 1), retry.max_backoff_s)


def _retryable(r: Result) -> bool:
    return not r.ok and r.error_class is ErrorClass.INFRASTRUCTURE
