"""The approval gate as Prefect's own pause: the batch as an artifact, the answer as a form.

With ``[approval] required = true`` a campaign run as a flow (`flows.campaign`) asks through
`PrefectGate`: it publishes the batch (``<campaign>-approval``: a markdown table in physical
units with each forecast ± σ and why it was chosen, and a plot of the forecasts against
the values measured so far), then pauses the flow run with ``pause_flow_run(wait_for_input=
ApprovalInput)``. The Prefect UI shows the run as Paused with a Resume form: approve or
stop, the rows to drop, a reason. The loop (`agent.campaign.approval.ask`) writes the answer
to the campaign's state before anything is submitted.

``innloop approve`` answers the same question from a shell; for a campaign a flow runs it
also resumes the paused run with the same input (`resume_with`), so the flow goes on at
once instead of waiting out its pause.
"""

from __future__ import annotations

import base64
import io
import re
import time
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import numpy as np
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from pydantic import Field

from agent.campaign.approval import Decision, Proposal, decide
from agent.campaign.store import CampaignStore
from agent.core.errors import StateError

__all__ = ["ApprovalInput", "PrefectGate", "approval_markdown", "resume_with"]

BY_UI = "the Prefect UI"


class ApprovalInput(RunInput):
    """The Resume form of a paused campaign (its fields are what the UI shows)."""

    action: Literal["approve", "stop"] = Field(
        "approve", description="approve: measure the batch (less the dropped designs); stop: end the campaign"
    )
    drop: list[int] = Field(default_factory=list, description="numbers (#) of the designs not to measure")
    reason: str = Field("", description="why, in a few words (kept in the campaign's state and report)")


@dataclass
class PrefectGate:
    """Asks through the Prefect UI (`agent.campaign.approval.Gate`). ``store``: the campaign's
    folder, for the values measured so far in the plot; ``poll_s``: how often the paused run
    looks for its answer."""

    store: CampaignStore
    key: str
    poll_s: int = 10

    def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None:
        logger = get_run_logger()
        moved = earlier is not None and earlier.link is not None and earlier.link != proposal.link
        if moved and earlier is not None and (given := _answered_in(earlier, proposal)) is not None:
            logger.info(f"iteration {proposal.iteration} was answered in {earlier.link} while no run waited")
            return given
        text = approval_markdown(proposal, self.store)
        create_markdown_artifact(text, key=self.key, description=f"{proposal.campaign}: batch waiting for approval")
        problem, tries = "", 0
        while (left := deadline - time.time()) > 0:
            tries += 1
            form = ApprovalInput.with_initial_data(description=problem + text, action="approve")
            try:
                got = pause_flow_run(
                    wait_for_input=form,
                    timeout=max(1, int(left)),
                    poll_interval=max(1, min(self.poll_s, int(left))),
                    key=f"approval-{proposal.iteration}-{tries}",
                )
            except FlowPauseTimeout:
                return None
            try:
                return decide(proposal, got.action, got.drop, got.reason, BY_UI)
            except StateError as exc:  # a row that is not in the batch: ask again, saying why
                logger.error(f"approval not taken: {exc}")
                problem = f"**Not taken: {exc}. Please answer again.**\n\n"
        return None


def _answered_in(earlier: Proposal, proposal: Proposal) -> Decision | None:
    """The answer given in the paused run that asked ``earlier`` (a run killed while it waited),
    if someone gave one; that run, still Paused or resumed with no process behind it, is then
    cancelled, its message pointing to where the question is now."""
    from prefect.client.orchestration import get_client  # the API, only when a run was stopped
    from prefect.states import Cancelled

    old = _run_id(earlier.link or "")
    if old is None:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(old)
        except Exception:  # another server, or a run deleted: nothing to take from it
            return None
        found = None
        inputs = client.filter_flow_run_input(old, key_prefix="paused-approval-", limit=50, exclude_keys=set())
        for given in sorted(inputs, key=lambda i: i.created or 0):
            if given.key.endswith("-response"):
                found = ApprovalInput.model_validate_json(given.value)
        if run.state is not None and (run.state.is_paused() or run.state.is_running()):
            why = f"this campaign was restarted; iteration {proposal.iteration} is asked in {proposal.link}"
            client.set_flow_run_state(old, Cancelled(message=why), force=True)
    if found is None:
        return None
    try:
        return decide(proposal, found.action, found.drop, found.reason, BY_UI)
    except StateError:
        return None  # an answer that does not fit the batch: ask again


def _run_id(link: str) -> UUID | None:
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", link)
    return None if found is None else UUID(found.group(0))


def approval_markdown(proposal: Proposal, store: CampaignStore) -> str:
    """The artifact: what is asked, the batch as a table, and the plot against what is known."""
    lines = [
        f"# {proposal.campaign}: approve iteration {proposal.iteration}?",
        "",
        f"{len(proposal.rows)} designs are chosen and nothing is sent yet. Approve them (drop any by its #), "
        "or stop the campaign, in this run's Resume form or from a shell:",
        "",
        f"`innloop approve {proposal.campaign} [--drop N ...] [--stop] [--reason TEXT]`",
        "",
        proposal.markdown(),
    ]
    png = _plot(proposal, store)
    if png:
        lines += ["", f"![forecasts against measured values](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


def _plot(proposal: Proposal, store: CampaignStore) -> bytes:
    """Each design's forecast ± σ beside every value measured so far, with the targets."""
    import matplotlib  # matplotlib (a second) only when a batch is shown

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    known = [r.result.values[proposal.value] for r in store.ledger.records() if r.result.ok and r.result.values]
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(7, 3.4), dpi=100, width_ratios=(1, 3))
    left.hist(known, bins=30, orientation="horizontal", color="grey")
    left.set_xlabel("measured so far")
    left.set_ylabel(proposal.value)
    n = range(1, len(proposal.rows) + 1)
    right.errorbar(n, [r["pred"] for r in proposal.rows], yerr=[r["std"] for r in proposal.rows], fmt="o", capsize=3)
    for t in {r["target"] for r in proposal.rows if isinstance(r["target"], float | int)}:
        right.axhline(float(t), ls=":", color="tab:red", lw=0.8)
    if not known and not any(np.isfinite(r["pred"]) for r in proposal.rows):
        right.text(
            0.5, 0.5, "nothing measured yet:\nrandom designs, no forecasts", ha="center", transform=right.transAxes
        )
    right.set_xticks(list(n))
    right.set_xlabel("design # (forecast ± σ)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def resume_with(link: str, decision: Decision) -> bool:
    """Resume the paused flow run named by ``link`` (its page) with ``decision`` as its form's
    input; ``False`` when it is not paused any more (its answer came from elsewhere)."""
    from prefect.exceptions import NotPausedError  # the one refusal that is no error here

    run = _run_id(link)
    if run is None:
        return False
    answer = {"action": decision.action, "drop": list(decision.drop), "reason": decision.reason}
    try:
        resume_flow_run(run, run_input=answer)
    except NotPausedError:
        return False
    return True
