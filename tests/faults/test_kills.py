"""Kill a real campaign process (SIGKILL) between and inside stages, resume it with
``innloop run``, and lose nothing: the mock oracle, in-process and on Ray.

Counted at the oracle (its job files): every job it ever accepted has exactly one result
in the ledger, no design was accepted twice, every checkpoint verifies, the campaign
reaches its iteration budget, and it ends with the same observations (in the order the
campaign learns them) as a run that was never interrupted. The points and the checks are `agent.testing`'s
(`python -m benchmarks.faults` runs the whole matrix and prints it as a table).

The suite kills at every point that leaves a different state on disk. Points that leave
the same files as one kept here are run by the benchmark only:
- after sample, after refine: models saved, no batch yet (as after retrain);
- after update: results in the ledger, the iteration not committed (as after measure);
- after checkpoint: between two iterations (as before retrain);
- the third append of a batch: as the first (some results in the ledger, jobs in flight).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.testing.backends import MOCK_ITERATIONS, mock_case, mock_config
from agent.testing.kills import kill_and_resume, reference, write_config

STAGE_POINTS = [
    "before:retrain:1",
    "during:retrain:2",  # training
    "after:retrain:1",
    "after:choose:2",
    "submit:-:0",  # the oracle accepted the batch, inflight.json has no handles yet
    "submit:-:2",
    "during:measure:1",
    "after:measure:3",
    "during:checkpoint:2",
]
INSIDE_POINTS = [
    "pending:-:2",  # jobs pending at the oracle
    "append:-:1:1",  # results arriving: right after the first ledger append of the batch
    "rename:inflight:1:1",  # temporary file written, not renamed: before the submit
    "rename:inflight:2:2",  # ... after the submit (inflight.json still says "submitting")
    "rename:manifest:1",  # in the middle of writing a checkpoint
    "rename:campaign:2",
]


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ledger's designs of an uninterrupted run (the Ray runs must match it too)."""
    root = tmp_path_factory.mktemp("ref")
    config = write_config(root, mock_config())
    with mock_case(root) as case:
        designs = reference(case, config, root / "state", MOCK_ITERATIONS)
    assert len(designs) == 12 + 3 * 4
    return designs


@pytest.mark.slow
@pytest.mark.parametrize("point", STAGE_POINTS + INSIDE_POINTS)
def test_killed_campaign_resumes_without_loss_or_resubmission(point: str, expected: list[str], tmp_path: Path) -> None:
    config = write_config(tmp_path, mock_config())
    with mock_case(tmp_path, point) as case:
        report = kill_and_resume("mock", case, config, tmp_path / "state", point, MOCK_ITERATIONS, expected)
    assert report.ok, report.problems
    assert report.killed == -9 and report.submissions == report.results == len(expected)


# every batch waits for approval: 0.5 s with nobody answering, then sent as it is
APPROVED = '\n[approval]\nrequired = true\ntimeout_s = 0.5\non_timeout = "approve"\n'


@pytest.mark.slow
@pytest.mark.parametrize("point", ["during:approve:1", "after:approve:2"])
def test_killed_while_waiting_for_approval_or_right_after_it(point: str, expected: list[str], tmp_path: Path) -> None:
    """Killed while the batch waits for a person (the question asked, no answer yet) or right
    after the decision was written (nothing sent yet): the resumed run asks the same question,
    or takes the decision on disk, and ends as a campaign never stopped (approval changes no
    choice when nobody drops a design)."""
    config = write_config(tmp_path, mock_config() + APPROVED)
    with mock_case(tmp_path, point) as case:
        report = kill_and_resume("mock", case, config, tmp_path / "state", point, MOCK_ITERATIONS, expected)
    assert report.ok, report.problems
    assert report.killed == -9 and report.submissions == report.results == len(expected)
    folder = tmp_path / "state" / "crash" / "iterations"
    decisions = [json.loads((folder / f"{i:04d}" / "approval.json").read_text()) for i in range(MOCK_ITERATIONS)]
    assert all(d["by"] == "timeout" and d["action"] == "approve" for d in decisions)


def _ray_processes() -> set[int]:
    """Running (not zombie) Ray processes on this machine, from ``ps``."""
    import subprocess

    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    words = ("ray::", "raylet", "gcs_server", "ray/_private", "ray/dashboard")
    return {
        int(line.split()[0])
        for line in out.splitlines()
        if len(line.split()) > 2 and not line.split()[1].startswith("Z") and any(w in line for w in words)
    }


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # counts Ray processes: none of another test may start meanwhile
def test_killed_while_sampling_on_ray(expected: list[str], tmp_path: Path) -> None:
    """Killed at ``ray.get`` of the samples (the actors are drawing them); Ray's GCS, raylet and
    actors die with the driver, its agents are reaped by the harness; the resumed run (Ray too)
    ends as an uninterrupted run without Ray does."""
    before = _ray_processes()
    config = write_config(tmp_path, mock_config(ray=True))
    with mock_case(tmp_path) as case:
        report = kill_and_resume("mock", case, config, tmp_path / "state", "ray:-:1:2", MOCK_ITERATIONS, expected)
    assert report.ok, report.problems
    assert _ray_processes() <= before, "a Ray process of the killed or the resumed run is still running"


def test_point_grammar() -> None:
    from agent.testing.crash import Point, parse_point

    assert parse_point("none") == Point("none")
    assert parse_point("after:retrain:1") == Point("after", "retrain", 1, 1)
    assert parse_point("rename:inflight:2:2") == Point("rename", "inflight", 2, 2)
    for bad in ("after:training:1", "rename:ledger:1", "kill:-:1", "append:-:1:0", "after:retrain"):
        with pytest.raises(ValueError, match="kill point"):
            parse_point(bad)
