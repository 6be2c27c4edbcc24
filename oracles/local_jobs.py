"""A local job's process, as the GPAW oracle's work folder records it: alive, dead or killed.

Why apart from the oracle: these few rules (a pid file per job, reaping our own children,
asking the kernel about anyone else's, killing a whole process group) are the part of
`oracles.gpaw` that talks to the operating system, and the part its reference job
(`oracles.gpaw_reference`) relies on through it. They need no GPAW and no campaign.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from oracles.base import OracleError, absolute_path

__all__ = ["absolute_pythonpath", "alive", "job_meta", "kill_group", "lock_lost", "take_lock"]


def absolute_pythonpath(value: str) -> str:
    """``PYTHONPATH`` with every entry absolute (an empty one means the current folder): the job
    process starts in its own folder and must import the same code as this one."""
    return os.pathsep.join(str(absolute_path(p or ".")) for p in value.split(os.pathsep))


def job_meta(folder: Path) -> dict[str, Any] | None:
    """The launched job's record, or None while it is queued: ``{"pid", "started",
    "deadline"}`` for a process here, ``{"native_id", "started", ...}`` for a batch job
    (`oracles.job_runners`)."""
    path = folder / "job.json"
    if not path.exists():
        return None
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
        if "native_id" in meta:
            if not str(meta["native_id"]).strip():
                raise ValueError("empty native_id")
        else:
            int(meta["pid"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OracleError(f"gpaw job file {path} is corrupt: {exc}") from None
    return meta


def alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children so they do not linger
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (submitted by an earlier process): ask the kernel instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def take_lock(path: Path) -> bool:
    """Create ``path`` (O_EXCL) naming this host and process; False when another holds it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}")
    return True


def lock_lost(path: Path, grace_s: float) -> bool:
    """Whether the process that took ``path`` is gone without releasing it: the lock is older
    than ``grace_s`` and its process (on this host) no longer runs. A holder that is only
    slow (``sbatch`` blocked on a busy controller) keeps its lock; one on another host, or a
    lock that names no process, is judged by its age alone."""
    try:
        if time.time() - path.stat().st_mtime <= grace_s:
            return False
        host, pid = path.read_text().split()
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return host != socket.gethostname() or not alive(int(pid))
