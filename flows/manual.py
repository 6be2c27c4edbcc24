"""A person as the oracle, in Prefect: the sheet to measure as an artifact, answers through a form.

For a campaign whose oracle is `manual` (`oracles.manual`), the campaign flow builds the
oracle as `published` makes it: every time ``to_measure.csv`` changes (a batch sent, an
answer in), the open jobs are also published as a table artifact (``<campaign>-to-measure``).
Answers come back by ``innloop tell`` or by `tell_flow`, a flow whose parameters are the
answers (job id, value, or failed with a reason, and who measured): ``innloop serve``
deploys it beside the campaign flow, so the Prefect UI's Run form is where a person types
them in. Both go through `agent.campaign.tell.tell_campaign`: the same checks, one line per
bad row, nothing written when one is bad.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from agent.campaign.config import config_from_dict
from agent.campaign.runner import make_campaign_oracle
from agent.campaign.store import CampaignStore
from agent.campaign.tell import tell_campaign
from agent.core.errors import DataError, StateError
from agent.core.paths import default_state_dir
from oracles.base import TakesAnswers
from oracles.manual import ManualOracle

__all__ = ["Answered", "published", "tell_flow"]


def published(key: str) -> type[ManualOracle]:
    """The manual oracle, also publishing its open jobs as the table artifact ``key``."""

    class Published(ManualOracle):
        def write_sheet(self) -> Path:
            path = super().write_sheet()
            rows = [
                {str(k): v for k, v in r.items()} for r in pd.read_csv(path, keep_default_na=False).to_dict("records")
            ]
            try:
                create_table_artifact(rows, key=key, description=f"{len(rows)} designs to measure: {path}")
            except Exception as exc:  # outside a run (innloop tell), or the API is away: the CSV stands
                logging.getLogger(__name__).debug(f"the sheet was not published: {exc}")
            return path

    return Published


class Answered(BaseModel):
    """One job's answer, as the tell flow's form asks for it."""

    job_id: str = Field(description="the job's id (first column of to_measure.csv)")
    value: float | None = Field(None, description="the measured value; empty when the job failed")
    status: Literal["completed", "failed"] = Field("completed", description="failed: it could not be measured")
    reason: str = Field("", description="why it failed (needed for a failed job)")
    by: str = Field("", description="who measured it")


@flow(name="innloop-tell", log_prints=True, persist_result=False)
def tell_flow(campaign: str, answers: list[Answered], state_dir: str | None = None) -> dict[str, Any]:
    """Answer jobs of ``campaign``'s manual oracle; the answers are kept as a CSV in its folder."""
    store = CampaignStore(state_dir or default_state_dir(), campaign)
    if not store.exists():
        raise StateError(f"no campaign {campaign!r} under {store.root.parent}")
    config = config_from_dict(store.load_config()[0], source=str(store.root / "config.json"))
    oracle = make_campaign_oracle(config, store)
    if not isinstance(oracle, TakesAnswers):
        raise StateError(f"campaign {campaign!r} measures with {config.oracle.name!r}, which takes no answers")
    target = config.design_material().target
    open_jobs = {h.job_id: h for h in oracle.open_jobs()}
    unknown = [a.job_id for a in answers if a.job_id not in open_jobs]
    if unknown:
        raise DataError(f"{campaign}: no job waits for an answer under {unknown}; nothing was recorded")
    rows = [
        open_jobs[a.job_id].design
        | {"job_id": a.job_id, target: "" if a.value is None else a.value, "status": a.status}
        | {"reason": a.reason, "by": a.by}
        for a in answers
    ]
    folder = store.root / "told"
    folder.mkdir(exist_ok=True)
    path = folder / f"form-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.csv"
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.17g")
    told, recorded = tell_campaign(store, config, path, oracle)
    print(f"{campaign}: {len(told.answers)} answers taken from the form (kept in {path})")
    return {"campaign": campaign, "answers": len(told.answers), "recorded": len(recorded), "file": str(path)}
