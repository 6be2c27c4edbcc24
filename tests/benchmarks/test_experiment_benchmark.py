"""The experiment benchmark and the generator-share benchmark: protocol and smoke runs (tiny sizes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent.campaign.config import config_from_dict
from agent.core.targets import TargetRange
from benchmarks import experiment, generator_share
from benchmarks.campaign import innloop_config, run_baseline, run_innloop
from benchmarks.experiment import RecipeProblem, experiment_config


def test_the_innloop_config_is_the_example_with_a_one_sided_target(tmp_path: Path) -> None:
    problem = RecipeProblem(experiment_config(), n_seeds=4)
    designs = tmp_path / "seeds.csv"
    problem.space.to_frame(problem.space.from_unit(problem.seeds(0))).to_csv(designs, index=False)
    raw = innloop_config(problem, TargetRange(0.9, math.inf), 2, 40, designs, 0.0, wanted=10)
    assert raw["targets"] == [{"low": 0.9, "hits": 10}] and raw["name"] == "bench-recipe-ge0p9-2"
    cfg = config_from_dict(raw)
    assert cfg.design_material().space.names == problem.space.names and cfg.oracle.name == "recipe"
    assert cfg.models == experiment_config().models and not cfg.ray.enabled and cfg.budget.oracle_calls == 40


def test_every_method_starts_from_the_same_seed_recipes(tmp_path: Path) -> None:
    problem = RecipeProblem(experiment_config(), n_seeds=12)
    easy = TargetRange(0.3, math.inf)  # hits among the seeds, so their call numbers can be compared
    base = run_baseline("random", problem, easy, 1, max_calls=22, wanted=100)
    ours = run_innloop(problem, easy, 1, 22, tmp_path / "inn", 0.0, wanted=100)
    assert base["measured"] == ours["measured"] == 22 and base["calls"] is None and ours["calls"] is None
    seed_hits = [c for c in base["curve"] if c <= 12]
    assert seed_hits and [c for c in ours["curve"] if c <= 12] == seed_hits
    assert len(ours["overhead_s"]) == 1 and ours["overhead_s"][0] > 0


def test_experiment_benchmark_prints_its_table_and_writes_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs.json"
    args = ["--seeds", "1", "--initial", "12", "--hits", "1", "--max-calls", "22", "--random-max-calls", "22"]
    assert experiment.main([*args, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| oracle | target (yield) | method |" in table
    for method in experiment.METHODS:
        assert f"| recipe | ≥ 0.9 | {method} |" in table
    runs = json.loads(out.read_text())
    assert [r["method"] for r in runs] == list(experiment.METHODS)
    assert all(r["measured"] <= 22 and r["hits"] == 1 for r in runs)


def test_generator_share_benchmark_counts_samples_on_both_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "share.json"
    sizes = ["--samples", "100", "--recipe-train", "60", "--mos2-train", "200"]
    assert generator_share.main(["--quick", "--seeds", "1", *sizes, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for row in ("| experiment | ≥ 0.9 | 60 | cINN |", "| mos2 | 1 ± 0.1 eV | 200 | uniform |", "| mos2 | 1.5 ± 0.1 eV"):
        assert row in table
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 3  # cINN and uniform, per target (one experiment, two MoS2)
    for r in rows:
        assert 0.0 <= r["surrogate"] <= 1.0 and 0 <= r["invalid"] <= r["drawn"] == 100
        assert (r["true"] is None) == (r["problem"] == "mos2")
        assert r["method"] == "cINN" or r["invalid"] == 0
    experiment_rows = [r for r in rows if r["problem"] == "experiment"]
    assert all(np.isfinite(r["anchor"]) and r["anchor"] >= 0.0 for r in experiment_rows)
