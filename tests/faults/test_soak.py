"""The soak at CI size: a thousand designs in flight through the http oracle, none lost or doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import soak


@pytest.mark.slow
def test_a_thousand_designs_in_flight_are_all_accounted_for(tmp_path: Path) -> None:
    n = 1000
    r = soak(n, tmp_path, latency_s=1.0, failure_rate=0.1, poll_s=0.2, seed=1)
    assert r["lost"] == 0, "every job the lab accepted has a ledger record"
    assert r["duplicates"] == 0 and r["unknown"] == 0, "each job recorded once, and only jobs the lab has"
    assert r["lab_jobs"] == r["results"] == sum(r["by_status"].values())
    assert r["designs_recorded"] == n and sum(r["final"].values()) == n, "every design has its final record"
    assert r["retries"] == r["results"] - n > 0, "infrastructure failures were retried"
    assert set(r["final"]) <= {"completed", "failed/physics", "failed/infrastructure"}
    assert r["by_status"]["completed"] == r["final"]["completed"]
    assert r["in_flight"] == 0 and r["stopped"].startswith("iteration budget")
