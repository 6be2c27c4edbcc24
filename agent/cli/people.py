"""``innloop tell`` and ``innloop approve``: the commands a person answers a campaign with.

Both work on the campaign's folder only, from any shell, while the campaign runs or not:
what they write is checked in full first (one line per problem, nothing written) and then
written atomically where the running loop (or the next ``innloop run``) picks it up.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.core.paths import resolve_state_dir

__all__ = ["add_people_commands"]


def _tell(args: argparse.Namespace) -> int:
    # the campaign's stack loads when a file is told, not at start-up (see `agent.cli.main`)
    from agent.campaign.config import config_from_dict
    from agent.campaign.runner import make_campaign_oracle
    from agent.campaign.store import CampaignStore
    from agent.campaign.tell import tell_campaign
    from agent.core.errors import StateError
    from oracles import oracle_class
    from oracles.base import TakesAnswers

    store = CampaignStore(resolve_state_dir(args.state), args.campaign)
    if not store.exists():
        raise StateError(f"no campaign {args.campaign!r} under {store.root.parent} (no {store.root / 'config.json'})")
    raw, _ = store.load_config()
    config = config_from_dict(raw, source=str(store.root / "config.json"))
    # only an oracle that takes a person's answers is built: others may need a cluster or a token
    oracle = make_campaign_oracle(config, store) if issubclass(oracle_class(config.oracle.name), TakesAnswers) else None
    told, recorded = tell_campaign(store, config, Path(args.results), oracle)
    for line in told.skipped:
        print(f"skipped {line}")
    later = len(told.external) - len(recorded)
    print(
        f"{args.campaign}: {len(told.answers)} answers to jobs waiting for a person, "
        f"{len(recorded)} external measurements recorded"
        + (f", {later} recorded by the running campaign at its next iteration" if later else "")
        + (f", {len(told.skipped)} rows skipped" if told.skipped else "")
    )
    return 0


def add_people_commands(sub: Any) -> None:
    """Add ``tell`` (and ``approve``) to the ``innloop`` sub-commands."""
    t = sub.add_parser(
        "tell",
        help="give a campaign measured values: answers to a manual oracle's jobs, or results from outside",
        description="Each row of RESULTS (CSV: the design columns, the measured value(s), and optionally "
        "job_id, status = completed|failed, reason, by, measured_at, note) answers a job waiting for a person, "
        "or adds an external measurement (counted for models and hits, never as an oracle call). Every row is "
        "checked first; one bad row and nothing is written.",
    )
    t.add_argument("campaign", help="campaign name")
    t.add_argument("results", help="CSV of measured values")
    t.add_argument("--state", help="state folder (default $INNLOOP_STATE_DIR or ./state)")
    t.set_defaults(func=_tell)
