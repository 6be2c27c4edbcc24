"""People in the loop without Prefect: a campaign measured by a person (`oracles.manual`) through
``innloop tell``, partial answers and a failure included, and measurements from outside that
count for models and hits but never as oracle calls; every bad row refused on its own line."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.campaign.config import config_from_dict
from agent.campaign.journal import in_flight
from agent.campaign.runner import CampaignRun, campaign_status, open_campaign, run_campaign
from agent.campaign.store import CampaignStore
from agent.campaign.tell import tell_campaign
from agent.cli.main import main
from agent.core.errors import DataError
from oracles.manual import TO_MEASURE, ManualOracle
from tests.agent.campaign.helpers import TINY_MODELS

NAMES = ["a", "b", "c", "alpha", "beta", "gamma", "efield"]  # MoS2's design columns
BASE = {"a": 3.16, "b": 3.16, "c": 12.3, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}


def _config(name: str, oracle: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 3,
        "targets": [{"value": 1.0, "window": 0.15, "hits": 50}],
        "oracle": {"name": oracle},
        "initial": {"random": 6},
        "loop": {"batch_size": 2, "samples_per_target": 100},
        "models": TINY_MODELS,
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.02},
    } | extra


def _gap(design: dict[str, Any]) -> float:
    """A person's 'measurement': smooth in the design, inside MoS2's range."""
    return float(1.7 - 2.0 * abs(design["a"] - 3.16) - 1.5 * abs(design["b"] - 3.16) - 0.4 * abs(design["efield"]))


def _sheet(oracle: ManualOracle, rows: int, timeout: float = 60) -> pd.DataFrame:
    """``to_measure.csv`` once it lists ``rows`` open jobs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if oracle.sheet.exists():
            frame = pd.read_csv(oracle.sheet, keep_default_na=False)
            if len(frame) == rows:
                return frame
        time.sleep(0.05)
    raise AssertionError(f"{oracle.sheet} never listed {rows} jobs")


