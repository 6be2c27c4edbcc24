"""The oracles of the kill matrix: configs, per-case set-up, and counting at the oracle.

- ``mock``: the embedded emulator; its job files are the submissions. The config trains
  real (tiny) models from iteration 1 on, so kills land inside training and sampling too;
  ``ray = True`` samples on Ray actors (a private local Ray, as ``innloop run`` starts).
- ``http``: a lab server process on loopback (`oracles.lab_server`, the mock inside,
  jobs pending for ``latency_s``); url and token reach the campaign through
  ``INNLOOP_HTTP_URL``/``INNLOOP_HTTP_TOKEN``, never through the config file. Counted in
  the server's jobs folder and by ``GET /v1/stats``.
- ``vasp``: `oracles.vasp.VaspOracle` through a real local SLURM
  (`oracles.testing.slurm`), `oracles.testing.fake_vasp` as VASP. Counted in slurmctld's
  log of accepted ``sbatch`` calls, mapped to designs through the job folders.

The http and vasp configs are small (8 designs in 3 iterations, below the training
threshold): what they test is the oracle's side of a kill, not the models.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from agent.testing.kills import ENV, NAME, Case
from oracles.base import design_digest

__all__ = [
    "MOCK_CONFIG",
    "SMALL_ITERATIONS",
    "http_case",
    "mock_case",
    "mock_config",
    "small_config",
    "vasp_case",
]

MOCK_ITERATIONS = 4
# small models, sampling in process, fast polling: a campaign that takes seconds, for tests
QUICK_MODELS = """[models]
members = 3
surrogate_epochs = 40
surrogate_warm_epochs = 10
generator_epochs = 20
generator_warm_epochs = 5
[ray]
enabled = false
[retry]
poll_interval_s = 0.01
"""
MOCK_CONFIG = f"""
name = "{NAME}"
seed = 3
[[targets]]
value = 0.5
hits = 50
[[targets]]
value = 1.0
hits = 50
[initial]
random = 12
[loop]
batch_size = 4
samples_per_target = 200
[budget]
iterations = {MOCK_ITERATIONS}
{QUICK_MODELS}"""

SMALL_ITERATIONS = 3


def mock_config(ray: bool = False) -> str:
    """The mock campaign; ``ray``: sample on two Ray actors of 0.25 CPU each."""
    if not ray:
        return MOCK_CONFIG
    return MOCK_CONFIG.replace("[ray]\nenabled = false", "[ray]\nenabled = true\nactors = 2\ncpus_per_actor = 0.25")


def small_config(oracle: str, settings: str = "", poll_s: float = 0.05) -> str:
    """8 designs in 3 iterations (4 seeds, then batches of 2) on ``oracle``; no training."""
    return f"""
name = "{NAME}"
seed = 5
[[targets]]
value = 1.0
hits = 50
[oracle]
name = "{oracle}"
[oracle.settings]
{settings}
[initial]
random = 4
[loop]
batch_size = 2
samples_per_target = 50
[budget]
iterations = {SMALL_ITERATIONS}
[ray]
enabled = false
[retry]
poll_interval_s = {poll_s}
"""


def _job_files(folder: Path, pattern: str) -> list[tuple[str, str]]:
    out = []
    for path in sorted(folder.glob(pattern)):
        data = json.loads(path.read_text())
        design = data["handle"]["design"] if "handle" in data else data["design"]
        out.append((path.stem, design_digest(design)))
    return out


# Points that need jobs to stay pending for a while: the mock gets a latency for them.
NEEDS_LATENCY = ("pending:", "during:measure:")


@contextlib.contextmanager
def mock_case(root: Path, point: str = "none") -> Iterator[Case]:
    """The campaign's own mock (jobs in ``STATE/crash/oracle/jobs``); 0.1 s per job where
    ``point`` needs pending jobs, else none."""
    jobs = root / "state" / NAME / "oracle" / "jobs"
    latency = "0.1" if point.startswith(NEEDS_LATENCY) else "0"
    yield Case({"INNLOOP_MOCK_LATENCY_S": latency, "DELAY": "0.02"}, lambda: _job_files(jobs, "*.json"))


@contextlib.contextmanager
def http_case(root: Path, latency_s: float = 0.3, failure_rate: float = 0.0) -> Iterator[Case]:
    """A fresh lab server for this case (its mock waits ``latency_s`` per job and fails at
    ``failure_rate``); its jobs folder and ``/v1/stats`` are the count."""
    from oracles.testing.lab import lab_jobs, start_lab, stop_lab  # the lab server (uvicorn) only for this case

    token = secrets.token_hex(16)
    lab = root / "lab"
    proc, url = start_lab(lab, token, {"latency_s": latency_s, "failure_rate": failure_rate}, env=ENV)

    def stats() -> int:
        return lab_jobs(url, token)

    env = {"INNLOOP_HTTP_URL": url, "INNLOOP_HTTP_TOKEN": token, "DELAY": "0.02"}
    try:
        yield Case(env, lambda: _job_files(lab / "jobs", "lab-*.json"), stats=stats)
    finally:
        stop_lab(proc, kill=True)


def vasp_settings(partition: str) -> str:
    command = json.dumps([sys.executable, "-m", "oracles.testing.fake_vasp"])
    return f'command = {command}\nexecutor = "slurm"\nqueue = "{partition}"\nwalltime_s = 300\npoll_interval_s = 1\n'


@contextlib.contextmanager
def vasp_case(root: Path, cluster: object) -> Iterator[Case]:
    """Jobs through ``cluster`` (a `oracles.testing.slurm.LocalSlurm`), counted in its slurmctld log."""
    from oracles.testing.slurm import LocalSlurm  # psij and the SLURM helpers only for this case

    assert isinstance(cluster, LocalSlurm)
    before = len(cluster.submitted_job_ids())
    folders = root / "state" / NAME / "oracle"

    def accepted() -> list[tuple[str, str]]:
        designs = {}
        for meta in folders.glob("*/job.json"):
            data = json.loads(meta.read_text())
            if data.get("native_id") is not None and "design" in data:
                designs[str(data["native_id"])] = design_digest(data["design"])
        return [(i, designs.get(i, f"unknown job {i}")) for i in cluster.submitted_job_ids()[before:]]

    env = cluster.env | {"FAKE_VASP_DELAY_S": "0", "FAKE_VASP_LOG": str(root / "fake_vasp.log"), "DELAY": "0.5"}
    yield Case(env, accepted, ledger_id=lambda r: str(r.handle.native_id))
