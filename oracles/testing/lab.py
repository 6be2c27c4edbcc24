"""The reference lab server as a separate process, for tests and benchmarks.

A process (not a thread) because what is measured or killed must be a real peer: the
fault harness SIGKILLs campaigns around it, the soak benchmark reads its peak memory,
and the http tests kill and restart it on the same state folder. The token reaches it
through the environment, never the command line (which other users can read).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["free_port", "free_ports", "lab_jobs", "start_lab", "stop_lab"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` different loopback ports nobody listens on now (all bound at once: one at a time,
    the system may hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def start_lab(
    state_dir: Path,
    token: str,
    oracle_settings: Mapping[str, Any] | None = None,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    oracle: str = "mock",
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m oracles.lab_server`` (``oracle`` inside, the mock by default) on 127.0.0.1;
    returns it and its URL once it answers."""
    port = free_port() if port is None else port
    cmd = [sys.executable, "-m", "oracles.lab_server", "--port", str(port), "--state-dir", str(state_dir)]
    cmd += ["--oracle", oracle]
    cmd += ["--oracle-settings", json.dumps(dict(oracle_settings or {})), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=os.environ | dict(env or {}) | {"INNLOOP_LAB_TOKEN": token})
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/v1/health", headers={"Authorization": f"Bearer {token}"}).is_success:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    code = proc.poll()
    stop_lab(proc, kill=True)
    raise RuntimeError(f"the lab server on port {port} did not start ({'exit ' + str(code) if code else 'no answer'})")


def stop_lab(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGINT (a clean uvicorn shutdown) or, with ``kill``, SIGKILL; then reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(timeout=30)


def lab_jobs(url: str, token: str) -> int:
    """Jobs the lab server holds (``/v1/stats``): submissions counted at the back end."""
    resp = httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {token}"})
    resp.raise_for_status()
    return int(resp.json()["jobs"])
