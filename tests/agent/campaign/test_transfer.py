"""``[transfer]``: the config, the source's rows, and campaigns that learn from a source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.campaign.config import config_from_dict, load_config
from agent.campaign.ledger import LedgerRecord
from agent.campaign.plan import PlanInputs, retrain
from agent.campaign.runner import campaign_status, run_campaign
from agent.campaign.state import CampaignState, ledger_arrays
from agent.campaign.transfer import PIN_FILE, load_transfer, pinned_rows, source_rows, transfer_line
from agent.campaign.transfer_config import ledger_store
from agent.cli.main import main
from agent.core.errors import ConfigError, StateError
from agent.core.materials import get_material, load_dataset
from agent.design.trained import TrainedModels
from agent.models.gp import PriorMean
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from agent.models.transfer import TransferSource
from agent.report.inputs import load_inputs
from oracles.base import Handle, JobStatus, Result

WS2, MOS2 = get_material("ws2").space, get_material("mos2").space
QUICK = {"members": 2, "surrogate_epochs": 20, "surrogate_warm_epochs": 5, "generator_epochs": 3}
# The shipped default campaign's fingerprint as the code stored it before [transfer] existed.
DEFAULT_FINGERPRINT = "bf06aa5a7a9fbe21"


def gap(U: np.ndarray, shift: float) -> np.ndarray:
    """A made-up gap in the shared unit box; the target is the source shifted (another scale)."""
    return np.maximum(0.0, 2.0 * U[:, 0] - 1.2 * U[:, 6] + shift)


def table(folder: Path, space: Any, shift: float, n: int, seed: int) -> Path:
    U = space.sample_unit(np.random.default_rng(seed), n)
    df = space.to_frame(space.from_unit(U))
    df["gap"] = gap(U, shift)
    path = folder / f"table-{seed}.csv"
    df.to_csv(path, index=False, float_format="%.17g")
    return path


def campaign(name: str, material: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "material": material,
        "seed": 1,
        "targets": [{"value": 1.0, "window": 0.1, "hits": 50}],
        "oracle": {"name": "table", "settings": {"path": str(path), "material": material}},
        "initial": {"random": 10},
        "loop": {"batch_size": 5},
        "models": QUICK,
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.01},
    } | extra


def source_campaign(folder: Path, iterations: int) -> None:
    """Run the MoS2 source campaign in ``folder/state`` up to ``iterations`` (40 results, then 5 more each)."""
    raw = campaign("source", "mos2", table(folder, MOS2, 0.0, 60, 0), initial={"random": 40})
    run_campaign(config_from_dict(raw | {"budget": {"iterations": iterations}}), folder / "state")


@pytest.fixture
def source_ledger(tmp_path: Path) -> Path:
    """A MoS2 campaign's folder whose ledger holds 40 completed results (the source)."""
    source_campaign(tmp_path, 1)
    return tmp_path / "state" / "source"


def test_the_section_is_read_and_left_out_when_absent() -> None:
    base = {"name": "t", "material": "ws2", "targets": [{"value": 1.0}]}
    cfg = config_from_dict(base | {"transfer": {"source": "mos2"}})
    assert cfg.transfer is not None and cfg.transfer.label == "dataset mos2"
    assert config_from_dict(cfg.to_dict()) == cfg and cfg.fingerprint() != config_from_dict(base).fingerprint()
    assert "transfer" not in config_from_dict(base).to_dict()
    assert load_config().fingerprint() == DEFAULT_FINGERPRINT  # campaigns started before keep their folder


@pytest.mark.parametrize(
    ("transfer", "message"),
    [
        ({"source": "ws3"}, "transfer.source: unknown dataset; bundled datasets: mos2"),
        ({"ledger": "no/such/folder"}, "transfer.ledger: no such folder"),
        ({}, "give exactly one of `source`"),
    ],
)
def test_an_unknown_source_is_refused(transfer: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="1 problem") as err:
        config_from_dict({"name": "t", "material": "ws2", "targets": [{"value": 1.0}], "transfer": transfer})
    assert message in str(err.value)


