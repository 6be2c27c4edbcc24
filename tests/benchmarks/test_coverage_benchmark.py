"""The coverage benchmark: the solution set is the oracle's, families are counted per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.campaign import Problem
from benchmarks.coverage import main, solution_set


def test_the_table_solution_set_is_its_rows_in_the_window(tmp_path: Path) -> None:
    problem = Problem("table", None, tmp_path)
    U = solution_set(problem, 1.0)
    y = problem.measure(U)
    assert len(U) > 100 and (np.abs(y - 1.0) <= 0.1 + 1e-12).all()
    assert len(U) == int((np.abs(problem.measure(problem.pool) - 1.0) <= 0.1 + 1e-12).sum())


def test_a_quick_run_prints_hits_and_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cov.json"
    assert (
        main(
            [
                "--oracle",
                "table",
                "--targets",
                "1.0",
                "--methods",
                "random",
                "--seeds",
                "1",
                "--calls",
                "70",
                "--families",
                "3",
                "5",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| oracle | target (eV) | method | diverse hits in 70 calls | families of 3 | families of 5 |" in table
    assert "| table | 1 | random |" in table
    run = json.loads(out.read_text())["runs"][0]
    assert len(run["hits_u"]) == len(run["curve"]) and 0 <= run["families"]["5"] <= min(5, len(run["curve"]))
