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


def _approve(args: argparse.Namespace) -> int:
    # the campaign's stack loads when a batch is approved, not at start-up (see `agent.cli.main`)
    from agent.campaign.approval import as_text, decide, read_decision, read_request, write_decision
    from agent.campaign.store import CampaignStore
    from agent.core.errors import StateError

    store = CampaignStore(resolve_state_dir(args.state), args.campaign)
    if not store.exists():
        raise StateError(f"no campaign {args.campaign!r} under {store.root.parent} (no {store.root / 'config.json'})")
    if args.dropped or args.readmit:
        return _dropped(store, args.readmit or [])
    folder = store.root / "iterations" / f"{store.last_completed() + 1:04d}"
    asked = read_request(folder)
    if asked is None:
        raise StateError(f"{args.campaign}: no batch waits for approval (none asked in {folder})")
    if (done := read_decision(folder)) is not None:
        raise StateError(
            f"{args.campaign}: iteration {asked.iteration} was decided already ({done.action} by {done.by}); "
            "a decision is final"
        )
    if args.show:
        print(as_text(asked))
        return 0
    decision = decide(asked, "stop" if args.stop else "approve", args.drop or (), args.reason or "", "innloop approve")
    if (held := write_decision(folder, decision)) != decision:
        raise StateError(
            f"{args.campaign}: iteration {asked.iteration} was decided a moment ago ({held.action} by {held.by})"
        )
    if asked.link is not None:  # a Prefect flow waits on its own form: answer it too, so it goes on now
        from agent.cli.run import quiet_frameworks  # the run command's Prefect settings, only when resuming
        from flows.approval import resume_with  # Prefect: only for a campaign that a flow runs

        quiet_frameworks(verbose=False)  # a temporary server's start-up lines are not the answer

        try:
            resume_with(asked.link, decision)
        except Exception as exc:  # the decision holds; only the paused run's wake-up failed
            print(
                f"{args.campaign}: the decision is recorded, but the paused Prefect run could not be resumed "
                f"({type(exc).__name__}); resume it in the Prefect UI: this decision holds whatever is answered there"
            )
    kept = len(asked.rows) - len(decision.drop)
    said = "stopped" if decision.action == "stop" else f"approved {kept} of {len(asked.rows)} designs"
    print(f"{args.campaign}: iteration {asked.iteration} {said}" + (f" ({decision.reason})" if decision.reason else ""))
    return 0


def _dropped(store: Any, readmit: list[int]) -> int:
    """List the designs dropped at approval (numbered), or let those numbered ``readmit`` back in."""
    from agent.campaign.approval import dropped_designs, read_readmitted  # see `_approve`
    from agent.campaign.approval import readmit as let_in
    from agent.core.errors import StateError

    history = [store.verify_iteration(i) for i in range(store.last_completed() + 1)]
    dropped = dropped_designs(history, read_readmitted(store.root))
    if not readmit:
        for i, d in enumerate(dropped, start=1):
            print(f"{i}. " + ", ".join(f"{k} = {v:.6g}" for k, v in d.items()))  # the --show table's digits
        print(f"{store.name}: {len(dropped)} designs dropped at approval and never proposed again")
        return 0
    bad = [n for n in readmit if not 1 <= n <= len(dropped)]
    if bad:
        raise StateError(f"{store.name}: no dropped design {bad} ({len(dropped)} are dropped; see --dropped)")
    let_in(store.root, [dropped[n - 1] for n in readmit])
    print(f"{store.name}: {len(readmit)} dropped designs may be proposed again (from its next iteration)")
    return 0


def add_people_commands(sub: Any) -> None:
    """Add ``tell`` and ``approve`` to the ``innloop`` sub-commands."""
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

    a = sub.add_parser(
        "approve",
        help="approve (or stop) the batch a campaign waits to send, from any shell",
        description="With [approval] required = true a campaign waits before each batch. This approves it "
        "(without the designs given to --drop, numbered as --show prints them) or, with --stop, ends the campaign.",
    )
    a.add_argument("campaign", help="campaign name")
    a.add_argument("--drop", type=int, nargs="+", metavar="N", help="designs (numbered from 1) not to measure")
    a.add_argument("--stop", action="store_true", help="send nothing and end the campaign")
    a.add_argument("--reason", help="why, in a few words (kept in the state and the report)")
    a.add_argument("--show", action="store_true", help="print the waiting batch and decide nothing")
    a.add_argument("--dropped", action="store_true", help="list the designs dropped so far, numbered")
    a.add_argument(
        "--readmit",
        type=int,
        nargs="+",
        metavar="N",
        help="let dropped designs (numbered as --dropped) be proposed again",
    )
    a.add_argument("--state", help="state folder (default $INNLOOP_STATE_DIR or ./state)")
    a.set_defaults(func=_approve)
