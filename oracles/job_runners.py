"""How a GPAW job folder's program is started and watched: on this machine, or at a scheduler.

Why two runners behind one face: the ``gpaw`` oracle's folder queue (``input.json``,
``job.json``, ``output.json``, at most ``max_parallel`` in flight) is the same whether a job
runs as a child process here or as a batch job on a cluster; only starting, watching and
stopping differ. `LocalRunner` starts a process in its own session with an address-space
limit and kills its group at the wall time; `BatchRunner` submits through psij
(`oracles.scheduler`: SLURM, PBS, LSF...), where the scheduler enforces the wall time and a
job is found again by its native id from any process.

Both are asked only about a job that has no ``output.json`` yet: a finished job's output is
the oracle's to read.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oracles.base import JobStatus, OracleError
from oracles.local_jobs import alive, kill_group
from oracles.scheduler import VERDICT, Scheduler

__all__ = ["BatchRunner", "LocalRunner", "Runner", "Watch"]


@dataclass(frozen=True)
class Watch:
    """What a started job without output is doing: PENDING or RUNNING, else why it ended
    without output (TIMEOUT, CANCELLED, or FAILED with ``message``)."""

    status: JobStatus
    message: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    log: str = "stdout.txt"  # the file beside the job that says more


class Runner(Protocol):
    """Starts, watches and stops one work folder's jobs."""

    def start(self, folder: Path, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Start ``argv`` in ``folder`` with ``env`` added to this environment; what the job's
        ``job.json`` records. Raises `OSError` or `OracleError` when it cannot be started
        (`SiteLimit`: not now, try later)."""
        ...

    def in_flight(self, folder: Path, meta: dict[str, Any]) -> bool:
        """Whether a started job still holds one of the ``max_parallel`` slots."""
        ...

    def watch(self, folder: Path, meta: dict[str, Any]) -> Watch:
        """A started job that has written no output: still going, or how it ended."""
        ...

    def stop(self, folder: Path, meta: dict[str, Any]) -> None:
        """Stop a started job (nothing if it has ended)."""
        ...


@dataclass
class LocalRunner:
    """A process on this machine, in its own session, with an address-space limit of
    ``memory_gb`` and its process group killed at ``walltime_s``."""

    walltime_s: float
    memory_gb: float

    def start(self, folder: Path, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        limit = int(self.memory_gb * 2**30)

        def limits() -> None:  # runs in the child before exec
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        with open(folder / "stdout.txt", "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=limits,
                env=os.environ | env,
            )
        now = time.time()
        return {"pid": proc.pid, "started": now, "deadline": now + self.walltime_s}

    def in_flight(self, folder: Path, meta: dict[str, Any]) -> bool:
        return "pid" in meta and alive(int(meta["pid"]))

    def watch(self, folder: Path, meta: dict[str, Any]) -> Watch:
        if "pid" not in meta:
            return Watch(JobStatus.FAILED, f"{folder.name} was started at a scheduler; this oracle runs jobs here")
        pid = int(meta["pid"])
        prov = {"pid": pid}
        if alive(pid):
            if time.time() <= float(meta.get("deadline", float("inf"))):
                return Watch(JobStatus.RUNNING, provenance=prov, log="gpaw.txt")
            kill_group(pid)
            (folder / "timed_out").touch()
        if (folder / "timed_out").exists():
            return Watch(JobStatus.TIMEOUT, f"killed after its wall time of {self.walltime_s:g} s", prov, "gpaw.txt")
        why = f"process {pid} ended without writing output.json (killed or out of memory; see stdout.txt)"
        return Watch(JobStatus.FAILED, why, prov)

    def stop(self, folder: Path, meta: dict[str, Any]) -> None:
        if "pid" in meta:
            kill_group(int(meta["pid"]))


@dataclass
class BatchRunner:
    """A batch job at ``site``'s scheduler, asking for ``memory_gb`` per node."""

    site: Scheduler
    memory_gb: float

    def start(self, folder: Path, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        native = self.site.submit(
            folder.name,
            folder,
            argv,
            stdout=folder / "stdout.txt",
            stderr=folder / "stderr.txt",
            environment=dict(env),
            memory_gb=self.memory_gb,
        )
        return {"native_id": native, "started": time.time(), **self.site.describe()}

    def in_flight(self, folder: Path, meta: dict[str, Any]) -> bool:
        """Until the scheduler's final word (asked here: a job nobody polls, its campaign
        gone, must still free its slot)."""
        if "native_id" not in meta:
            return False
        try:
            return self.site.verdict(folder.name, str(meta["native_id"]), folder) is None
        except OracleError:  # psij could not attach: count it, as the scheduler may still run it
            return True

    def watch(self, folder: Path, meta: dict[str, Any]) -> Watch:
        if "native_id" not in meta:
            return Watch(JobStatus.FAILED, f"{folder.name} was started on this machine; this oracle uses a scheduler")
        native = str(meta["native_id"])
        prov: dict[str, Any] = {"native_id": native, "executor": self.site.executor_name}
        verdict = self.site.verdict(folder.name, native, folder)
        if verdict is None:
            return Watch(self.site.status_while_running(folder.name), provenance=prov, log="gpaw.txt")
        prov["exit_code"] = verdict.get("exit_code")
        if verdict["state"] == "CANCELED":
            return Watch(JobStatus.CANCELLED, "cancelled", prov)
        if Scheduler.timed_out(verdict):
            why = f"killed by the scheduler at its wall time of {self.site.walltime_s:g} s ({verdict.get('message')})"
            return Watch(JobStatus.TIMEOUT, why, prov, "gpaw.txt")
        if Scheduler.output_due(verdict):  # a shared file system may show output.json a little later
            return Watch(JobStatus.RUNNING, "ended; waiting for output.json to appear", prov, "gpaw.txt")
        code = verdict.get("exit_code")
        how = "without an exit code (killed from outside)" if code is None else f"with exit code {code}"
        return Watch(JobStatus.FAILED, f"job {native} ended {how} and wrote no output.json; see stderr.txt", prov)

    def stop(self, folder: Path, meta: dict[str, Any]) -> None:
        if "native_id" in meta and not (folder / VERDICT).exists():
            self.site.cancel(folder.name, str(meta["native_id"]))
