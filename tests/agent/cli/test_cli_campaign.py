"""``innloop run`` / ``innloop status`` as a user runs them: real processes, real files.

The README's own ``innloop run`` in a fresh home is in ``test_cli_run.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]


def _innloop(*args: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_bad_config_is_one_clear_error_with_every_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "../../etc"\n[[targets]]\nvalue = 9.0\n[loop]\nbatchsize = 3\n[oracle]\nname = "vasp2"\n'
        "[budget]\noracle_calls = -5\n"
    )
    done = _innloop("run", str(bad), "--state", str(tmp_path / "s"), env=dict(os.environ))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("innloop: error: ") and str(bad) in lines[0]
    body = "\n".join(lines[1:])
    for where in ("name", "targets.0.value", "loop.batchsize", "oracle.name", "budget.oracle_calls"):
        assert f"  - {where}:" in body, body
    assert len([ln for ln in lines if ln.startswith("  - ")]) == 5
    assert not (tmp_path / "s").exists()  # nothing was created


def test_status_of_an_unknown_campaign(tmp_path: Path) -> None:
    done = _innloop("status", "nope", "--state", str(tmp_path), env=dict(os.environ))
    assert done.returncode == 2 and "no campaign 'nope'" in done.stderr
    bad = _innloop("status", "../x", "--state", str(tmp_path), env=dict(os.environ))
    assert bad.returncode == 2 and "../x" in bad.stderr


@pytest.mark.slow
def test_a_failing_oracle_stops_the_campaign_with_a_report_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "failing.toml"
    config.write_text(
        'name = "failing"\nseed = 2\n[[targets]]\nvalue = 1.0\nhits = 20\n'
        '[oracle]\nname = "mock"\n[oracle.settings]\nfailure_rate = 0.9\n'
        "[initial]\nrandom = 12\n[loop]\nbatch_size = 4\nsamples_per_target = 200\n[budget]\noracle_calls = 200\n"
        "[models]\nmembers = 2\nsurrogate_epochs = 20\nsurrogate_warm_epochs = 5\n"
        "generator_epochs = 10\ngenerator_warm_epochs = 5\n[ray]\nenabled = false\n"
        "[retry]\nmax_attempts = 2\nbackoff_s = 0.0\npoll_interval_s = 0.01\n"
        "max_failure_rate = 0.6\nfailure_window = 10\n"
    )
    env = os.environ | {"INNLOOP_TORCH_THREADS": "1"}
    done = _innloop("run", str(config), "--state", str(tmp_path / "s"), "--no-prefect", "-q", env=env)
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    assert "failing: stopped: oracle failure rate" in done.stdout and "above the limit 60%" in done.stdout
    s = json.loads(_innloop("status", "failing", "--state", str(tmp_path / "s"), "--json", env=env).stdout)
    assert s["in_flight"] == 0 and s["oracle_calls"] == sum(s["results"].values()) < 200


def test_a_second_run_of_a_running_campaign_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    from agent.campaign.store import CampaignStore

    config = tmp_path / "busy.toml"
    config.write_text('name = "busy"\n[[targets]]\nvalue = 1.0\n[ray]\nenabled = false\n')
    state = tmp_path / "s"
    for existing in (False, True):  # a campaign being created, then one with state to protect
        store = CampaignStore(state, "busy")
        if existing:
            store.create({}, "f", "")
            store.ledger.path.write_text("precious\n")
        with store.running():
            before = sorted(p.relative_to(state) for p in state.rglob("*"))
            done = _innloop("run", str(config), "--state", str(state), "--no-prefect", "-q", env=dict(os.environ))
            assert done.returncode == 2, done.stderr[-2000:]
            assert "'busy' is already running (pid" in done.stderr and "run.lock" in done.stderr
            assert sorted(p.relative_to(state) for p in state.rglob("*")) == before
        if existing:
            assert store.ledger.path.read_text() == "precious\n"
