"""The report at the end of a campaign flow: published as Prefect artifacts; a failure never fails the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CONFIG = """
name = "report-flow"
seed = 1
[[targets]]
value = 1.0
hits = 30
[oracle]
name = "table"
[initial]
random = 16
[loop]
batch_size = 5
[budget]
iterations = 2
[models]
members = 3
surrogate_epochs = 40
surrogate_warm_epochs = 10
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
"""


def _artifacts(flow_run_id: Any) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(), flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {str(a.key): str(a.data) for a in arts if a.key}


@pytest.mark.slow
def test_campaign_flow_publishes_the_report(prefect_api: None, tmp_path: Path) -> None:
    from flows.campaign import campaign_flow

    config = tmp_path / "flow.toml"
    config.write_text(CONFIG)
    final = campaign_flow(config=str(config), state_dir=str(tmp_path / "state"), use_ray=False, return_state=True)
    assert final.is_completed(), final
    html = tmp_path / "state" / "report-flow" / "report" / "report.html"
    assert html.exists()
    arts = _artifacts(final.state_details.flow_run_id)
    assert {"report-flow-report", "report-flow-report-html", "report-flow-hits"} <= set(arts)
    assert "Switching 0 → 1 eV" in arts["report-flow-report"]
    assert "data:image/png;base64," in arts["report-flow-report"]
    assert html.resolve().as_uri() in arts["report-flow-report-html"]


@pytest.mark.slow
def test_a_failing_report_does_not_fail_the_campaign(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.report
    from flows.campaign import campaign_flow

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("report exploded")

    monkeypatch.setattr(agent.report, "build_report", broken)
    config = tmp_path / "flow.toml"
    config.write_text(CONFIG.replace("report-flow", "report-broken"))
    final = campaign_flow(config=str(config), state_dir=str(tmp_path / "state"), use_ray=False, return_state=True)
    assert final.is_completed(), final
    out = final.result()
    assert out["iterations"] == 2 and out["oracle_calls"] == 21
    assert "report-broken-report" not in _artifacts(final.state_details.flow_run_id)
