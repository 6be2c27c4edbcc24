"""The new-material benchmark: its table summary, the WS2 problem and every method's campaign file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from agent.campaign.config import config_from_dict
from agent.core.materials import get_material
from benchmarks import new_material
from benchmarks.campaign import innloop_config, run_baseline
from benchmarks.new_material import SECTIONS, WS2Problem, table_summary


def _table(path: Path, n: int = 120) -> None:
    space = get_material("ws2").space
    U = space.sample_unit(np.random.default_rng(0), n)
    gap = np.clip(1.9 - 2.5 * np.abs(U[:, 0] - 0.5) - 2.5 * np.abs(U[:, 1] - 0.5), 0, None)
    frame = space.to_frame(space.from_unit(U)).assign(gap=gap, strain_energy=U[:, 0], energy=-22.0, wall_s=8.0)
    frame.to_csv(path, index=False, float_format="%.10g")
    (path.parent / "failures.csv").write_text("a,status\n3.1,failed\n")


def test_the_table_summary_counts_rows_windows_and_dft_hours(tmp_path: Path) -> None:
    _table(tmp_path / "ws2.csv")
    text = table_summary(tmp_path / "ws2.csv", [1.0])
    row = text.splitlines()[2].split("|")
    assert row[1].strip() == "120" and row[2].strip() == "1" and row[5].strip() == "8.0"
    assert row[6].strip() == f"{120 * 8 / 3600:.2f}" and " at 1 eV" in row[4]


def test_every_innloop_method_is_a_valid_ws2_campaign_and_random_screens_the_table(tmp_path: Path) -> None:
    _table(tmp_path / "ws2.csv")
    problem = WS2Problem(tmp_path / "ws2.csv", n_seeds=10)
    designs = tmp_path / "seeds.csv"
    problem.space.to_frame(problem.space.from_unit(problem.seeds(0))).to_csv(designs, index=False)
    for method, extra in SECTIONS.items():
        problem.extra = extra
        cfg = config_from_dict(innloop_config(problem, 1.0, 0, 60, designs, 0.0, wanted=3))
        assert cfg.material == "ws2" and cfg.oracle.name == "table" and cfg.initial.random == 0
        assert (cfg.transfer is not None) == (method == "innloop-mos2")
    out = run_baseline("random", problem, 1.0, 0, max_calls=len(problem.pool), wanted=3)
    assert out["measured"] <= 120 and out["calls"] is not None, "random screening of the whole table finds them"


def test_the_source_model_cache_is_shared_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(new_material.CACHE_ENV, raising=False)
    _table(tmp_path / "ws2.csv")
    argv = ["--table", str(tmp_path / "ws2.csv"), "--methods", "random", "--seeds", "1", "--hits", "2"]
    assert new_material.main([*argv, "--initial", "10", "--cache", str(tmp_path / "cache")]) == 0
    assert os.environ[new_material.CACHE_ENV] == str(tmp_path / "cache")


def test_a_target_the_table_cannot_supply_is_named_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(new_material.CACHE_ENV, str(tmp_path / "cache"))
    _table(tmp_path / "ws2.csv")
    argv = ["--table", str(tmp_path / "ws2.csv"), "--methods", "random", "--seeds", "1", "--hits", "2"]
    assert new_material.main([*argv, "--targets", "1.0", "5.0", "--json", str(tmp_path / "runs.json")]) == 0
    out = capsys.readouterr().out
    assert "5 eV skipped: the table holds 0 rows within ±0.1 eV (0 diverse), fewer than the 2 hits asked" in out
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert {r["target"] for r in runs} == {1.0} and len(runs) == 1
    assert new_material.main([*argv, "--targets", "5.0"]) == 1, "nothing to run is a failure, not an empty table"


def test_a_scarce_target_runs_for_fewer_hits_in_tables_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(new_material.CACHE_ENV, str(tmp_path / "cache"))
    _table(tmp_path / "ws2.csv")
    argv = ["--table", str(tmp_path / "ws2.csv"), "--methods", "random", "--seeds", "2", "--initial", "10"]
    argv += ["--targets", "1.0", "--hits", "500", "--json", str(tmp_path / "runs.json")]
    assert new_material.main([*argv, "--scarce-hits", "0"]) == 1, "0: a scarce target is skipped"
    assert "1 eV skipped" in capsys.readouterr().out
    assert new_material.main([*argv, "--scarce-hits", "2"]) == 0
    out = capsys.readouterr().out
    assert "fewer than the 500 hits asked; run for 2 diverse hits" in out
    assert "Cold start: oracle calls to 2 diverse hits" in out and "to 500 diverse" not in out
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert len(runs) == 2 and all(r["hits"] == 2 and r["calls"] is not None for r in runs)


def test_runs_in_worker_processes_give_the_same_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(new_material.CACHE_ENV, str(tmp_path / "cache"))
    _table(tmp_path / "ws2.csv")
    argv = ["--table", str(tmp_path / "ws2.csv"), "--methods", "random", "gp", "--seeds", "2", "--hits", "2"]
    argv += ["--initial", "10", "--max-calls", "40", "--targets", "1.0"]
    runs = {}
    for workers in ("1", "2"):
        assert new_material.main([*argv, "--workers", workers, "--json", str(tmp_path / f"{workers}.json")]) == 0
        runs[workers] = [
            (r["seed"], r["method"], r["calls"]) for r in json.loads((tmp_path / f"{workers}.json").read_text())
        ]
    assert runs["1"] == runs["2"] and len(runs["1"]) == 4
