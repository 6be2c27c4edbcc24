"""A person approves each batch (``[approval]``, `agent.campaign.approval`) without Prefect:
``innloop approve`` from another thread, drops that are never proposed again, a run stopped
while it waits that asks the same question again, a timeout, and ``[notify]``'s webhook
hearing each event once (`agent.testing.webhook.Receiver` on loopback)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.campaign.approval import DECISION, REQUEST, Decision, Proposal, read_decision, read_request
from agent.campaign.config import config_from_dict
from agent.campaign.runner import CampaignRun, campaign_status, open_campaign, run_campaign
from agent.campaign.state import measured_unit
from agent.campaign.store import CampaignStore
from agent.cli.main import main
from agent.core.errors import ConfigError, StateError
from agent.core.materials import get_material
from agent.testing.webhook import Receiver
from oracles.base import design_digest
from tests.agent.campaign.helpers import TINY_MODELS

SPACE = get_material("mos2").space


def _config(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 4,
        "targets": [{"value": 1.0, "window": 0.1, "hits": 50}],
        "initial": {"random": 5},
        "loop": {"batch_size": 5, "samples_per_target": 100},
        "models": TINY_MODELS,
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.02},
        "approval": {"required": True},
    } | extra


def _wait(path: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_innloop_approve_drops_a_design_before_anything_is_sent(tmp_path: Path) -> None:
    config = config_from_dict(_config("approved", budget={"iterations": 1}))
    state = tmp_path / "state"
    out: dict[str, CampaignRun] = {}
    runner = threading.Thread(target=lambda: out.setdefault("run", run_campaign(config, state)), daemon=True)
    runner.start()
    folder = state / "approved" / "iterations" / "0000"
    _wait(folder / REQUEST)
    asked = read_request(folder)
    assert asked is not None and len(asked.rows) == 5 and not (state / "approved" / "ledger.jsonl").exists()
    assert campaign_status(state, "approved")["approval"]["designs"] == 5, "status shows the waiting batch"
    assert main(["status", "approved", "--state", str(state)]) == 0
    assert main(["approve", "approved", "--drop", "9", "--state", str(state)]) == 2, "no design #9"
    assert main(["approve", "approved", "--drop", "2", "--reason", "too costly", "--state", str(state)]) == 0
    runner.join(60)
    run = out["run"]
    sent = {design_digest(r.result.handle.design) for r in run.store.ledger.records()}
    dropped = asked.rows[1]
    assert len(sent) == 4 and design_digest({c: dropped[c] for c in asked.columns}) not in sent
    decision = read_decision(folder)
    assert decision is not None and decision.drop == (2,) and decision.by == "innloop approve"
    metrics = run.state.history[0]["approval"]
    assert metrics["reason"] == "too costly" and metrics["dropped"] == [{c: dropped[c] for c in asked.columns}]
    assert main(["approve", "approved", "--state", str(state)]) == 2, "nothing waits any more"


class _Person:
    """A `Gate` that drops rows 1-3 of the first batch and approves every later one whole."""

    def __init__(self) -> None:
        self.asked: list[Proposal] = []

    def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None:
        self.asked.append(proposal)
        return Decision("approve", (1, 2, 3) if proposal.iteration == 0 else (), "", "a test")


def test_dropped_designs_are_never_proposed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table of 20 rows that the campaign works through: without the drops kept, the three
    dropped rows would be proposed again before the pool runs out. ``finished`` is told once."""
    rows = SPACE.to_frame(SPACE.from_unit(SPACE.sample_unit(np.random.default_rng(1), 20)))
    rows["gap"] = np.linspace(0.2, 1.8, 20)
    rows.to_csv(tmp_path / "table.csv", index=False, float_format="%.17g")
    monkeypatch.setenv("TEST_HOOK", "")
    with Receiver() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        raw = _config(
            "dropped",
            oracle={"name": "table", "settings": {"path": str(tmp_path / "table.csv")}},
            budget={"iterations": 4},
            notify={"url_env": "TEST_HOOK"},
        )
        person = _Person()
        run = run_campaign(config_from_dict(raw), tmp_path / "state", gate=person)
        again = run_campaign(config_from_dict(raw), tmp_path / "state", gate=person)
    assert again.reason == run.reason and run.reason.startswith("iteration budget reached")
    first = person.asked[0]
    gone = {design_digest({c: r[c] for c in first.columns}) for r in first.rows[:3]}
    later = [design_digest({c: r[c] for c in p.columns}) for p in person.asked[1:] for r in p.rows]
    assert len(later) == 15 and not gone & set(later), "a dropped design came back"
    assert len(run.state.records) == 17
    _, state = open_campaign(config_from_dict(raw), tmp_path / "state")
    assert len(measured_unit(state)) == 20, "the dropped designs count as measured"
    capsys.readouterr()
    assert main(["approve", "dropped", "--dropped", "--state", str(tmp_path / "state")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line[:3] for line in listed[:3]] == ["1. ", "2. ", "3. "] and "3 designs dropped" in listed[3]
    assert f"a = {first.rows[0]['a']:.6g}," in listed[0], (listed[0], first.rows[0])
    assert main(["approve", "dropped", "--readmit", "4", "--state", str(tmp_path / "state")]) == 2, "only 3"
    assert main(["approve", "dropped", "--readmit", "2", "--state", str(tmp_path / "state")]) == 0
    _, state = open_campaign(config_from_dict(raw), tmp_path / "state")
    assert len(measured_unit(state)) == 19, "a design let back in may be proposed again"
    assert hook.kinds() == ["approval"] * 4 + ["finished"], "each event once; the second run tells nothing"
    assert hook.events[-1]["campaign"] == "dropped" and "iteration budget" in hook.events[-1]["reason"]


def test_a_stopped_run_asks_the_same_question_and_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run interrupted while it waits; the next one asks the same batch, with the first time
    it was asked, and stops when no one answers; each event reaches the webhook once."""

    class Gone:
        def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None:
            raise KeyboardInterrupt  # the process dies while it waits

    (tmp_path / "hook-url").write_text("placeholder")
    with Receiver(fail=1) as hook:
        (tmp_path / "hook-url").write_text(hook.url + "\n")
        raw = _config("timeout", budget={"iterations": 3}, notify={"url_file": str(tmp_path / "hook-url")})
        raw["approval"] |= {"timeout_s": 1.5, "on_timeout": "stop"}
        with pytest.raises(KeyboardInterrupt):
            run_campaign(config_from_dict(raw), tmp_path / "state", gate=Gone())
        folder = tmp_path / "state" / "timeout" / "iterations" / "0000"
        first = read_request(folder)
        batch = pd.read_csv(folder / "batch.csv")
        run = run_campaign(config_from_dict(raw), tmp_path / "state")
    assert read_request(folder) == first and pd.read_csv(folder / "batch.csv").equals(batch), "the same question"
    assert run.reason == "stopped at approval of iteration 0 by timeout: no answer within 1.5 s"
    assert not (tmp_path / "state" / "timeout" / "ledger.jsonl").exists(), "nothing was sent"
    assert (folder / DECISION).exists() and run.state.history[0]["approval"]["action"] == "stop"
    assert hook.kinds() == ["approval", "stopped"], "told once each (the first try, answered 503, was retried)"
    assert "timeout" in hook.events[1]["reason"]
    assert CampaignStore(tmp_path / "state", "timeout").root.joinpath("notified.jsonl").exists()


def test_a_damaged_decision_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / DECISION).write_text('{"action": "approve", "drop": [2]}')  # no checksum: edited by hand
    with pytest.raises(StateError, match=r"approval.json.*no sha256 checksum"):
        read_decision(tmp_path)
    (tmp_path / REQUEST).write_text("{")
    with pytest.raises(StateError, match="approval request is not valid JSON"):
        read_request(tmp_path)


def test_on_timeout_approve_and_the_notify_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unanswered, ``on_timeout = "approve"`` sends the batch; ``events`` picks what is told, and
    a receiver slower than ``timeout_s`` is given up on (logged) while the campaign goes on."""
    said: list[str] = []
    with Receiver(delay_s=1.0) as slow:
        monkeypatch.setenv("TEST_HOOK", slow.url)
        raw = _config("auto", budget={"iterations": 1}, notify={"url_env": "TEST_HOOK", "events": ["finished"]})
        raw["approval"] |= {"timeout_s": 0.3, "on_timeout": "approve"}
        raw["notify"]["timeout_s"] = 0.2
        run = run_campaign(config_from_dict(raw), tmp_path / "state", log=said.append)
    assert run.state.calls == 5 and run.state.history[0]["approval"]["by"] == "timeout"
    assert slow.kinds() == ["finished"] * 3, "only the wanted event, tried three times"
    assert any("could not notify about finished" in m for m in said)
    assert not (run.store.root / "notified.jsonl").exists(), "a notification never accepted is not marked sent"
    with pytest.raises(ConfigError, match=r"notify\.url: a webhook URL is a secret") as leak:
        config_from_dict(_config("leaky", notify={"url": "https://hooks.example/T0/secret"}))
    assert "T0/secret" not in str(leak.value), "the secret is never echoed"


def test_a_batch_already_at_the_oracle_is_collected_not_asked_about(tmp_path: Path) -> None:
    """Approval switched on while a batch is at the oracle (the run before ran out of time
    mid-measure): nobody is asked about designs already paid for; they are collected, and the
    record says why."""

    class Never:
        def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None:
            raise AssertionError("asked about a batch that is already at the oracle")

    raw = _config("late", budget={"iterations": 1, "wall_time_s": 0.5}, approval={"required": False})
    raw["oracle"] = {"name": "mock", "settings": {"latency_s": 1.5}}
    first = run_campaign(config_from_dict(raw), tmp_path / "state")
    assert first.reason.startswith("wall-time budget reached") and first.state.calls == 0
    raw |= {"budget": {"iterations": 1}, "approval": {"required": True}}
    run = run_campaign(config_from_dict(raw), tmp_path / "state", gate=Never())
    assert run.state.calls == 5, "the batch at the oracle was collected"
    said = run.state.history[0]["approval"]
    assert said["action"] == "approve" and "before approval was required" in said["reason"]


def test_a_design_let_back_in_and_dropped_again_stays_dropped() -> None:
    from agent.campaign.approval import dropped_designs

    d = dict(BASE_DESIGN)
    history = [{"iteration": 0, "approval": {"decided_at": 10.0, "dropped": [d]}}]
    let_in = {design_digest(d): 20.0}
    assert dropped_designs(history) == [d] and dropped_designs(history, let_in) == []
    history.append({"iteration": 3, "approval": {"decided_at": 30.0, "dropped": [d]}})
    assert dropped_designs(history, let_in) == [d], "dropped again after it was let back in"


BASE_DESIGN = {"a": 3.16, "b": 3.16, "c": 12.3, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}