def test_a_source_with_other_parameters_is_refused_naming_the_difference(source_ledger: Path) -> None:
    params = [{"name": n, "lower": 0.0, "upper": 1.0} for n in MOS2.names if n != "efield"]
    params += [{"name": "pressure", "lower": 0.0, "upper": 3.0, "type": "integer"}]
    space = {"name": "other", "parameters": params, "property": {"name": "gap"}}
    for transfer in ({"source": "mos2"}, {"ledger": str(source_ledger)}):
        with pytest.raises(ConfigError) as err:
            config_from_dict({"name": "t", "space": space, "targets": [{"value": 0.5}], "transfer": transfer})
        lines = str(err.value).splitlines()
        assert len(lines) == 2, lines  # one clear error
        assert "transfer: the source's design space differs from this campaign's" in lines[1]
        assert "parameters only in the source: ['efield']; parameters only in this campaign: ['pressure']" in lines[1]
    params[0] = {"name": "a", "lower": 0.0, "upper": 4.0, "type": "integer"}
    params[-1] = {"name": "efield", "lower": -1.0, "upper": 1.0}
    with pytest.raises(ConfigError, match="'a' is continuous in the source, integer here"):
        config_from_dict({"name": "t", "space": space, "targets": [{"value": 0.5}], "transfer": {"source": "mos2"}})


def test_a_ledger_source_gives_its_completed_results_in_its_own_unit_box(source_ledger: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(campaign("t", "ws2", tmp_path / "table-0.csv", transfer={"ledger": str(source_ledger)}))
    assert cfg.transfer is not None
    found = source_rows(cfg.transfer, WS2)
    U, y = found.U, found.y
    mine = pd.read_csv(tmp_path / "table-0.csv")
    assert found.material == "mos2" and U.shape == (40, 7) and len(y) == 40 and found.seq == 39
    src_U = MOS2.to_unit(mine[MOS2.names].to_numpy())  # MoS2's own box, not WS2's
    rows = [int(np.argmin(np.abs(src_U - u).sum(1))) for u in U]
    np.testing.assert_allclose(U, src_U[rows], atol=1e-9)
    np.testing.assert_allclose(y, mine["gap"].to_numpy()[rows])


def test_a_dataset_source_is_the_bundled_data_in_the_shared_unit_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNLOOP_CACHE_DIR", str(tmp_path / "cache"))
    models = {"members": 2, "surrogate_epochs": 1, "surrogate_warm_epochs": 1}
    raw = campaign("t", "ws2", tmp_path / "x.csv", transfer={"source": "mos2"}, models=models)
    (tmp_path / "x.csv").write_text(",".join([*WS2.names, "gap"]) + "\n" + ",".join(["0"] * 8) + "\n")
    source = load_transfer(config_from_dict(raw), tmp_path / "state")
    data = load_dataset("mos2").deduplicate("exact")
    assert source is not None and source.label == "dataset mos2" and source.rows == len(data.y)
    np.testing.assert_array_equal(source.U, data.U)  # MoS2's own unit box, used as WS2's
    assert len(list((tmp_path / "cache" / "models" / "mos2").glob("surrogate-*.pt"))) == 1


def run(raw: dict[str, Any], state: Path, iterations: int | None = None) -> Any:
    return run_campaign(config_from_dict(raw), state, max_iterations=iterations)


def test_a_ledger_source_informs_a_campaign_that_resumes_identically(
    source_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INNLOOP_CACHE_DIR", str(tmp_path / "cache"))
    target = table(tmp_path, WS2, 0.45, 150, 1)
    raw = campaign("ws2", "ws2", target, transfer={"ledger": str(source_ledger)}, budget={"iterations": 4})
    whole = run(raw, tmp_path / "whole")
    run(raw, tmp_path / "split", iterations=2)
    source_campaign(tmp_path, 2)  # the source measures on between this campaign's two runs
    assert sum(r.result.ok for r in ledger_store(source_ledger).ledger.records()) == 45
    resumed = run(raw, tmp_path / "split")
    # pinned on the first run: the same 40 rows, so one source model and the same plans
    assert len(list((tmp_path / "cache" / "models" / "mos2").glob("surrogate-*.pt"))) == 1  # trained once
    pinned = load_transfer(config_from_dict(raw), tmp_path / "split")
    assert pinned is not None and pinned.rows == 40
    assert json.loads((tmp_path / "split" / "ws2" / PIN_FILE).read_text())["seq"] == 39
    U, y = ledger_arrays(whole.state)
    np.testing.assert_array_equal(U, ledger_arrays(resumed.state)[0])
    assert [m["fit"]["transfer"] for m in resumed.state.history[1:]] == [
        m["fit"]["transfer"] for m in whole.state.history[1:]
    ]
    # the source informs the models but is no measurement: 10 + 3 × 5 oracle calls, all on the target's table
    assert whole.state.calls == 25 and len(y) == 25
    rows = WS2.to_unit(pd.read_csv(target)[WS2.names].to_numpy())
    assert all(np.abs(rows - u).sum(1).min() < 1e-9 for u in U)
    source = load_transfer(config_from_dict(raw), tmp_path / "whole")
    assert source is not None and not any(np.abs(U - s).sum(1).min() < 1e-9 for s in source.U)
    status = campaign_status(tmp_path / "whole", "ws2")
    assert status["oracle_calls"] == 25 and status["targets"][0]["hits"] == int((np.abs(y - 1.0) <= 0.1).sum())
    fits = [m["fit"]["transfer"] for m in whole.state.history[1:]]
    assert [f["fitted_on"] for f in fits] == [10, 15, 20]  # the map is refitted on the target's own results
    assert fits[0]["source"] == f"ledger {source_ledger}" and fits[0]["rows"] == 40
    assert fits[-1]["offset"] > 0.1  # the target sits above the source: the map found the shift
    assert [f["replay"] for f in fits] == sorted((f["replay"] for f in fits), reverse=True)
    metrics = json.loads((tmp_path / "whole" / "ws2" / "iterations" / "0003" / "metrics.json").read_text())
    assert metrics["fit"]["transfer"] == fits[-1]
    assert main(["status", "ws2", "--state", str(tmp_path / "whole")]) == 0
    line = transfer_line(fits[-1])
    assert line is not None and line in capsys.readouterr().out


def test_a_ledger_source_is_pinned_and_a_rewritten_one_refused(source_ledger: Path, tmp_path: Path) -> None:
    spec = config_from_dict(campaign("b", "ws2", tmp_path / "table-0.csv", transfer={"ledger": str(source_ledger)}))
    assert spec.transfer is not None
    folder = tmp_path / "b"
    pinned_rows(spec.transfer, WS2, folder)  # no campaign there: nothing to pin
    assert not (folder / PIN_FILE).exists()
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = pinned_rows(spec.transfer, WS2, folder)
    pin = json.loads((folder / PIN_FILE).read_text())
    assert pin == {"ledger": str(source_ledger), "seq": 39, "rows": 40, "fingerprint": first.fingerprint()}
    design = dict(zip(MOS2.names, map(float, MOS2.from_unit(np.full((1, 7), 0.5))[0])))
    handle = Handle("table", "later", design, submitted_at=1.0)
    ledger_store(source_ledger).ledger.append(Result(handle, JobStatus.COMPLETED, {"gap": 0.7}), iteration=1)
    assert len(source_rows(spec.transfer, WS2).y) == 41
    again = pinned_rows(spec.transfer, WS2, folder)  # the later result is not read
    np.testing.assert_array_equal(again.U, first.U)
    np.testing.assert_array_equal(again.y, first.y)
    path = source_ledger / "ledger.jsonl"
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:30]))  # rewritten: 30 results left
    with pytest.raises(StateError) as err:
        pinned_rows(spec.transfer, WS2, folder)
    assert str(err.value).startswith(f"transfer source ledger {source_ledger} was rewritten: its results up to seq 39")
    assert "40 rows" in str(err.value) and "now 30 rows" in str(err.value) and "\n" not in str(err.value)
    (folder / PIN_FILE).write_text('{"seq": "39"}')
    with pytest.raises(StateError, match="expected 'seq' and 'rows'"):
        pinned_rows(spec.transfer, WS2, folder)


