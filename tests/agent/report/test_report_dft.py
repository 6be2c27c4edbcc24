"""DFT evidence: a hit's gap re-read from its GPAW job folder, and what the campaign cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.campaign.config import config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.state import CampaignState
from agent.core.targets import TargetRange
from agent.report.dft import campaign_dft, dft_evidence, records_cost, reread_gap
from oracles.base import ErrorClass, Handle, JobStatus, Result


def _job(folder: Path, vbm: float, cbm: float, wall: float = 30.0) -> None:
    folder.mkdir(parents=True)
    spectrum = {"eigenvalues_eV": [[[vbm - 1.0, vbm, cbm], [vbm - 1.2, vbm - 0.1, cbm + 0.3]]], "fermi_eV": vbm + 0.2}
    (folder / "eigenvalues.json").write_text(json.dumps(spectrum))
    (folder / "output.json").write_text(json.dumps({"gap_eV": cbm - vbm, "wall_s": wall, "gpaw_version": "26.7.0"}))


def _record(seq: int, folder: Path, values: dict[str, float] | None, wall: float = 30.0) -> LedgerRecord:
    handle = Handle("gpaw", f"job{seq}", {"a": 3.0}, workdir=str(folder))
    prov = {"oracle": "gpaw", "code": "gpaw", "wall_s": wall}
    if values is None:
        result = Result.failure(handle, ErrorClass.PHYSICS, "SCF did not converge", provenance=prov)
    else:
        result = Result(handle, JobStatus.COMPLETED, values=values, provenance=prov)
    return LedgerRecord(seq, 1, 0.0, result, "hit")


def test_a_hits_gap_is_re_read_from_its_job_and_a_changed_file_shows(tmp_path: Path) -> None:
    _job(tmp_path / "j1", -1.0, 0.05)
    _job(tmp_path / "j2", -1.0, 0.0)
    values = {"gap": 1.05, "gap_raw": 1.05, "energy": -22.0, "strain_energy": 0.3}
    hits = [
        ("1 ± 0.1", _record(1, tmp_path / "j1", values)),
        ("1 ± 0.1", _record(2, tmp_path / "j2", values)),  # its spectrum says 1.00 eV, the ledger 1.05
        ("1 ± 0.1", _record(3, tmp_path / "gone", values)),
    ]
    table = dft_evidence(hits, "gap")
    assert list(table["gap re-read (eV)"])[:2] == [pytest.approx(1.05), pytest.approx(1.0)]
    assert list(table["agrees"]) == [True, False, False]
    assert table["strain energy (eV/f.u.)"].tolist() == [0.3, 0.3, 0.3] and table["GPAW"][0] == "26.7.0"
    assert "is gone" in table["note"][2] and reread_gap(tmp_path / "gone")[0] is None


def test_a_calibrated_gap_is_compared_on_gpaws_own_scale(tmp_path: Path) -> None:
    _job(tmp_path / "j", -1.0, 0.5)
    row = dft_evidence([("t", _record(1, tmp_path / "j", {"gap": 1.05, "gap_raw": 1.5}))], "gap").iloc[0]
    assert row["agrees"] and row["gap recorded (eV)"] == 1.5


def test_dft_hours_count_every_paid_job_failures_included(tmp_path: Path) -> None:
    records = [_record(1, tmp_path, {"gap": 1.0}, 1800.0), _record(2, tmp_path, None, 1800.0)]
    cost = records_cost(records, 7200.0)
    assert cost == {"calls": 2, "jobs": 2, "dft_hours": pytest.approx(1.0), "wall_hours": pytest.approx(2.0)}


def test_a_campaigns_hits_are_its_evidence_and_a_mock_campaign_has_none(tmp_path: Path) -> None:
    raw = {"name": "dft", "targets": [{"value": 1.0, "window": 0.1, "hits": 2}], "ray": {"enabled": False}}
    config = config_from_dict(raw)
    space = config.design_material().space
    design = dict(zip(space.names, [3.16, 3.16, 12.3, 90.0, 90.0, 120.0, 0.0], strict=True))
    _job(tmp_path / "hit", -1.0, 0.02)
    _job(tmp_path / "miss", -1.0, 0.5)
    hit = Result(Handle("gpaw", "h", design, workdir=str(tmp_path / "hit")), JobStatus.COMPLETED, {"gap": 1.02})
    miss = Result(Handle("gpaw", "m", design | {"a": 3.3}, workdir=str(tmp_path / "miss")), JobStatus.COMPLETED)
    miss.values = {"gap": 1.5}
    for r in (hit, miss):
        r.provenance = {"code": "gpaw", "wall_s": 900.0}
    state = CampaignState(
        config, space, "gap", records=(LedgerRecord(1, 0, 0.0, hit, "seed"), LedgerRecord(2, 0, 0.0, miss, "seed"))
    )
    found = campaign_dft(state, [("1 ± 0.1", TargetRange.around(1.0, 0.1))])
    assert found is not None
    table, cost = found
    assert list(table["job"]) == ["hit"] and bool(table["agrees"][0])
    assert cost["hits"] == 1 and cost["hits_agree"] == 1 and cost["dft_hours"] == pytest.approx(0.5)
    plain = Result(Handle("mock", "x", design, workdir=str(tmp_path / "hit")), JobStatus.COMPLETED, {"gap": 1.0})
    plain.provenance = {"oracle": "mock"}  # a job folder of its own, but not a GPAW job's
    mock = CampaignState(config, space, "gap", records=(LedgerRecord(1, 0, 0.0, plain, "seed"),))
    assert campaign_dft(mock, [("1 ± 0.1", TargetRange.around(1.0, 0.1))]) is None
