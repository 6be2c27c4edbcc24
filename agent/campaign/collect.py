"""A campaign's batch through the job driver: `collect` is `agent.campaign.driver.drive` on
the campaign's folder (``ledger.jsonl`` and ``inflight.json`` of its `CampaignStore`).

Every rule (write order, backoff, outage, time limits, adopt and idempotent recovery, a
job id recorded once) lives in `agent.campaign.driver`; this module only says where the
campaign keeps its jobs and which command re-attaches to them (the next ``innloop run``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.campaign.config import RetrySpec
from agent.campaign.driver import Log, Progress, drive
from agent.campaign.journal import Job
from agent.campaign.ledger import LedgerRecord
from agent.campaign.store import CampaignStore
from oracles.base import Oracle

__all__ = ["Job", "collect"]


def collect(
    oracle: Oracle,
    store: CampaignStore,
    jobs: list[Job],
    iteration: int,
    retry: RetrySpec,
    *,
    deadline: float | None = None,
    since: float | None = None,
    max_in_flight: int | None = None,
    enough: int | None = None,
    progress: Progress = lambda _done, _out, _failed: None,
    log: Log = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[LedgerRecord], list[Job]]:
    """Drive ``jobs`` to terminal results; return ``(new ledger records, jobs still in flight)``.

    Jobs with a ``handle`` are re-attached, the others submitted. Stops early (jobs left
    in ``inflight.json`` for the next run) when ``deadline`` (``time.time()``) passes.
    ``since``: when the last run began submitting the handle-less jobs (from its
    ``inflight.json``); ``None`` for a fresh batch. Raises `OracleUnavailable` once every
    call to the oracle has failed for ``retry.outage_s``, and `OracleRefused` (jobs kept)
    at once. ``max_in_flight`` and ``enough``: as `drive`'s. ``progress`` hears the counts
    after every submit and every poll round that recorded results.
    """
    return drive(
        oracle,
        store,
        jobs,
        retry,
        iteration=iteration,
        deadline=deadline,
        since=since,
        max_in_flight=max_in_flight,
        enough=enough,
        where=str(store.root / "inflight.json"),
        again="the next `innloop run`",
        progress=progress,
        log=log,
        sleep=sleep,
    )
