"""Helpers shared by the oracle tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from oracles.base import Handle, JobStatus


def submit_then_sigkill(setup: str, designs: list[list[float]], handles_file: Path) -> list[Handle]:
    """Run a process that builds an oracle (``setup`` defines ``o``), submits, saves the
    handles and is SIGKILLed while it waits; return the handles it saved."""
    code = textwrap.dedent(setup) + textwrap.dedent(f"""
        import json, time
        hs = o.submit({designs!r})
        open({str(handles_file)!r}, "w").write(json.dumps([h.to_json() for h in hs]))
        print("submitted", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return [Handle.from_json(d) for d in json.loads(handles_file.read_text())]


def wait_terminal(
    poll: Callable[[Sequence[Handle]], list[JobStatus]], handles: list[Handle], limit: float = 30
) -> list[JobStatus]:
    deadline = time.time() + limit
    while True:
        statuses = poll(handles)
        if all(s.terminal for s in statuses) or time.time() > deadline:
            return statuses
        time.sleep(0.05)
