"""Start the reference lab server for tests: in a thread (fast) or as a process (killable)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from oracles.testing.lab import free_port, lab_jobs, start_lab, stop_lab


@contextmanager
def thread_server(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on loopback (``port``, default a free one) from a thread; yield its base URL."""
    port = free_port() if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "lab server thread did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def start_process(
    state_dir: Path, port: int, token: str, oracle_settings: dict[str, object]
) -> subprocess.Popen[bytes]:
    """Run ``python -m oracles.lab_server`` (mock inside) on ``port`` and wait until it answers."""
    proc, _ = start_lab(state_dir, token, oracle_settings, port=port, timeout_s=30)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    stop_lab(proc, kill=True)


stats = lab_jobs
