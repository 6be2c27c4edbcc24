"""Families on the console: ``innloop status`` (text and ``--json``), the run views and the hits table.

A campaign folder is written by hand (config, ledger, committed iterations whose metrics
hold the families the models believed in), so every count is exact and nothing is trained.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from agent.campaign.config import config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.runner import campaign_status
from agent.campaign.state import CampaignState
from agent.campaign.store import CampaignStore
from agent.cli.console import LineView, LiveView, families_text, hits_table
from agent.cli.main import main
from agent.core.materials import get_material
from agent.design.coverage import Families
from oracles.base import Handle, JobStatus, Result

MOS2 = get_material("mos2")
SPACE = MOS2.space
D = SPACE.unit_dim
CENTRES = np.array([[0.2] * D, [0.5] * D, [0.8] * D])
FAMILIES = Families(CENTRES, np.array([40, 30, 30]), 0.1)
NAME = "fams"


def _config(first: dict[str, Any]) -> Any:
    return config_from_dict(
        {
            "name": NAME,
            "targets": [{"value": 1.0, "window": 0.1, **first}, {"value": 0.5, "window": 0.1, "hits": 2}],
            "budget": {"oracle_calls": 100},
        }
    )


def _near(centre: int, shift: float) -> list[float]:
    u = CENTRES[centre].copy()
    u[0] += shift
    return [float(v) for v in u]


# target 1.0: three diverse hits, two in family 0 and one in family 1, and a miss; target 0.5: none
MEASURED = [(_near(0, 0.0), 1.0), (_near(0, 0.2), 1.02), (_near(1, 0.0), 0.95), (_near(2, 0.0), 2.5)]


def _result(seq: int, unit: list[float], value: float) -> Result:
    x = SPACE.from_unit(np.asarray([unit], dtype=np.float64))[0]
    handle = Handle("mock", f"job-{seq}", dict(zip(SPACE.names, map(float, x))), submitted_at=1.0 + seq)
    return Result(handle, JobStatus.COMPLETED, values={"gap": value})


def _campaign(tmp_path: Path, first: dict[str, Any], *, families: bool = True) -> Path:
    """A campaign of two committed iterations: the first's metrics hold families, the second's none."""
    cfg = _config(first)
    store = CampaignStore(tmp_path, NAME)
    store.create(cfg.to_dict(), cfg.fingerprint(), "# test\n")
    for seq, (unit, value) in enumerate(MEASURED):
        store.ledger.append(_result(seq, unit, value), iteration=0)
    believed = [FAMILIES.to_dict(), None] if families else None
    store.commit_iteration(0, {"iteration": 0, "elapsed_s": 3.0} | ({"families": believed} if believed else {}))
    store.commit_iteration(1, {"iteration": 1, "elapsed_s": 7.0})
    return tmp_path


def test_status_counts_the_families_holding_a_hit(tmp_path: Path) -> None:
    status = campaign_status(_campaign(tmp_path, {"hits": 3, "families": 3}), NAME)
    one, two = status["targets"]
    counts = {k: one[k] for k in ("hits", "wanted", "families", "families_total", "families_wanted")}
    assert counts == {"hits": 3, "wanted": 3, "families": 2, "families_total": 3, "families_wanted": 3}
    assert [d["family"] for d in one["designs"]] == [0, 0, 1]
    assert (two["hits"], two["families"], two["families_total"], two["families_wanted"]) == (0, None, None, None)
    assert not status["done"], "three hits but only two of three families: it goes on"
    assert status["elapsed_s"] == 7.0 and status["iterations"] == 2
    json.dumps(status)  # what --json prints


def test_status_without_families_keeps_its_keys(tmp_path: Path) -> None:
    status = campaign_status(_campaign(tmp_path, {"hits": 3}, families=False), NAME)
    one = status["targets"][0]
    assert one["hits"] == 3 and one["families"] is None and one["families_total"] is None
    assert one["families_wanted"] is None and [d["family"] for d in one["designs"]] == [None] * 3


def test_status_command_says_families_beside_hits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(_campaign(tmp_path, {"hits": 3, "families": 3}))
    assert main(["status", NAME, "--state", state]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "target 1 ± 0.1: 3 of 3 diverse hits, in 2 of 3 families (3 wanted)" in lines, lines
    assert "target 0.5 ± 0.1: 0 of 2 diverse hits" in lines, lines
    assert main(["status", NAME, "--state", state, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["targets"][0]["families"] == 2 and data["targets"][0]["designs"][2]["family"] == 1


def test_status_command_unasked_families_are_counted_not_wanted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(_campaign(tmp_path, {"hits": 3}))
    assert main(["status", NAME, "--state", state]) == 0
    out = capsys.readouterr().out
    assert "target 1 ± 0.1: 3 of 3 diverse hits, in 2 of 3 families\n" in out, out


def test_families_text() -> None:
    assert families_text(None, None, None) == ""
    assert families_text(None, None, 1) == ""  # families = 1 keeps no families
    assert families_text(None, None, 4) == "0/4 families"
    assert families_text(2, 10, None) == "2/10 families"
    assert families_text(2, 3, 5) == "2/5 families"  # fewer believed than wanted: the wanted count


def _state() -> CampaignState:
    cfg = _config({"hits": 3, "families": 3})
    records = tuple(LedgerRecord(i, 0, 1.0 + i, _result(i, u, v), "t") for i, (u, v) in enumerate(MEASURED))
    history = ({"iteration": 0, "new_results": 4, "families": [FAMILIES.to_dict(), None]},)
    return CampaignState(cfg, SPACE, "gap", iteration=1, records=records, history=history)


def test_line_and_live_views_show_families_beside_hits() -> None:
    out, err = io.StringIO(), io.StringIO()
    LineView(out, err, unit="eV").iteration(_state())
    assert "hits 3/3 at 1 eV in 2/3 families, 0/2 at 0.5 eV;" in out.getvalue(), out.getvalue()
    live = LiveView(Console(file=io.StringIO(), width=100, force_terminal=True), unit="eV")
    live.started(_state())
    c = Console(file=io.StringIO(), width=100, record=True)
    c.print(live._render())
    text = c.export_text()
    assert "3 / 3 hits · 2 / 3 families" in text and "0 / 2 hits" in text, text


def test_hits_table_has_a_family_column_once_there_are_families(tmp_path: Path) -> None:
    status = campaign_status(_campaign(tmp_path, {"hits": 3, "families": 3}), NAME)
    buf = io.StringIO()
    Console(file=buf, width=200).print(hits_table(status, SPACE.units, "gap", "eV"))
    lines = buf.getvalue().splitlines()
    assert lines[0].rstrip().endswith("family"), lines[0]
    rows = [ln.split() for ln in lines if ln.strip() and ln.split()[-1].isdigit() and "." in ln]
    assert [r[-1] for r in rows] == ["0", "0", "1"], lines
    assert "no hits yet" in buf.getvalue()
    bare = campaign_status(_campaign(tmp_path / "bare", {"hits": 3}, families=False), NAME)
    buf = io.StringIO()
    Console(file=buf, width=200).print(hits_table(bare, SPACE.units, "gap", "eV"))
    assert "family" not in buf.getvalue()