def test_replayed_rows_never_calibrate_the_campaigns_sigma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    src_U = WS2.sample_unit(rng, 400)
    model = SurrogateEnsemble(7, EnsembleConfig(members=2, hidden=16, layers=1, epochs=5))
    model.fit(src_U, gap(src_U, 0.0), warm_start=False)
    source = TransferSource.of("test", src_U, gap(src_U, 0.0), model)
    U = WS2.sample_unit(rng, 30)
    records = tuple(
        LedgerRecord(
            k,
            0,
            1.0,
            Result(
                Handle("t", f"j{k}", dict(zip(WS2.names, map(float, x))), submitted_at=1.0),
                JobStatus.COMPLETED,
                {"gap": g},
            ),
            "random",
        )
        for k, (x, g) in enumerate(zip(WS2.from_unit(U), gap(U, 0.45)))
    )
    raw = campaign("b", "ws2", table(tmp_path, WS2, 0.45, 5, 1), models=QUICK | {"acquisition": "ensemble"})
    state = CampaignState(config_from_dict(raw), WS2, "gap", iteration=1, records=records)
    held_out: list[np.ndarray] = []
    original = SurrogateEnsemble._fit_scale

    def spy(self: SurrogateEnsemble, U: np.ndarray, y: np.ndarray) -> float:
        held_out.append(np.array(U))
        return original(self, U, y)

    monkeypatch.setattr(SurrogateEnsemble, "_fit_scale", spy)
    models = retrain(state, PlanInputs(source=source))
    assert models is not None and models.fit["n_train"] == 30 + 250  # the replay trained the ensemble
    measured = ledger_arrays(state)[0]
    assert len(held_out) == 1 and len(held_out[0]) == 3  # 10 % of the 30 measurements
    assert all(np.abs(measured - row).sum(1).min() < 1e-9 for row in held_out[0])


