"""The locks that keep two processes from starting or submitting one job: a lock is lost only
when it is old and the process that took it is gone, never while a slow holder still runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from oracles.local_jobs import lock_lost, take_lock


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_lock_is_lost_only_when_old_and_its_process_is_gone(tmp_path: Path) -> None:
    mine = tmp_path / "mine.lock"
    assert take_lock(mine) and not take_lock(mine), "the second taker is refused"
    assert mine.read_text() == f"{socket.gethostname()} {os.getpid()}"
    _age(mine, 3600)
    assert not lock_lost(mine, 60), "an old lock whose holder still runs (a slow sbatch) is kept"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / "gone.lock"
    gone.write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    assert not lock_lost(gone, 60), "young: its holder may be starting the job right now"
    _age(gone, 3600)
    assert lock_lost(gone, 60)
    blank = tmp_path / "blank.lock"
    blank.touch()
    _age(blank, 3600)
    assert lock_lost(blank, 60), "a lock naming no process is judged by its age"
    assert not lock_lost(tmp_path / "none.lock", 60)
