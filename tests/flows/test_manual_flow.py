"""A person as the oracle in Prefect (`flows.manual`): the campaign flow publishes what to measure
as a table artifact and waits; the answers arrive through `tell_flow` (the form a person fills
in the Prefect UI), partly and then in full, one of them a failure with its reason."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.campaign.store import CampaignStore
from oracles.manual import ManualOracle

CONFIG = """
name = "by-form"
seed = 2
[[targets]]
value = 1.0
window = 0.1
hits = 50
[oracle]
name = "manual"
[initial]
random = 3
[budget]
iterations = 1
[ray]
enabled = false
[retry]
poll_interval_s = 0.05
"""


def _open_jobs(oracle: ManualOracle, n: int) -> list[Any]:
    end = time.monotonic() + 60
    while len(jobs := oracle.open_jobs()) != n:
        assert time.monotonic() < end, f"never {n} open jobs"
        time.sleep(0.05)
    return jobs


@pytest.mark.slow
def test_answers_through_the_tell_flow_finish_the_iteration(prefect_api: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.campaign import artifact_key, campaign_flow
    from flows.manual import Answered, tell_flow

    config = tmp_path / "by-form.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    out: dict[str, Any] = {}
    run = threading.Thread(
        target=lambda: out.setdefault("run", campaign_flow(str(config), str(state), use_ray=False, report=False)),
        daemon=True,
    )
    run.start()
    oracle = ManualOracle(workdir=state / "by-form" / "oracle")
    jobs = _open_jobs(oracle, 3)
    key = artifact_key("by-form", "to-measure")
    with get_client(sync_client=True) as client:
        end = time.monotonic() + 30
        while not (arts := [a for a in client.read_artifacts() if a.key == key]):  # written a moment later
            assert time.monotonic() < end, "the sheet was never published"
            time.sleep(0.2)
        data = max(arts, key=lambda a: a.created or 0).data
        rows = json.loads(data) if isinstance(data, str) else data
        assert {r["job_id"] for r in rows} == {h.job_id for h in jobs}, "the sheet is published as a table"
    first = tell_flow("by-form", [Answered(job_id=jobs[0].job_id, value=1.05, by="ada")], str(state))
    assert first["answers"] == 1 and Path(first["file"]).exists()
    _open_jobs(oracle, 2)
    rest = [
        Answered(job_id=jobs[1].job_id, value=0.4, by="ada"),
        Answered(job_id=jobs[2].job_id, status="failed", reason="cracked", by="ada"),
    ]
    tell_flow("by-form", rest, str(state))
    run.join(120)
    result = out["run"]
    assert result["reason"].startswith("iteration budget reached") and result["oracle_calls"] == 3
    records = CampaignStore(state, "by-form").ledger.records()
    assert sorted(r.result.status.value for r in records) == ["completed", "completed", "failed"]
    assert {r.result.message for r in records if not r.result.ok} == {"cracked"}
    with pytest.raises(Exception, match="no job waits"):
        tell_flow("by-form", [Answered(job_id="manual-unknown", value=1.0)], str(state))
