"""`innloop serve` against a real `prefect server`, and what a user sees in its UI.

The test starts `prefect server start` on a free port (its own PREFECT_HOME), runs
`innloop serve` beside it, waits for the deployment, launches a run from it the way the
UI's "Run" button does (`run_deployment`), waits for the campaign to finish, reads its
artifacts back, then opens the progress artifact's page in headless Chromium and checks
that the embedded progress plot is drawn (the plot is the only large white area of the
dark UI; a broken image would leave only a small icon). Throughout, neither `innloop serve`
nor the flow run it starts listens beyond loopback: serving is outbound polling of the API
(Prefect's runner keeps a token-authenticated control channel to its child runs on
127.0.0.1).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from agent.testing.backends import QUICK_MODELS
from tests.chromium import FLAGS, chromium
from tests.flows.servers import stop_group

CONFIG = (
    """
name = "served"
seed = 1
[[targets]]
value = 1.0
hits = 3
[initial]
random = 20
[loop]
batch_size = 5
samples_per_target = 300
[budget]
oracle_calls = 40
"""
    + QUICK_MODELS
)


def _listening(pid: int) -> list[str]:
    """Listening TCP/UDP sockets of process ``pid`` and all its descendants (``name:addr:port``)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # gone between listing and asking: it listens on nothing any more
        for c in conns:
            if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr):
                found.append(f"{name}:{c.laddr.ip}:{c.laddr.port}")
    return found


def _beyond_loopback(sockets: Iterable[str]) -> set[str]:
    """The ``name:addr:port`` entries whose address is not 127.0.0.1 or ::1."""
    return {s for s in sockets if s.rsplit(":", 1)[0].split(":", 1)[1] not in ("127.0.0.1", "::1")}


class _ListenWatch(threading.Thread):
    """Samples `_listening` every 0.2 s until ``stop`` is set (the flow run is a child process)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop, self.seen = pid, threading.Event(), set[str]()
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.seen.update(_listening(self.pid))
            self.samples += 1


def _latest_artifacts(api: str) -> dict[str, tuple[str, str]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        by_id = {a.id: a for a in client.read_artifacts()}
        return {c.key: (str(c.latest_id), str(by_id[c.latest_id].data)) for c in client.read_latest_artifacts()}


@pytest.mark.slow
def test_serve_deployment_runs_and_ui_shows_progress(prefect_server: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = prefect_server["PREFECT_API_URL"]
    config = tmp_path / "served.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    log = tmp_path / "serve.log"
    innloop = Path(sys.executable).with_name("innloop")
    env = prefect_server | {"INNLOOP_TORCH_THREADS": "1"}
    with log.open("wb") as out:
        served = subprocess.Popen(
            [str(innloop), "serve", str(config), "--name", "served-test", "--state", str(state)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                end = time.monotonic() + 120
                while True:
                    assert served.poll() is None, f"innloop serve exited:\n{log.read_text()[-3000:]}"
                    try:
                        dep = client.read_deployment_by_name("innloop-campaign/served-test")
                        break
                    except Exception:
                        assert time.monotonic() < end, f"no deployment after 120 s:\n{log.read_text()[-3000:]}"
                        time.sleep(1)
                assert dep.parameters["config"] == str(config.resolve())
                assert dep.parameters["state_dir"] == str(state)
            assert _beyond_loopback(_listening(served.pid)) == set(), "an idle `innloop serve` listens beyond loopback"
            watch = _ListenWatch(served.pid)
            watch.start()
            try:
                run = run_deployment(  # the report has its own flow test
                    "innloop-campaign/served-test", parameters={"report": False}, timeout=300, poll_interval=2
                )
            finally:
                watch.stop.set()
                watch.join(10)
            assert watch.samples > 0, "the socket watch never ran"
            outside = _beyond_loopback(watch.seen)
            assert outside == set(), f"a process of `innloop serve` listened beyond loopback: {outside}"
            assert isinstance(run, FlowRun)
            assert run.state is not None and run.state.is_completed(), (run.state, log.read_text()[-3000:])
    finally:
        stop_group(served)

    # the campaign ran from the deployment's parameters, into the state folder it names
    assert (state / "served" / "campaign.json").exists()
    arts = _latest_artifacts(api)
    assert {"served-progress", "served-hits"} <= set(arts)
    progress_id, progress = arts["served-progress"]
    assert "data:image/png;base64," in progress and "| oracle calls |" in progress
    assert "oracle calls" in arts["served-hits"][1]

    browser = chromium()
    shot = tmp_path / "artifact.png"
    ui = api.removesuffix("/api")
    subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1400,2000",
            "--virtual-time-budget=20000",
            f"--screenshot={shot}",
            f"{ui}/artifacts/artifact/{progress_id}",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    _assert_plot_drawn(shot)


def _assert_plot_drawn(shot: Path) -> None:
    """The progress PNG (white, 600x360 px) is the UI's only large white area."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    white = (rgb > 235).all(axis=2)
    rows = np.flatnonzero(white.sum(axis=1) > 300)
    assert white.sum() > 100_000 and rows.size > 200, (
        f"the progress plot is not drawn in the Prefect UI ({int(white.sum())} white pixels; see {shot})"
    )