def _told(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_a_person_measures_a_campaign_by_file(tmp_path: Path) -> None:
    """Two iterations measured by hand: half of the first batch told, recorded at once while the
    other jobs stay in flight; the rest told later (one marked failed with its reason), and an
    external row told while the run holds the lock enters the ledger at the next iteration."""
    config = config_from_dict(_config("by-hand", "manual", budget={"iterations": 2}))
    state = tmp_path / "state"
    store = CampaignStore(state, "by-hand")
    out: dict[str, CampaignRun] = {}
    runner = threading.Thread(target=lambda: out.setdefault("run", run_campaign(config, state)), daemon=True)
    runner.start()
    oracle = ManualOracle(workdir=store.root / "oracle")
    sheet = _sheet(oracle, 6)
    assert list(sheet.columns) == ["job_id", "asked_at", *NAMES, "gap"] and (sheet["gap"] == "").all()
    first = sheet.iloc[:3].copy()
    first["gap"] = [_gap(r) for r in first.to_dict("records")]
    first["by"] = "ada"
    tell_campaign(store, config, _told(tmp_path / "part.csv", first.drop(columns=["job_id", "asked_at"])), oracle)
    # the ledger is written first, then the journal lets the answered jobs go: wait for both
    _wait_for(lambda: len(store.ledger.records()) >= 3 and len(in_flight(store)[0]) <= 3, 30)
    assert len(store.ledger.records()) == 3, "partial answers are recorded as they come"
    assert len(in_flight(store)[0]) == 3 and len(_sheet(oracle, 3)) == 3, "the other jobs stay in flight"
    rest = _sheet(oracle, 3).copy()
    rest["gap"] = [str(_gap(r)) for r in rest.to_dict("records")]
    rest["status"], rest["reason"] = "", ""
    rest.loc[rest.index[0], ["gap", "status", "reason"]] = ["", "failed", "sample cracked"]
    outside = BASE | {"a": 3.3, "gap": 1.02, "by": "grace", "measured_at": "2026-11-30"}
    rest = pd.concat([rest, pd.DataFrame([outside])], ignore_index=True)
    told, now = tell_campaign(store, config, _told(tmp_path / "rest.csv", rest), oracle)
    assert len(told.answers) == 3 and len(told.external) == 1 and now == [], "the run holds the lock"
    again, _ = tell_campaign(store, config, _told(tmp_path / "again.csv", rest.iloc[3:]), oracle)
    assert again.external == [] and "told earlier" in again.skipped[0], "told twice while it waits: kept once"
    other = rest.iloc[3:].assign(gap=1.2)
    with pytest.raises(DataError, match=r"known with gap = 1\.02"):
        tell_campaign(store, config, _told(tmp_path / "other.csv", other), oracle)
    for _ in range(2):
        batch = _sheet(oracle, 2)
        batch["gap"] = [_gap(r) for r in batch.to_dict("records")]
        tell_campaign(store, config, _told(tmp_path / "next.csv", batch), oracle)
        if _wait_for(lambda: "run" in out, 60):
            break
    runner.join(60)
    run = out["run"]
    assert run.reason.startswith("iteration budget reached"), run.reason
    records = store.ledger.records()
    oracle_records = [r for r in records if not r.external]
    assert len(oracle_records) == 8 and run.state.calls == 8
    failed = [r for r in oracle_records if not r.result.ok]
    assert [r.result.message for r in failed] == ["sample cracked"]
    assert {r.result.provenance.get("by") for r in oracle_records[:3]} == {"ada"}
    (ext,) = [r for r in records if r.external]
    assert ext.iteration == 1 and ext.result.values == {"gap": 1.02}
    assert ext.result.provenance["by"] == "grace" and ext.result.provenance["measured_at"] == "2026-11-30"
    status = campaign_status(state, "by-hand")
    assert status["oracle_calls"] == 8 and status["external"] == 1 and status["in_flight"] == 0
    assert any(h["a"] == pytest.approx(3.3) for h in status["targets"][0]["designs"]), "an external hit counts"


def _wait_for(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A mock campaign after one iteration (6 results), at most 10 oracle calls in all."""
    root = tmp_path_factory.mktemp("told")
    config = config_from_dict(_config("told", "mock", budget={"oracle_calls": 10}))
    run_campaign(config, root / "state", max_iterations=1)
    return root, config


def test_external_rows_count_for_hits_never_as_calls(measured: tuple[Path, Any], tmp_path: Path) -> None:
    root, config = measured
    store, state = open_campaign(config, root / "state")
    rows = [BASE | {"a": a, "b": 3.0, "gap": 1.0, "by": "lab B"} for a in (3.0, 3.4)]
    _, recorded = tell_campaign(store, config, _told(tmp_path / "ext.csv", pd.DataFrame(rows)), None)
    assert len(recorded) == 2 and all(r.external for r in recorded)
    again, twice = tell_campaign(store, config, tmp_path / "ext.csv", None)
    assert twice == [] and len(again.skipped) == 2, "telling a file twice records nothing twice"
    status = campaign_status(root / "state", "told")
    assert status["oracle_calls"] == state.calls == 6 and status["external"] == 2
    assert sum(h["gap"] == 1.0 for h in status["targets"][0]["designs"]) == 2, "both count as hits"
    run = run_campaign(config, root / "state")
    assert run.state.calls == 10 and run.state.external == 2, "the budget counts the oracle's calls only"
    assert run.reason.startswith("oracle-call budget reached (10 of 10)")


def test_every_bad_row_is_named_and_nothing_is_written(measured: tuple[Path, Any], tmp_path: Path) -> None:
    root, config = measured
    store, state = open_campaign(config, root / "state")
    known = next(r.result for r in state.records if r.result.ok and not r.external)
    good = BASE | {"efield": 0.1, "gap": 0.9}
    rows = [
        good,
        good | {"a": 40.0},  # outside the space
        known.handle.design | {"gap": known.values["gap"] + 0.5},  # the ledger has another value
        good | {"efield": 0.2, "gap": ""},  # no value
        good | {"efield": 0.3, "status": "maybe"},
        good | {"efield": 0.4, "status": "failed", "reason": "x"},  # failed, but no job asked for it
        good | {"gap": 0.95},  # the same design as line 2, another value
    ]
    path = _told(tmp_path / "bad.csv", pd.DataFrame(rows))
    before = store.ledger.path.read_bytes()
    with pytest.raises(DataError) as err:
        tell_campaign(store, config, path, None)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("6 bad rows, nothing was recorded:")
    for line, what in zip(lines[1:], ["a=40", "is known with gap", "no gap", "status 'maybe'", "'failed'", "earlier"]):
        assert what in line, (what, line)
    assert [f"line {n}" in line for n, line in zip((3, 4, 5, 6, 7, 8), lines[1:])] == [True] * 6
    assert store.ledger.path.read_bytes() == before and not list((store.root / "external").glob("*.json"))
    extra = _told(tmp_path / "extra.csv", pd.DataFrame([good | {"colour": "red"}, good | {"a": 40.0, "colour": ""}]))
    with pytest.raises(DataError) as err:
        tell_campaign(store, config, extra, None)
    head, column, row = str(err.value).splitlines()
    assert head.endswith("1 bad column and 1 bad row, nothing was recorded:"), head
    assert "column 'colour' is neither" in column and "line 3" in row and "a=40" in row, (column, row)
    assert main(["tell", "told", str(extra), "--state", str(root / "state")]) == 2
    no_value = _told(tmp_path / "no-value.csv", pd.DataFrame([BASE | {"colour": "red"}]))
    with pytest.raises(DataError, match=r"column 'colour' is neither(.|\n)*missing the measured value's column 'gap'"):
        tell_campaign(store, config, no_value, None)
    assert store.ledger.path.read_bytes() == before


def test_manual_answers_are_final(tmp_path: Path) -> None:
    oracle = ManualOracle(workdir=tmp_path)
    (h, g) = oracle.submit([BASE, BASE | {"efield": 0.1}])
    assert [s.value for s in oracle.poll([h, g])] == ["pending", "pending"]
    assert oracle.answer(h.job_id, {"gap": 1.1}, by="ada") and not oracle.answer(h.job_id, {"gap": 1.1})
    with pytest.raises(Exception, match="answered already"):
        oracle.answer(h.job_id, {"gap": 1.2})
    oracle.cancel([g])
    with pytest.raises(Exception, match="cancelled"):
        oracle.answer(g.job_id, {"gap": 1.0})
    res = oracle.results([h, g])
    assert res[0].values == {"gap": 1.1} and res[0].provenance["by"] == "ada" and res[1].status.value == "cancelled"
    assert len(pd.read_csv(tmp_path / TO_MEASURE)) == 0
    assert oracle.adopt([h.design], since=h.submitted_at) == [h] and oracle.adopt([h.design], time.time() + 1) == [None]
