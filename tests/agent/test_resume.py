"""Kill a real campaign process (SIGKILL) between and inside stages, resume, lose nothing.

Counted at the oracle: every job the mock oracle ever accepted has exactly one result in
the ledger, no design was accepted twice, every checkpoint verifies, and the resumed
campaign ends with the same measurements as one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.store import CampaignStore
from oracles.base import design_digest

DRIVER = Path(__file__).with_name("crash_driver.py")
CONFIG = """
name = "crash"
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
iterations = 4
[models]
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

KILL_POINTS = [
    "before:retrain:1",
    "during:retrain:2",
    "after:retrain:1",
    "after:sample:2",
    "after:refine:1",
    "after:choose:2",
    "submit:-:0",
    "submit:-:2",
    "during:measure:1",
    "after:measure:3",
    "after:update:1",
    "during:checkpoint:2",
    "after:checkpoint:1",
]


def _run(config: Path, state: Path, point: str) -> subprocess.CompletedProcess[str]:
    """``point`` ``none`` resumes exactly as a user would: ``innloop run CONFIG`` again."""
    env = os.environ | {"INNLOOP_MOCK_LATENCY_S": "0.1", "DELAY": "0.02"}
    if point == "none":
        cmd = [sys.executable, "-m", "agent.cli", "run", str(config), "--state", str(state), "--no-prefect", "-q"]
    else:
        cmd = [sys.executable, str(DRIVER), str(config), str(state), point]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])


def _outcome(state: Path) -> tuple[list[str], int, list[str]]:
    store = CampaignStore(state, "crash")
    records = store.ledger.records()  # verifies every line's checksum and exactly-once job ids
    for i in range(store.last_completed() + 1):
        store.verify_iteration(i)
    jobs = sorted((state / "crash" / "oracle" / "jobs").glob("*.json"))
    accepted = [design_digest(json.loads(p.read_text())["handle"]["design"]) for p in jobs]
    return [design_digest(r.result.handle.design) for r in records], store.last_completed(), accepted


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("ref")
    config = root / "crash.toml"
    config.write_text(CONFIG)
    done = _run(config, root / "state", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    designs, last, accepted = _outcome(root / "state")
    assert last == 3 and len(designs) == 12 + 3 * 4 and sorted(accepted) == sorted(designs)
    return config, designs


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_campaign_resumes_without_loss_or_resubmission(
    point: str, reference: tuple[Path, list[str]], tmp_path: Path
) -> None:
    config, expected = reference
    killed = _run(config, tmp_path, point)
    assert killed.returncode == -9, f"the kill at {point} did not happen: {killed.stdout}{killed.stderr[-2000:]}"
    before, _, _ = _outcome(tmp_path)
    resumed = _run(config, tmp_path, "none")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    designs, last, accepted = _outcome(tmp_path)
    assert last == 3
    assert designs[: len(before)] == before  # the ledger only ever grows
    assert len(accepted) == len(set(accepted)), "a design was submitted twice"
    assert sorted(accepted) == sorted(designs), "an accepted job has no result in the ledger (or vice versa)"
    assert designs == expected, "the resumed campaign measured other designs than an uninterrupted one"
