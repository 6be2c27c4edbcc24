"""A campaign limited on a second property (``[[constraints]]``), end to end on a tiny table:
an infeasible measurement is never a hit, wherever hits are counted, and the limit's model
is refitted the same way every time (what a resumed campaign relies on)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.campaign.config import config_from_dict, load_config
from agent.campaign.feasibility import believed_feasible, fit_limit_models, log_feasible, with_feasibility_models
from agent.campaign.runner import campaign_status, open_campaign, run_campaign
from agent.campaign.state import CampaignState, diverse_hits, hit_designs, hit_table, ledger_arrays, stop_reason
from agent.cli.main import main
from agent.core.errors import CampaignStopped, ConfigError
from agent.design.trained import TrainedModels
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from oracles.base import Handle, JobStatus, Result
from oracles.table import TableOracle
from tests.agent.constrained import LIMIT, SPACE, WINDOW, campaign_text, in_window_infeasible, run


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    folder = tmp_path_factory.mktemp("limited")
    state_dir, name = run(folder)
    return state_dir, name, folder


def _truth(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "table.csv")


def _row_index(frame: pd.DataFrame, design: dict[str, float]) -> int:
    dist = np.abs(frame[SPACE.names].to_numpy() - np.array([design[n] for n in SPACE.names])).max(axis=1)
    assert dist.min() < 1e-6, "every measured design is a row of the table"
    return int(frame.index[int(np.argmin(dist))])


def _row_of(frame: pd.DataFrame, design: dict[str, float]) -> dict[str, float]:
    i = _row_index(frame, design)  # the table's own RangeIndex: label and position agree
    return {k: float(frame[k].to_numpy(dtype=float)[i]) for k in ("gap", "strain_energy")}


def test_no_infeasible_measurement_is_ever_a_hit(limited: tuple[Path, str, Path]) -> None:
    state_dir, name, folder = limited
    truth = _truth(folder)
    status = campaign_status(state_dir, name)
    (target,) = status["targets"]
    assert target["hits"] >= 1, "the campaign found feasible hits"
    for hit in target["designs"]:
        row = _row_of(truth, hit)
        assert row["strain_energy"] <= LIMIT and WINDOW[0] <= row["gap"] <= WINDOW[1]
        assert hit["strain_energy"] == pytest.approx(row["strain_energy"]), "each hit shows its strain energy"
    # the first batch measured in-window rows over the limit or without a value: none counted
    barred = in_window_infeasible(truth)
    _, state = open_campaign(load_config(str(folder / "campaign.toml")), state_dir)
    U, y = ledger_arrays(state)
    measured = {_row_index(truth, r.result.handle.design) for r in state.records}
    measured_barred = len(measured & set(barred.index))
    assert measured_barred >= 5
    assert target["infeasible_in_window"] >= 5 and status["infeasible"] >= target["infeasible_in_window"]
    unconstrained = diverse_hits(U, y, state.config.targets[0].range, state.config.loop.min_distance)
    assert len(unconstrained) > target["hits"], "counting by the window alone would have taken infeasible hits"
    assert len(hit_designs(state)[0]) == target["hits"] == state.history[-1]["hits"][0]
    assert status["constraints"] == [{"property": "strain_energy", "max": LIMIT, "label": "strain_energy ≤ 1.5"}]
    if target["hits"] < 6:
        assert stop_reason(state) is not None and "every target" not in str(stop_reason(state))


def test_the_limit_model_is_fitted_from_the_ledger_every_iteration(limited: tuple[Path, str, Path]) -> None:
    state_dir, name, _ = limited
    fits = [json.loads((state_dir / name / "iterations" / f"{i:04d}" / "metrics.json").read_text()) for i in range(4)]
    rows = [m["fit"].get("feasibility_rows") for m in fits]
    assert rows[0] is None, "the first batch has no models"
    assert all(r is not None for r in rows[1:]) and rows[1][0] < rows[-1][0], "refitted on the growing ledger"


def test_limit_models_are_deterministic_and_rank_by_feasibility(limited: tuple[Path, str, Path]) -> None:
    state_dir, _, folder = limited
    _, state = open_campaign(load_config(str(folder / "campaign.toml")), state_dir)
    a, b = fit_limit_models(state), fit_limit_models(state)
    assert len(a) == 1 and a[0] is not None and b[0] is not None
    U = SPACE.sample_unit(np.random.default_rng(5), 200)
    surrogate = SurrogateEnsemble(SPACE.unit_dim, EnsembleConfig(members=2, epochs=1))
    models = with_feasibility_models(state, TrainedModels(surrogate))
    assert models is not None
    again = with_feasibility_models(state, TrainedModels(surrogate))
    assert again is not None
    lf, lf2 = log_feasible(state, models, U), log_feasible(state, again, U)
    assert lf is not None and lf2 is not None
    np.testing.assert_array_equal(lf, lf2)  # a resumed run refits exactly this model
    # strain energy is 3·u1 in the table: the limit 1.5 lies at u1 = 0.5
    col = SPACE.names.index("b")
    low, high = U[:, col] < 0.35, U[:, col] > 0.65
    assert np.median(lf[low]) > np.log(0.8) and np.median(lf[high]) < np.log(0.2)
    ok = believed_feasible(state, models, U)
    assert ok[low].mean() > 0.9 and ok[high].mean() < 0.1


def test_an_oracle_without_the_property_is_refused_before_anything_is_measured(tmp_path: Path) -> None:
    raw = {
        "name": "mock-limited",
        "targets": [{"value": 1.0}],
        "constraints": [{"property": "strain_energy", "max": 1.5}],
        "oracle": {"name": "mock", "settings": {"workdir": str(tmp_path / "mock")}},
        "ray": {"enabled": False},
    }
    with pytest.raises(ConfigError, match="mock oracle does not measure 'strain_energy'"):
        run_campaign(config_from_dict(raw), tmp_path / "state")
    assert not (tmp_path / "state").exists(), "nothing left behind: the fixed file starts afresh"


def test_status_says_the_limits_and_what_they_barred(
    limited: tuple[Path, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir, name, _ = limited
    assert main(["status", name, "--state", str(state_dir)]) == 0
    out = capsys.readouterr().out
    assert "constraints: strain_energy ≤ 1.5;" in out and "completed measurements infeasible" in out
    assert "in the window but infeasible" in out
    assert main(["status", name, "--state", str(state_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["infeasible"] >= 5 and all("strain_energy" in h for h in data["targets"][0]["designs"])


def _ledger(state: CampaignState) -> list[tuple[Any, ...]]:
    """What the oracle said, in the state's order, without wall-clock times and job ids."""
    return [
        (r.seq, r.iteration, r.tag, r.result.handle.design, r.result.status, r.result.values) for r in state.records
    ]


