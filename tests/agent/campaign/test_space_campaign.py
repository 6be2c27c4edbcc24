"""A campaign over a space declared in its file: mixed parameters, range targets, snapping.

The recipe space of `agent/configs/experiment.toml`, measured by the `table` oracle from a
CSV the test writes (the campaign itself is TOML and CSV only), or by the recipe oracle.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.campaign.config import config_from_dict, load_config
from agent.campaign.runner import campaign_status, run_campaign
from agent.campaign.state import ledger_arrays
from agent.cli.main import main
from agent.core.errors import ConfigError
from agent.design.funnel import FunnelConfig, propose_candidates, snap_candidates
from oracles.testing.recipe import recipe_space, recipe_yield

ROOT = Path(__file__).resolve().parents[3]
EXPERIMENT = ROOT / "agent" / "configs" / "experiment.toml"


def experiment(**changes: Any) -> dict[str, Any]:
    """The shipped experiment's file as data, ``changes`` merged over its top-level sections."""
    data = tomllib.loads(EXPERIMENT.read_text(encoding="utf-8"))
    for key, value in changes.items():
        data[key] = data.get(key, {}) | value if isinstance(value, dict) else value
    return data


def test_the_space_section_declares_the_material() -> None:
    material = load_config(EXPERIMENT).design_material()
    space = material.space
    assert (material.name, material.target, material.target_unit) == ("recipe", "yield", "")
    assert (material.target_lower_bound, material.target_upper_bound, material.build) == (0.0, 1.0, None)
    kinds = [(p.name, p.kind, p.lower, p.upper, p.unit, p.log, p.values) for p in space.parameters]
    assert kinds == [(p.name, p.kind, p.lower, p.upper, p.unit, p.log, p.values) for p in recipe_space().parameters]
    (budget,) = space.constraints
    assert budget.name == "reagent_budget"
    X = space.from_frame(
        space.to_frame(recipe_space().from_unit(recipe_space().sample_unit(np.random.default_rng(0), 50)))
    )
    X[:, 5], X[:, 6] = 0.8, 5.0  # 5 + 8·0.8 = 11.4: inside the budget of 12
    assert space.valid_mask(X).all()
    X[:, 6] = 6.0  # 6 + 6.4 = 12.4: outside
    assert not space.valid_mask(X).any()


def test_declared_symmetries_reach_the_acquisition_gp() -> None:
    from agent.models.gp import fit_gp  # torch: only this test needs the GP

    sym = [{"name": "swap solvents' neighbours", "swap": [["concentration", "temperature"]]}]
    bad = experiment(space={"symmetries": sym})
    with pytest.raises(ConfigError, match=r"space.symmetries.0: .*differ in type, bounds or values"):
        config_from_dict(bad)
    space_toml = tomllib.loads(EXPERIMENT.read_text(encoding="utf-8"))["space"]
    space_toml["parameters"].insert(3, dict(space_toml["parameters"][3], name="temperature2"))
    syms = [{"name": "two baths", "swap": [["temperature", "temperature2"]]}, {"name": "m", "mirror": ["time"]}]
    material = config_from_dict(experiment(space=space_toml | {"symmetries": syms})).design_material()
    sym_map, mirror = material.symmetries
    assert mirror.flip == (10,) and mirror.permutation == tuple(range(13))  # time: the 11th relaxed column
    U = material.space.sample_unit(np.random.default_rng(1), 60)
    y = U[:, -5] + 0.3 * U[:, -4]
    gp = fit_gp(U, y, symmetries=(sym_map,), seed=0)
    swapped = sym_map.apply(U)
    np.testing.assert_allclose(swapped[:, -5], U[:, -4]) and np.testing.assert_allclose(swapped[:, -4], U[:, -5])
    a, b = (gp.posterior(__import__("torch").as_tensor(u)).mean.detach().numpy().ravel() for u in (U, swapped))
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"value": 0.5, "low": 0.4}, "give either value (± window) or low/high, not both"),
        ({"hits": 3}, "give value (± window), or low and/or high"),
        ({"low": 0.9, "window": 0.1}, "window goes with value"),
        ({"low": 0.9, "high": 0.8}, "low (0.9) must be below high (0.8)"),
        ({"low": 1.2}, "lies above the yield ceiling 1"),
        ({"high": -0.1}, "lies below the yield floor 0"),
        ({"low": 1.0 + 1e-6}, "lies above the yield ceiling 1"),
    ],
)
def test_target_forms_are_checked(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"targets\.0") as err:
        config_from_dict(experiment(targets=[target]))
    assert message in str(err.value)


def test_old_campaign_files_keep_their_fingerprint() -> None:
    """A value target and no [space]: the stored config has exactly the keys it always had."""
    config = load_config()  # the shipped default
    data = config.to_dict()
    assert "space" not in data and data["material"] == "mos2"
    assert data["targets"][0] == {"value": 0.5, "window": 0.1, "hits": 10}
    assert config_from_dict(data).fingerprint() == config.fingerprint()


def test_snapping_drops_designs_that_become_duplicates() -> None:
    space = recipe_space()
    rng = np.random.default_rng(3)
    U = space.sample_unit(rng, 20)
    relaxed = np.vstack([U, U + rng.normal(0, 0.01, U.shape) * (np.arange(12) < 8)])  # jitter only one-hots and integer
    snapped, dropped = snap_candidates(space, relaxed)
    assert dropped == 20 and len(snapped) == 20
    np.testing.assert_allclose(snapped, U)

    class Flat:
        def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.full(len(U), 0.95), np.full(len(U), 0.01)

    plain = FunnelConfig(n_samples=40, prefilter_window=None, localize=None, converged_only=False, max_sigma=None)
    cands = propose_candidates(space, Flat(), [relaxed], [0.95], plain, rng)  # type: ignore[arg-type]
    assert cands.counts["snap_duplicates_0"] == 20 and len(cands.U) == 20
    np.testing.assert_array_equal(space.snap_unit(cands.U), cands.U)  # scored as real designs only


