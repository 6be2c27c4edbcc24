"""The console views of ``innloop run``: plain lines, the live panel, the final table."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from rich.console import Console

from agent.campaign.config import config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.monitor import Monitor, current, watching
from agent.campaign.state import CampaignState
from agent.cli.console import LineView, LiveView, hits_table, open_view
from agent.core.materials import get_material
from oracles.base import ErrorClass, Handle, JobStatus, Result

MOS2 = get_material("mos2")


def _record(seq: int, unit: list[float], value: float | None) -> LedgerRecord:
    x = MOS2.space.from_unit(np.asarray([unit], dtype=np.float64))[0]
    handle = Handle("mock", f"job-{seq}", dict(zip(MOS2.space.names, map(float, x))), submitted_at=1.0 + seq)
    if value is None:
        result = Result.failure(handle, ErrorClass.INFRASTRUCTURE, "lost")
    else:
        result = Result(handle, JobStatus.COMPLETED, values={"gap": value})
    return LedgerRecord(seq, 0, 1.0 + seq, result, "t")


def _state(**budget: Any) -> CampaignState:
    cfg = config_from_dict(
        {
            "name": "view",
            "targets": [{"value": 1.0, "window": 0.1, "hits": 3}, {"value": 0.5, "window": 0.1, "hits": 2}],
            "budget": budget or {"oracle_calls": 40, "wall_time_s": 600},
        }
    )
    records = (_record(0, [0.5] * 7, 1.02), _record(1, [0.5] * 6 + [0.9], 0.98), _record(2, [0.1] * 7, None))
    metrics = {"iteration": 0, "new_results": 3}
    return CampaignState(cfg, MOS2.space, "gap", iteration=1, records=records, history=(metrics,))


def test_line_view_prints_one_plain_line_per_iteration_and_messages_to_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = LineView(out, err, unit="eV")
    state = _state()
    view.started(state)
    view.stage(state, "measure")
    view.jobs(2, 3, 1)
    view.message("submitted 5 designs to mock")
    assert out.getvalue() == ""  # stages and job counts redraw nothing in plain mode
    view.iteration(state)
    line = out.getvalue()
    assert line.count("\n") == 1 and "\x1b" not in line
    assert line.startswith("iteration 0: 3 oracle calls (+3, 1 failed), hits 2/3 at 1 eV, 0/2 at 0.5 eV;")
    assert "37 calls and" in line and " s left" in line
    assert err.getvalue() == "submitted 5 designs to mock\n"


def test_live_view_shows_stage_jobs_hits_and_budget() -> None:
    buf = io.StringIO()
    view = LiveView(Console(file=buf, width=100, force_terminal=True), unit="eV")
    state = _state()
    view.started(state)
    view.stage(state, "measure")
    view.jobs(4, 6, 1)
    view.message("oracle unreachable; retry in 2 s")
    text = _render(view)
    assert "view  iteration 1 · measure ·" in text
    assert "7 done · 6 out · 2 failed" in text  # 3 in the ledger (1 failed) + this batch's 4 (1 failed)
    assert "left: 27 calls" in text
    assert "2 / 3 hits" in text and "0 / 2 hits" in text
    assert "oracle unreachable; retry in 2 s" in text


def _render(view: LiveView) -> str:
    c = Console(file=io.StringIO(), width=100, record=True)
    c.print(view._render())
    return c.export_text()


def test_quiet_view_prints_nothing_and_the_monitor_is_installed_for_the_block(capsys: Any) -> None:
    base = current()
    with open_view("quiet") as view, watching(view):
        assert current() is view
        view.iteration(_state())
        view.message("hello")
    assert current() is base and type(base) is Monitor
    assert capsys.readouterr() == ("", "")


def test_hits_table_has_units_in_its_header_and_real_values() -> None:
    status = {
        "targets": [
            {
                "label": "1 ± 0.1",
                "value": 1.0,
                "window": 0.1,
                "designs": [dict(zip(MOS2.space.names, [3.1, 3.2, 12.3, 90.0, 91.5, 120.0, -0.05]))],
            },
            {"label": "0.5 ± 0.1", "value": 0.5, "window": 0.1, "designs": []},
        ]
    }
    status["targets"][0]["designs"][0]["gap"] = 1.0234
    buf = io.StringIO()
    Console(file=buf, width=160).print(hits_table(status, MOS2.space.units, "gap", "eV"))
    text = buf.getvalue()
    header = text.splitlines()[0]
    for column in ("target (eV)", "a (Å)", "gamma (deg)", "efield (V/Å)", "gap (eV)"):
        assert column in header
    assert "3.100" in text and "12.30" in text and "120.0" in text and "-0.050" in text and "1.023" in text
    assert "no hits yet" in text
