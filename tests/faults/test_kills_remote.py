"""The kill harness against oracles in other processes: a lab server over HTTP and VASP
through a real SLURM (see test_kills.py for the mock, and `agent.testing` for the points).

Counted where the jobs live: the lab server's job files and ``GET /v1/stats``; the
scheduler's own log of accepted ``sbatch`` calls. Both runs of a case -- the killed one
and the resumed ``innloop run`` -- talk to the same lab server or cluster; the token
reaches the campaign through ``INNLOOP_HTTP_TOKEN`` only, never through its config file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.testing.backends import SMALL_ITERATIONS, http_case, small_config, vasp_case, vasp_settings
from agent.testing.kills import kill_and_resume, reference, write_config
from oracles.testing.slurm import LocalSlurm

HTTP_POINTS = [
    "submit:-:0",  # every job created and answered; inflight.json has no handles yet
    "reply:-:1:1",  # the server created the batch's first job; its reply is never read
    "pending:-:1",  # jobs pending in the lab
    "append:-:2:1",  # results arriving
    "rename:inflight:2:2",  # the handles' inflight.json written, not renamed
]
VASP_POINTS = [
    "submit:-:0",  # the scheduler accepted the batch; inflight.json has no handles yet
    "submit:-:2",
    "pending:-:1",  # jobs queued or running at the scheduler
    "append:-:1:1",  # results arriving
]
HTTP_CONFIG = small_config("http", "retries = 3\nbackoff_s = 0.1")


# session scope, not module: --dist loadgroup interleaves this module with others on a
# worker, and a module fixture would run its reference campaign again each time it returns
@pytest.fixture(scope="session")
def http_expected(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("http-ref")
    config = write_config(root, HTTP_CONFIG)
    with http_case(root) as case:
        return reference(case, config, root / "state", SMALL_ITERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("point", HTTP_POINTS)
def test_http_campaign_killed_and_resumed(point: str, http_expected: list[str], tmp_path: Path) -> None:
    config = write_config(tmp_path, HTTP_CONFIG)
    assert "token" not in config.read_text()
    with http_case(tmp_path) as case:
        report = kill_and_resume("http", case, config, tmp_path / "state", point, SMALL_ITERATIONS, http_expected)
    assert report.ok, report.problems
    assert report.submissions == report.results == len(http_expected)


@pytest.fixture(scope="session")
def vasp_expected(slurm_cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("vasp-ref")
    config = write_config(root, small_config("vasp", vasp_settings(slurm_cluster.partition), poll_s=0.5))
    with vasp_case(root, slurm_cluster) as case:
        return config, reference(case, config, root / "state", SMALL_ITERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("point", VASP_POINTS)
def test_vasp_campaign_killed_and_resumed(
    point: str, slurm_cluster: LocalSlurm, vasp_expected: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """VASP through SLURM: the fake's value is the same for every design, so runs repeat."""
    config, expected = vasp_expected
    with vasp_case(tmp_path, slurm_cluster) as case:
        report = kill_and_resume("vasp", case, config, tmp_path / "state", point, SMALL_ITERATIONS, expected)
    assert report.ok, report.problems
    assert report.submissions == report.results == len(expected)