def _table(folder: Path, n: int = 1500) -> Path:
    space = recipe_space()
    X = space.from_unit(space.sample_unit(np.random.default_rng(11), n))
    frame = space.to_frame(X)
    frame["yield"] = recipe_yield(X)
    path = folder / "recipes.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_toml_and_csv_campaign_runs_to_its_hits_with_real_values_in_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table(tmp_path)
    text = EXPERIMENT.read_text(encoding="utf-8")
    text = text.replace('name = "http"', 'name = "table"').replace(
        'url = "http://127.0.0.1:8765"', f'path = "{table.name}"'
    )
    for key in ("timeout_s = 30.0", "retries = 3", "backoff_s = 0.5"):
        text = text.replace(key + "\n", "")
    text = text.replace("hits = 10", "hits = 6").replace("enabled = true", "enabled = false")
    text = text.replace("surrogate_epochs = 200", "surrogate_epochs = 40").replace("members = 5", "members = 2")
    text = text.replace('generator = "cinn"', 'generator = "cinn"\nacquisition = "ensemble"')
    config = tmp_path / "recipe.toml"
    config.write_text(text, encoding="utf-8")
    assert main(["run", str(config), "--state", str(tmp_path / "state"), "--no-prefect", "--no-ray", "-q"]) == 0
    status = campaign_status(tmp_path / "state", "recipe-experiment")
    (target,) = status["targets"]
    assert target["label"] == "≥ 0.9" and target["hits"] >= 6 and (target["low"], target["high"]) == (0.9, None)
    assert all(row["yield"] >= 0.9 for row in target["designs"])
    ledger = [json.loads(line) for line in (tmp_path / "state" / "recipe-experiment" / "ledger.jsonl").open()]
    designs = [rec["result"]["handle"]["design"] for rec in ledger]
    assert {d["catalyst"] for d in designs} <= set(recipe_space().parameters[0].values)
    assert all(isinstance(d["base_equiv"], int) and isinstance(d["solvent"], str) for d in designs)
    batch = (tmp_path / "state" / "recipe-experiment" / "iterations" / "0001" / "batch.csv").read_text()
    assert "catalyst,solvent,base_equiv" in batch and any(f",{c}," in batch for c in ("dioxane", "DMF", "toluene"))
    capsys.readouterr()
    assert main(["status", "recipe-experiment", "--state", str(tmp_path / "state")]) == 0
    assert "target ≥ 0.9:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "check"),
    [({"high": 0.05}, lambda y: y <= 0.05), ({"low": 0.4, "high": 0.5}, lambda y: (y >= 0.4) & (y <= 0.5))],
)
def test_range_targets_count_hits_in_the_range(tmp_path: Path, target: dict[str, Any], check: Any) -> None:
    data = experiment(
        name="range",
        targets=[target | {"hits": 4}],
        oracle={"name": "recipe", "settings": {}},
        initial={"random": 16},
        loop={"batch_size": 8, "samples_per_target": 200},
        budget={"oracle_calls": 64},
        models={
            "members": 2,
            "surrogate_epochs": 30,
            "surrogate_warm_epochs": 5,
            "generator_epochs": 10,
            "generator_warm_epochs": 3,
        },
        ray={"enabled": False},
        retry={"poll_interval_s": 0.01},
    )
    run = run_campaign(config_from_dict(data), tmp_path / "state")
    U, y = ledger_arrays(run.state)
    status = campaign_status(tmp_path / "state", "range")
    hits = [row["yield"] for row in status["targets"][0]["designs"]]
    assert len(hits) >= 4 and check(np.array(hits)).all()
    assert np.isfinite(y).all() and len(U) == len(y)
    assert run.state.history[-1]["targets"] == [run.state.config.targets[0].range.label()]


def test_a_resumed_run_reads_back_its_jobs_and_batch_with_real_values(tmp_path: Path) -> None:
    """What a killed run leaves (jobs in flight, ``batch.csv``) holds category names and
    integers, and reads back to the very same designs."""
    from agent.campaign.batch import Batch
    from agent.campaign.journal import Job
    from agent.campaign.loop import jobs_for
    from agent.campaign.state import CampaignState

    config = config_from_dict(experiment())
    space = config.design_material().space
    state = CampaignState(config, space, "yield")
    U = space.sample_unit(np.random.default_rng(5), 12)
    nan = np.full(12, np.nan)
    batch = Batch(U, np.zeros(12, dtype=int), ["hit"] * 12, nan, nan, nan)
    batch.frame(state).to_csv(tmp_path / "batch.csv", index=False)
    again = Batch.read(tmp_path / "batch.csv", state)
    np.testing.assert_allclose(again.physical(state), space.from_unit(U))
    jobs = jobs_for(state, again)
    assert isinstance(jobs[0].design["catalyst"], str) and isinstance(jobs[0].design["base_equiv"], int)
    back = [Job.from_json(json.loads(json.dumps(j.to_json()))) for j in jobs]
    assert [b.design for b in back] == [j.design for j in jobs]
    np.testing.assert_allclose(space.from_rows([b.design for b in back]), space.from_unit(U))
