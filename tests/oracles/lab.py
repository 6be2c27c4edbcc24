"""Start the reference lab server for tests: in a thread (fast) or as a process (killable)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tests.oracles.helpers import free_port


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


def start_process(state_dir: Path, port: int, token: str, oracle_settings: dict[str, object]) -> subprocess.Popen[str]:
    """Run ``python -m oracles.lab_server`` (mock inside) and wait until it answers."""
    cmd = [sys.executable, "-m", "oracles.lab_server", "--port", str(port), "--state-dir", str(state_dir)]
    cmd += ["--oracle-settings", json.dumps(oracle_settings), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=os.environ | {"INNLOOP_LAB_TOKEN": token}, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, f"lab server exited with {proc.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", headers={"Authorization": f"Bearer {token}"}).is_success:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    kill(proc)
    raise AssertionError("lab server process did not start")


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stats(url: str, token: str) -> int:
    """Jobs the lab server holds: submissions counted at the back end."""
    resp = httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {token}"})
    resp.raise_for_status()
    jobs: int = resp.json()["jobs"]
    return jobs
