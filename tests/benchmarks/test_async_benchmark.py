"""The async benchmark: both modes from the same seed designs, scored, and the table's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.async_loop import main, summarise


def test_both_modes_run_side_by_side_and_are_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs.json"
    # a window most designs land in: the hits come with the initial designs, what is tested is the wiring
    argv = ["--seeds", "1", "--in-flight", "4", "--hits", "2", "--target", "0.0", "--initial", "6"]
    assert main([*argv, "--median-s", "0.02", "--max-calls", "30", "--models", "tiny", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())
    assert [(r["mode"], r["in_flight"]) for r in runs] == [("batch", 4), ("async", 4)]
    for r in runs:
        assert r["reached"] and 2 <= r["calls"] <= 6 and r["wall_s"] > 0, r
        assert r["latencies"] and min(r["latencies"]) > 0 and 0 < r["mean_at_oracle"] <= 4.0 + 1e-9
    table = capsys.readouterr().out
    assert "| 4 | batch |" in table and "| 4 | async |" in table and "4 in flight: async wall-clock" in table


def test_the_table_gives_medians_and_async_over_batch() -> None:
    def run(mode: str, wall: float | None, calls: int | None) -> dict[str, object]:
        return {"mode": mode, "in_flight": 32, "wall_s": wall, "calls": calls, "mean_at_oracle": 1.0}

    runs = [run("batch", w, c) for w, c in ((100, 50), (200, 60), (300, 70))]
    runs += [run("async", w, c) for w, c in ((20, 55), (40, 66), (None, None))]
    text = summarise([r | {"planning_s": 1.0, "iterations": 3, "latencies": [1.0, 2.0]} for r in runs], hits=20)
    assert "| 32 | batch | 200 | 100 200 300 | 60 | 50 60 70 |" in text
    assert "| 32 | async | 40 | 20 40 not reached | 66 | 55 66 not reached |" in text, "a run short of its hits"
    assert "32 in flight: async wall-clock 0.20× batch's, oracle calls 1.10×" in text
