"""Jobs at a batch scheduler through psij: the part the VASP and GPAW oracles share.

Why one module: submitting a job, re-attaching to it by the scheduler's id from a fresh
process, telling a walltime kill from a crash, and a scheduler that cannot be asked from a
job that failed -- these rules do not depend on the program a job runs, and a copy in each
oracle would drift. The oracles keep what differs: the inputs they write, and how they read
a finished job's output.

Status. psij learns job states from a background thread that runs the scheduler's status
command (``squeue`` for SLURM) every ``poll_interval_s``; `Scheduler.verdict` only reads
what that thread last saw, so it never blocks. A job attached in a fresh process reads as
PENDING until the thread's first look (about two seconds). Once psij says a job is final,
that verdict (state, exit code, message) is written to ``scheduler.json`` in the job folder
and is what every later poll, from any process, reads: a scheduler forgets finished jobs
after a few minutes, and a walltime kill must stay a TIMEOUT. When the scheduler cannot be
asked (``squeue`` fails; psij fails the job with "Failed to poll"), there is no verdict: the
last known status stands and the job is attached again on the next poll.

Site limits. A scheduler may refuse a submission because a per-user or per-account limit
is full (SLURM: ``QOSMaxSubmitJobPerUserLimit``, ``AssocMaxSubmitJobLimit``). That is the
site saying "later", not a verdict on the design: `Scheduler.submit` raises `SiteLimit`,
a subclass of the refusal `OracleError`, so an oracle that can keep the job queued submits
it again later.

Settings come from the constructor or the oracle's ``INNLOOP_<ORACLE>_*`` variables:
``EXECUTOR`` (default ``slurm``; any psij executor: ``pbs``, ``lsf``, ``local``...),
``QUEUE``, ``ACCOUNT``, ``WALLTIME_S``, ``NODES`` (1), ``PPN`` (1), ``LAUNCHER`` (psij's:
``single``, ``srun``, ``mpirun``...) and ``POLL_S`` (30).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psij
from psij import JobState
from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutorConfig

from agent.core.atomic import write_json
from oracles.base import JobStatus, OracleError, site_setting, site_text

__all__ = ["HOLD_S", "OUTPUT_GRACE_S", "VERDICT", "Scheduler", "SiteHold", "SiteLimit"]

VERDICT = "scheduler.json"  # a job folder's record of the scheduler's final word
_BATCH = ("slurm", "pbs", "pbs_classic", "lsf", "cobalt")
# psij's words when it could not ask the scheduler (not a verdict on the job)
_POLL_FAILURE = ("Failed to poll", "Failed to update job status", "Error updating job statuses")
_TIME_LIMIT = ("time limit", "TimeLimit", "TIMEOUT")
# a scheduler's words when a per-user or per-account limit refuses a submission for now
_SITE_LIMIT = (
    "QOSMaxSubmitJobPerUserLimit",
    "QOSMaxSubmitJobPerAccountLimit",
    "AssocMaxSubmitJobLimit",
    "GrpSubmitJobsLimit",  # SLURM: AssocGrpSubmitJobsLimit, QOSGrpSubmitJobsLimit
    "MaxSubmitJobs",
    "maximum number of jobs",  # Torque, LSF
    "would exceed",  # PBS Pro: "would exceed complex's per-user limit"
)


class SiteLimit(OracleError):
    """The scheduler refused a submission because a site limit is full: submit it later."""


HOLD_S = 5.0  # after a site limit refused a submission, the next try waits this long
OUTPUT_GRACE_S = 60.0  # a job that ended well waits this long for its output to appear (`Scheduler.output_due`)


@dataclass
class SiteHold:
    """A site limit's "later" (`SiteLimit`): why jobs wait, and when the site may be asked
    again. An oracle that submits through a scheduler keeps one, so a poll never asks a
    full site again sooner than ``HOLD_S`` after it last said no."""

    reason: str | None = None  # the site's words, while jobs wait for it
    until: float = 0.0

    def ready(self) -> bool:
        """Whether the site may be asked now; the reason is cleared once the wait is over."""
        if time.time() < self.until:
            return False
        self.reason = None
        return True

    def hold(self, exc: SiteLimit) -> None:
        self.reason, self.until = str(exc), time.time() + HOLD_S


class Scheduler:
    """One oracle's jobs at one psij executor (see the module docstring for the settings)."""

    def __init__(
        self,
        oracle: str,
        workdir: Path,
        *,
        executor: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        walltime_s: float | None = None,
        nodes: int | None = None,
        ppn: int | None = None,
        launcher: str | None = None,
        poll_interval_s: float | None = None,
        default_walltime_s: float = 3600.0,
    ) -> None:
        env = f"INNLOOP_{oracle.upper()}"
        self.oracle, self.workdir = oracle, workdir
        self.executor_name = site_text(executor, f"{env}_EXECUTOR", "slurm") or "slurm"
        self.queue = site_text(queue, f"{env}_QUEUE")
        self.account = site_text(account, f"{env}_ACCOUNT")
        self.launcher = site_text(launcher, f"{env}_LAUNCHER")
        self.walltime_s = site_setting(walltime_s, f"{env}_WALLTIME_S", default_walltime_s)
        self.nodes = int(site_setting(nodes, f"{env}_NODES", 1))
        self.ppn = int(site_setting(ppn, f"{env}_PPN", 1))
        self.poll_interval_s = site_setting(poll_interval_s, f"{env}_POLL_S", 30.0)
        if self.walltime_s <= 0 or self.nodes < 1 or self.ppn < 1 or self.poll_interval_s <= 0:
            raise OracleError(f"{oracle} oracle: walltime_s, nodes, ppn and poll_interval_s must be positive")
        self._executor: Any = None
        self.jobs: dict[str, Any] = {}  # our job id -> psij Job (submitted or attached here)
        self.last: dict[str, JobStatus] = {}  # our job id -> last non-final status seen

    def describe(self) -> dict[str, Any]:
        """The site settings a job was submitted under (for its ``job.json``)."""
        keys = ("executor_name", "queue", "account", "walltime_s", "nodes", "ppn", "launcher")
        return {k.removesuffix("_name"): getattr(self, k) for k in keys}

    @property
    def executor(self) -> Any:
        """The psij executor, made on first use (it starts psij's status thread)."""
        if self._executor is None:
            # Submit scripts and exit-code files live next to the jobs and are kept, so a
            # process that re-attaches later can still read a job's exit code.
            psij_dir = self.workdir / ".psij"
            config: Any
            if self.executor_name in _BATCH:
                config = BatchSchedulerExecutorConfig(
                    work_directory=psij_dir,
                    queue_polling_interval=max(1, math.ceil(self.poll_interval_s)),  # psij wants whole seconds
                    keep_files=True,
                )
            else:
                config = psij.JobExecutorConfig(work_directory=psij_dir)
            try:
                self._executor = psij.JobExecutor.get_instance(self.executor_name, config=config)
            except ValueError as exc:
                names = sorted(psij.JobExecutor.get_executor_names())
                raise OracleError(
                    f"{self.oracle} oracle: unknown psij executor {self.executor_name!r} "
                    f"(INNLOOP_{self.oracle.upper()}_EXECUTOR); available: {names}"
                ) from exc
        return self._executor

    def submit(
        self,
        job_id: str,
        folder: Path,
        argv: list[str],
        *,
        stdout: Path,
        stderr: Path,
        environment: dict[str, str | int] | None = None,
        memory_gb: float | None = None,
    ) -> str:
        """Submit ``argv`` to run in ``folder``; the scheduler's id for it.

        Raises `SiteLimit` when a site limit refuses it for now, `OracleError` for any other
        refusal (the scheduler down, an unknown queue...); nothing is left queued then."""
        resources = psij.ResourceSpecV1(
            node_count=self.nodes,
            processes_per_node=self.ppn,
            memory=None if memory_gb is None else int(memory_gb * 2**30),
        )
        spec = psij.JobSpec(
            executable=argv[0],
            arguments=argv[1:],
            directory=folder,
            name=f"innloop-{self.oracle}-{job_id[-8:]}",
            environment=environment,
            stdout_path=stdout,
            stderr_path=stderr,
            attributes=psij.JobAttributes(
                duration=timedelta(seconds=self.walltime_s), queue_name=self.queue, account=self.account
            ),
            resources=resources,
            launcher=self.launcher,
        )
        job = psij.Job(spec)
        try:
            self.executor.submit(job)
        except (psij.SubmitException, OSError, ValueError) as exc:  # ValueError: psij's unknown launcher
            text = " ".join(str(exc).split())
            kind = SiteLimit if any(w.lower() in text.lower() for w in _SITE_LIMIT) else OracleError
            why = f"{self.oracle} oracle: the {self.executor_name} scheduler refused the job ({text[:300]})"
            raise kind(why) from None
        self.jobs[job_id] = job
        return str(job.native_id)

    def _job(self, job_id: str, native_id: str) -> Any:
        """The psij Job: the one submitted here, or a new one attached to ``native_id``."""
        job = self.jobs.get(job_id)
        if job is None:
            job = psij.Job()
            self.executor.attach(job, native_id)
            self.jobs[job_id] = job
        return job

    def cancel(self, job_id: str, native_id: str) -> None:
        """Cancel one job (`OracleError` if the scheduler refuses)."""
        try:
            self.executor.cancel(self._job(job_id, native_id))
        except psij.SubmitException as exc:
            raise OracleError(f"{self.oracle} oracle: cancelling job {native_id} failed: {exc}") from None

    def cancel_quietly(self, job_ids: list[str]) -> None:
        """Cancel jobs submitted here, ignoring every error (undoing a refused batch)."""
        for job_id in job_ids:
            with contextlib.suppress(Exception):
                self.executor.cancel(self.jobs[job_id])

    def verdict(self, job_id: str, native_id: str, folder: Path) -> dict[str, Any] | None:
        """The scheduler's final word on a job (recorded once in ``scheduler.json``), or None
        while it runs -- updating `status_while_running` on the way."""
        record = folder / VERDICT
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(record.read_text()))
        status = self._job(job_id, native_id).status
        if status.state in (JobState.NEW, JobState.QUEUED):
            self.last.setdefault(job_id, JobStatus.PENDING)
            return None
        if status.state == JobState.ACTIVE:
            self.last[job_id] = JobStatus.RUNNING
            return None
        message = status.message or ""
        if status.state == JobState.FAILED and status.exit_code is None and message.startswith(_POLL_FAILURE):
            self.jobs.pop(job_id, None)  # the scheduler did not answer: ask again later
            return None
        verdict = {"state": status.state.name, "exit_code": status.exit_code, "message": message, "at": time.time()}
        write_json(record, verdict, indent=1)
        return verdict

    def status_while_running(self, job_id: str) -> JobStatus:
        """The last PENDING/RUNNING seen for a job without a verdict."""
        return self.last.get(job_id, JobStatus.PENDING)

    @staticmethod
    def output_due(verdict: dict[str, Any]) -> bool:
        """Whether a job that ended without its output file may still show it: it ended well
        (state COMPLETED, exit code 0) less than ``OUTPUT_GRACE_S`` ago. A file a compute node
        wrote on a shared file system (NFS) can appear on the submitting machine that much
        later, and a result judged on one look would pay for the design again."""
        ended_well = verdict.get("state") == "COMPLETED" and verdict.get("exit_code") in (0, None)
        return ended_well and time.time() - float(verdict.get("at", 0.0)) < OUTPUT_GRACE_S

    @staticmethod
    def timed_out(verdict: dict[str, Any]) -> bool:
        """Whether a verdict is a walltime kill (SLURM state TO; psij: "exhausted its time limit")."""
        return verdict["state"] == "FAILED" and any(w in (verdict.get("message") or "") for w in _TIME_LIMIT)