def with_prior(models: TrainedModels | None) -> bool:
    """Whether the report's acquisition GP has the source's prior mean (`agent.models.gp.PriorMean`)."""
    assert models is not None and models.acquisition is not None  # the campaign scores with a GP
    return isinstance(models.acquisition.mean_module, PriorMean)


def test_a_report_takes_the_source_model_from_the_cache_only(
    source_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNLOOP_CACHE_DIR", str(tmp_path / "cache"))
    target = table(tmp_path, WS2, 0.45, 60, 1)
    run(campaign("b", "ws2", target, transfer={"ledger": str(source_ledger)}, budget={"iterations": 2}), tmp_path)
    inputs = load_inputs(tmp_path, "b")
    assert with_prior(inputs.models)
    assert not [n for n in inputs.notes if "transfer" in n]
    elsewhere = tmp_path / "elsewhere"  # another machine, another cache: the report trains nothing
    monkeypatch.setenv("INNLOOP_CACHE_DIR", str(elsewhere))
    inputs = load_inputs(tmp_path, "b")
    assert not elsewhere.exists()
    assert not with_prior(inputs.models)
    [note] = [n for n in inputs.notes if "transfer" in n]
    assert note.startswith(f"the model of transfer source ledger {source_ledger} is not in the cache ({elsewhere}")
    assert note.endswith("the acquisition GP was fitted without the source's prior mean, unlike the campaign's")


def test_a_dataset_source_is_pinned_by_its_first_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundled table that grew between two runs gives its first rows only; one whose first
    rows changed (another version of the data) is refused in one line."""
    mose2 = get_material("mose2").space
    spec = config_from_dict(campaign("c", "mose2", tmp_path / "x.csv", transfer={"source": "ws2"}))
    assert spec.transfer is not None
    shipped = load_dataset("ws2")
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    small = type(shipped)(shipped.space, shipped.frame.iloc[:100], shipped.target, "first 100")
    monkeypatch.setattr("agent.campaign.transfer.load_dataset", lambda name: small)
    first = pinned_rows(spec.transfer, mose2, folder)
    pin = json.loads((folder / PIN_FILE).read_text())
    assert pin == {"dataset": "ws2", "rows": 100, "fingerprint": first.fingerprint()}
    grown = type(shipped)(shipped.space, shipped.frame.iloc[:150], shipped.target, "first 150")
    monkeypatch.setattr("agent.campaign.transfer.load_dataset", lambda name: grown)
    again = pinned_rows(spec.transfer, mose2, folder)
    np.testing.assert_array_equal(again.U, first.U)
    np.testing.assert_array_equal(again.y, first.y)
    other = type(shipped)(shipped.space, shipped.frame.iloc[1:150], shipped.target, "another version")
    monkeypatch.setattr("agent.campaign.transfer.load_dataset", lambda name: other)
    with pytest.raises(StateError) as err:
        pinned_rows(spec.transfer, mose2, folder)
    assert str(err.value).startswith("transfer source dataset ws2 was rewritten: its first 100 rows are not")
    assert "install the innloop version that shipped them" in str(err.value) and "\n" not in str(err.value)
    (folder / PIN_FILE).write_text('{"dataset": "ws2"}')
    with pytest.raises(StateError, match=r"expected 'rows' \(a non-negative integer\)"):
        pinned_rows(spec.transfer, mose2, folder)


def test_a_ws2_target_above_its_tables_range_is_a_valid_campaign(tmp_path: Path) -> None:
    """WS2's table is a thin uniform sample at cheap settings: it does not bound what a live
    campaign may ask for (MoS2's data still do)."""
    raw = campaign("w", "ws2", tmp_path / "x.csv") | {"targets": [{"value": 2.3, "window": 0.1, "hits": 5}]}
    assert config_from_dict(raw).targets[0].value == 2.3
    with pytest.raises(ConfigError, match="outside the mos2 data's gap range"):
        config_from_dict(campaign("m", "mos2", tmp_path / "x.csv") | {"targets": [{"value": 2.6, "window": 0.1}]})
