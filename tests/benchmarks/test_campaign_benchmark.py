"""The campaign benchmark's protocol: same seed designs for every method, calls counted right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.campaign import BATCH, SEEDS_N, Problem, calls_to, run_baseline, run_innloop, summarise


def test_calls_to_counts_the_call_of_the_nth_diverse_hit() -> None:
    U = np.array([[0.0, 0.0], [0.05, 0.0], [0.5, 0.5], [0.9, 0.9], [0.2, 0.9]])
    y = np.array([1.0, 1.05, 0.3, 0.95, 1.1])
    assert calls_to(U, y, 1.0, wanted=1) == 1
    assert calls_to(U, y, 1.0, wanted=2) == 4  # row 1 is a hit but too close to row 0
    assert calls_to(U, y, 1.0, wanted=3) == 5
    assert calls_to(U, y, 1.0, wanted=4) is None


@pytest.mark.slow
def test_baselines_and_innloop_start_from_the_same_seeds_on_the_table(tmp_path: Path) -> None:
    problem = Problem("table", None, tmp_path)
    seeds = problem.seeds(3)
    assert seeds.shape == (SEEDS_N, 7)
    np.testing.assert_array_equal(seeds, problem.seeds(3))
    base = run_baseline("trees", problem, 1.0, 3, max_calls=SEEDS_N + 2 * BATCH)
    assert base["measured"] == SEEDS_N + 2 * BATCH and base["calls"] is None
    ours = run_innloop(problem, 1.0, 3, SEEDS_N + 2 * BATCH, tmp_path / "inn")
    assert ours["measured"] == SEEDS_N + 2 * BATCH
    # the first hits (found among the seeds) are the same calls for both
    seed_hits = [c for c in base["curve"] if c <= SEEDS_N]
    assert [c for c in ours["curve"] if c <= SEEDS_N] == seed_hits
    assert len(ours["overhead_s"]) == 2 and all(s > 0 for s in ours["overhead_s"])
    table = summarise(
        [
            base | {"oracle": "table", "target": 1.0, "seed": 3, "method": "trees"},
            ours | {"oracle": "table", "target": 1.0, "seed": 3, "method": "innloop"},
        ],
        SEEDS_N + 2 * BATCH,
    )
    assert "| table | 1 | trees | not reached |" in table and "| table | 1 | innloop |" in table
