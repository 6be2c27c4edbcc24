"""The CI-sized chaos runs: a mock campaign (10 % of jobs failing, the infrastructure half
re-sent) SIGKILLed at 20 random moments and resumed each time; at the end, counted at the
oracle, nothing lost, nothing paid twice, no checkpoint corrupt, and the same observations
as an uninterrupted run. Then the same for the asynchronous loop, with heavy-tailed run
times, where jobs of several iterations are in flight at most kills (no reference run
there: what comes back first depends on the clock). Each campaign is as long as 20 kills
reach on this machine and a little more (`agent.testing.chaos.CHAOS_ITERATIONS`), so the
last run, which finishes it, stays short; `benchmarks.chaos` runs 200 kills per mode, over
longer campaigns, and the http oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.testing.backends import mock_case
from agent.testing.chaos import ASYNC_CHAOS_ITERATIONS, CHAOS_ITERATIONS, ChaosReport, chaos, chaos_config
from agent.testing.kills import reference, write_config

# kill delays after each start, s: a run starts its campaign about 2 s in, so most kills land
# in the campaign's work (the benchmark draws from 1-7 s over 200 kills)
WINDOW = (1.0, 5.0)


def _chaos(root: Path, text: str, iterations: int, **kwargs: Any) -> ChaosReport:
    """20 kills of the mock campaign ``text`` in ``root``, then its end (`agent.testing.chaos.chaos`)."""
    with mock_case(root) as case:
        return chaos("mock", case, write_config(root, text), root / "state", iterations, 20, window=WINDOW, **kwargs)


@pytest.mark.slow
def test_twenty_random_kills_lose_nothing_and_pay_nothing_twice(tmp_path: Path) -> None:
    text = chaos_config("mock")
    with mock_case(tmp_path / "ref") as case:
        expected = reference(case, write_config(tmp_path / "ref", text), tmp_path / "ref" / "state", CHAOS_ITERATIONS)
    report = _chaos(tmp_path / "chaos", text, CHAOS_ITERATIONS, seed=7, expected=expected)
    assert report.ok, report.problems
    assert report.kills == 20 and report.runs == 21, "every kill landed on a running campaign"
    assert report.results == report.submissions == len(expected) and report.same
    assert len(expected) > len(set(expected)), "some designs were measured again after an infrastructure failure"
    assert (report.lost, report.duplicated, report.corrupt) == (0, 0, 0)


@pytest.mark.slow
def test_twenty_random_kills_of_an_async_campaign_lose_nothing_and_pay_nothing_twice(tmp_path: Path) -> None:
    text = chaos_config("mock", ASYNC_CHAOS_ITERATIONS, mode="async")
    report = _chaos(tmp_path / "chaos", text, ASYNC_CHAOS_ITERATIONS, seed=11, drains=True)
    assert report.ok, report.problems
    assert report.kills == 20 and report.runs == 21, "every kill landed on a running campaign"
    assert report.results == report.submissions > 0 and report.same is None
    assert len(set(report.reached)) >= 3, f"the kills landed in several refills: {report.reached}"
    assert (report.lost, report.duplicated, report.corrupt) == (0, 0, 0)
