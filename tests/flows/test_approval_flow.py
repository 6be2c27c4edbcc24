"""Approving a batch in the Prefect UI (`flows.approval`), against a real `prefect server start`.

The campaign flow runs in a process of its own. It pauses for approval; the test kills it
during the pause (SIGKILL) and starts it again: the new flow run pauses on the same batch,
asked at the same time, and the killed run, still Paused on the server, is cancelled with a
pointer to the new one. Headless Chromium opens the new run's page, clicks Resume and finds
the form with its fields (a screenshot is kept). The test then answers the way the UI's
Submit does (Prefect's client API, ``resume_flow_run`` with the form's input), dropping one
design. The run goes on: the dropped design is never sent, and the decision is in the
campaign's state, its metrics and its report; the webhook heard "approval" and "finished"
once each, the first with a link to the run. A second campaign is answered from a shell
(`innloop approve`), which resumes its paused run through the same API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from agent.campaign.approval import REQUEST, read_decision, read_request
from agent.campaign.store import CampaignStore
from agent.testing.webhook import Receiver
from oracles.base import design_digest
from tests.chromium import FLAGS, chromium
from tests.flows.servers import stop_group

CONFIG = """
name = "gated"
seed = 4
[[targets]]
value = 1.0
window = 0.1
hits = 50
[initial]
random = 5
[loop]
batch_size = 5
samples_per_target = 100
[budget]
iterations = 1
[models]
members = 3
surrogate_epochs = 30
generator_epochs = 8
[ray]
enabled = false
[retry]
poll_interval_s = 0.02
[approval]
required = true
timeout_s = 600
[notify]
url_env = "GATED_HOOK"
"""


def _start(config: Path, state: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    code = (
        "from flows.campaign import campaign_flow; "
        f"campaign_flow(config={str(config)!r}, state_dir={str(state)!r}, use_ray=False, approval_poll_s=1)"
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _paused(folder: Path, proc: subprocess.Popen[bytes], log: Path, client: Any, not_run: UUID | None = None) -> UUID:
    """The id of the flow run that asks for approval in ``folder``, once it is Paused."""
    end = time.monotonic() + 180
    while time.monotonic() < end:
        assert proc.poll() is None, f"the flow exited:\n{log.read_text()[-3000:]}"
        asked = read_request(folder) if (folder / REQUEST).exists() else None
        if asked is not None and asked.link is not None:
            run = UUID(asked.link.rsplit("/", 1)[-1])
            state = client.read_flow_run(run).state
            if run != not_run and state is not None and state.is_paused():
                return run
        time.sleep(0.5)
    raise AssertionError(f"no paused run asked for approval:\n{log.read_text()[-3000:]}")


def _form(link: str, shot: Path) -> str:
    """The Resume dialog's text on the run's page, as headless Chromium shows it (screenshot in ``shot``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(), args=[f for f in FLAGS if not f.startswith("--headless")]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(link, timeout=60_000)
            page.get_by_role("button", name="Resume").click(timeout=60_000)
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("button", name="Submit").wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # the dialog fades in
            page.screenshot(path=str(shot))
            return dialog.inner_text()
        finally:
            browser.close()


@pytest.mark.slow
def test_approval_in_the_prefect_ui_survives_a_kill(prefect_server: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = tmp_path / "gated.toml"
    config.write_text(CONFIG)
    state, log = tmp_path / "state", tmp_path / "flow.log"
    folder = state / "gated" / "iterations" / "0000"
    api = prefect_server["PREFECT_API_URL"]
    with Receiver() as hook, temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        env = prefect_server | {"GATED_HOOK": hook.url, "INNLOOP_TORCH_THREADS": "1"}
        proc = _start(config, state, env, log)
        try:
            first = _paused(folder, proc, log, client)
            asked = read_request(folder)
            os.killpg(proc.pid, signal.SIGKILL)  # killed while it waits for a person
            proc.wait(30)
            proc = _start(config, state, env, log)
            second = _paused(folder, proc, log, client, not_run=first)
            again = read_request(folder)
            assert asked is not None and again is not None
            assert (again.asked_at, again.rows) == (asked.asked_at, asked.rows), "the same question, asked again"
            old = client.read_flow_run(first).state
            assert old is not None and old.is_cancelled() and str(second) in (old.message or "")
            assert not (state / "gated" / "ledger.jsonl").exists(), "nothing was sent while it waited"

            text = _form(again.link or "", tmp_path / "paused-run.png")
            for field in ("approve iteration 0", "Action", "Drop", "Reason", "Submit", "why chosen"):
                assert field in text, (field, text[:2000])
            assert (tmp_path / "paused-run.png").stat().st_size > 50_000

            resume_flow_run(second, run_input={"action": "approve", "drop": [2], "reason": "too costly"})
            assert proc.wait(180) == 0, log.read_text()[-3000:]
        finally:
            stop_group(proc)
        final = client.read_flow_run(second).state
        assert final is not None and final.is_completed()
        arts = {a.key: str(a.data) for a in client.read_latest_artifacts()}
    store = CampaignStore(state, "gated")
    sent = {design_digest(r.result.handle.design) for r in store.ledger.records()}
    gone = {c: asked.rows[1][c] for c in asked.columns}
    assert len(sent) == 4 and design_digest(gone) not in sent, "the dropped design was never sent"
    decision = read_decision(folder)
    assert decision is not None and (decision.drop, decision.by) == ((2,), "the Prefect UI")
    metrics = json.loads((folder / "metrics.json").read_text())["approval"]
    assert metrics["reason"] == "too costly" and metrics["dropped"] == [gone]
    people = (state / "gated" / "report" / "campaign_people.csv").read_text()
    assert "the Prefect UI" in people and "too costly" in people, people
    assert "approve iteration 0" in arts["gated-approval"] and "data:image/png;base64," in arts["gated-approval"]
    assert hook.kinds() == ["approval", "finished"], hook.events
    assert hook.events[0]["link"].endswith(str(first)) and hook.events[0]["campaign"] == "gated"


@pytest.mark.slow
def test_innloop_approve_answers_the_paused_flow_run(prefect_server: dict[str, str], tmp_path: Path) -> None:
    """`innloop approve` on a campaign that a flow runs: the decision is written, and the paused
    run is resumed through Prefect's API with it, so the flow goes on at once; the command
    prints its one line, none of Prefect's."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = tmp_path / "gated.toml"
    config.write_text(CONFIG.replace('[notify]\nurl_env = "GATED_HOOK"\n', ""))
    state, log = tmp_path / "state", tmp_path / "flow.log"
    folder = state / "gated" / "iterations" / "0000"
    env = prefect_server | {"INNLOOP_TORCH_THREADS": "1"}
    cli = [sys.executable, "-m", "agent.cli.main", "approve", "gated", "--state", str(state)]
    api = prefect_server["PREFECT_API_URL"]
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        proc = _start(config, state, env, log)
        try:
            run = _paused(folder, proc, log, client)
            cmd = [*cli, "--drop", "1", "--reason", "from a shell"]
            said = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            assert said.returncode == 0, said.stderr[-2000:]
            assert said.stdout.strip() == "gated: iteration 0 approved 4 of 5 designs (from a shell)", said.stdout
            assert "prefect" not in said.stderr.lower(), said.stderr[-2000:]
            assert proc.wait(180) == 0, log.read_text()[-3000:]
        finally:
            stop_group(proc)
        final = client.read_flow_run(run).state
        assert final is not None and final.is_completed()
    decision = read_decision(folder)
    assert decision is not None and (decision.drop, decision.by) == ((1,), "innloop approve")
    assert decision.reason == "from a shell" and len(CampaignStore(state, "gated").ledger.records()) == 4