def test_a_constrained_campaign_stopped_and_resumed_ends_as_an_uninterrupted_one(
    limited: tuple[Path, str, Path], tmp_path: Path
) -> None:
    state_dir, name, folder = limited  # four iterations in one run
    text = campaign_text(tmp_path)
    path = tmp_path / "campaign.toml"
    path.write_text(text.replace("iterations = 4", "iterations = 2"))
    first = run_campaign(load_config(str(path)), tmp_path / "state")
    assert first.state.iteration == 2 and first.reason.startswith("iteration budget reached")
    path.write_text(text)  # a larger budget: the same campaign goes on (the budget is not its fingerprint)
    resumed = run_campaign(load_config(str(path)), tmp_path / "state")
    _, whole = open_campaign(load_config(str(folder / "campaign.toml")), state_dir)
    assert len(resumed.state.records) == len(whole.records) > len(first.state.records)
    assert _ledger(resumed.state) == _ledger(whole), "the limit's models refitted from the ledger plan the same"
    assert hit_table(resumed.state) == hit_table(whole)
    assert [m["hits"] for m in resumed.state.history] == [m["hits"] for m in whole.history]
    assert [m["fit"].get("feasibility_rows") for m in resumed.state.history] == [
        m["fit"].get("feasibility_rows") for m in whole.history
    ]
    ours, theirs = campaign_status(tmp_path / "state", name), campaign_status(state_dir, name)
    assert (ours["infeasible"], ours["targets"][0]["hits"]) == (theirs["infeasible"], theirs["targets"][0]["hits"])


class _Undeclared:
    """The table oracle as a lab that does not say which values its results carry (no
    `oracles.base.NamesValues`): only its results can show that one is missing."""

    idempotent_submit = True

    def __init__(self, path: Path) -> None:
        self.table = TableOracle(path=path)
        self.name, self.space = self.table.name, self.table.space

    def pool(self) -> pd.DataFrame:
        return self.table.pool()

    def submit(self, designs: Any) -> list[Handle]:
        return self.table.submit(designs)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return self.table.poll(handles)

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        return self.table.results(handles)

    def cancel(self, handles: Sequence[Handle]) -> None:
        self.table.cancel(handles)


def _broken(folder: Path) -> tuple[Path, pd.DataFrame]:
    """The tiny campaign for two iterations, its table's strain energies gone (as when the
    reference job they are computed from failed); the file and the good table."""
    text = campaign_text(folder).replace("iterations = 4", "iterations = 2")
    (folder / "campaign.toml").write_text(text)
    good = pd.read_csv(folder / "table.csv")
    good.assign(strain_energy=np.nan).to_csv(folder / "table.csv", index=False, float_format="%.17g")
    return folder / "campaign.toml", good


def test_an_oracle_that_declares_nothing_stops_on_its_latest_results_and_resumes_once_fixed(tmp_path: Path) -> None:
    path, good = _broken(tmp_path)
    cfg, state_dir = load_config(str(path)), tmp_path / "state"
    with pytest.raises(CampaignStopped) as err:
        run_campaign(cfg, state_dir, oracle=_Undeclared(tmp_path / "table.csv"))
    said = str(err.value)
    assert "carry no 'strain_energy' (their values: gap)" in said, "what came back instead"
    assert "the oracle (it does not measure that value) or its setup" in said and "run again" in said
    _, stopped = open_campaign(cfg, state_dir)
    assert stopped.iteration == 1 and len(stopped.records) >= 5, "stopped after the first batch, all of it kept"
    good.to_csv(tmp_path / "table.csv", index=False, float_format="%.17g")  # the cause fixed
    resumed = run_campaign(cfg, state_dir, oracle=_Undeclared(tmp_path / "table.csv"))
    assert resumed.reason.startswith("iteration budget reached") and resumed.state.iteration == 2
    new = [r for r in resumed.state.records if r.iteration == 1]
    assert new and any("strain_energy" in (r.result.values or {}) for r in new), "resumed: new results came in"


def test_an_oracle_that_declares_the_value_is_warned_about_never_stopped(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path)  # the table oracle declares its (empty) strain_energy column
    said: list[str] = []
    done = run_campaign(load_config(str(path)), tmp_path / "state", log=said.append)
    assert done.reason.startswith("iteration budget reached") and done.state.iteration == 2
    assert not any("strain_energy" in (r.result.values or {}) for r in done.state.records)
    (warning,) = [m for m in said if "carry no 'strain_energy'" in m]  # once, not every iteration
    assert "although the oracle declares it" in warning and "reference calculation" in warning
    assert done.state.history[-1]["hits"] == [0], "a result without the value is never a hit"
