"""Run a campaign in this process and SIGKILL it at a chosen point.

``python -m agent.testing.crash CONFIG STATE_DIR POINT`` runs
``innloop run CONFIG --state STATE_DIR --no-prefect -q`` in this process -- the CLI's own
path: the configured oracle, Ray sampler actors when ``[ray] enabled`` -- with hooks that
kill the process (SIGKILL: no handler, no ``finally``, no flush) when the run reaches
POINT. It prints ``finished`` when the campaign ended without reaching it.

POINT is ``none`` or ``KIND:WHAT:ITERATION[:K]`` (``K`` defaults to 1):

=================================  ===============================================================
``before:STAGE:I``                 before stage STAGE of iteration I (``retrain`` … ``checkpoint``;
                                   ``approve`` only with ``[approval] required``)
``after:STAGE:I``                  right after it returned
``during:STAGE:I``                 ``$DELAY`` seconds (default 0.05) into it (a timer thread)
``submit:-:I``                     the oracle accepted the batch, its handles are not saved yet
``pending:-:I:K``                  after the K-th poll that saw a job still pending or running
``append:-:I:K``                   right after the K-th ledger append (results arriving)
``rename:FILE:I:K``                K-th atomic write of FILE: its temporary sibling is on disk,
                                   the rename did not happen (FILE: ``inflight``, ``manifest``,
                                   ``campaign``, ``metrics``, ``batch``)
``ray:-:I:K``                      at the K-th ``ray.get`` of the sample stage (1: the actors load
                                   the weights, 2: the actors are sampling)
``reply:-:I:K``                    http: the lab server created the K-th job, its reply is unread
=================================  ===============================================================

The iteration is the one the run is working on (the last committed one plus one).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.campaign import ledger
from agent.campaign import runner as campaign
from agent.campaign.config import load_config
from agent.campaign.store import CampaignStore
from agent.cli import main as cli
from agent.core import atomic

__all__ = ["KINDS", "STAGES", "Point", "main", "parse_point"]

STAGES = ("retrain", "sample", "refine", "choose", "approve", "measure", "update", "checkpoint")
KINDS = ("before", "after", "during", "submit", "pending", "append", "rename", "ray", "reply")
FILES = {"inflight": "inflight.json", "manifest": "manifest.json", "campaign": "campaign.json"} | {
    "metrics": "metrics.json",
    "batch": "batch.csv",
}


@dataclass(frozen=True)
class Point:
    """A parsed kill point; ``kind == "none"`` never kills."""

    kind: str
    what: str = "-"
    iteration: int = -1
    k: int = 1

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.what}:{self.iteration}:{self.k}"


def parse_point(text: str) -> Point:
    """``none`` or ``KIND:WHAT:ITERATION[:K]``; raises ``ValueError`` naming what is wrong."""
    if text == "none":
        return Point("none")
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"kill point {text!r}: expected KIND:WHAT:ITERATION[:K]")
    kind, what, it = parts[:3]
    k = int(parts[3]) if len(parts) == 4 else 1
    if kind not in KINDS:
        raise ValueError(f"kill point {text!r}: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if kind in ("before", "after", "during") and what not in STAGES:
        raise ValueError(f"kill point {text!r}: unknown stage {what!r}; one of {', '.join(STAGES)}")
    if kind == "rename" and what not in FILES:
        raise ValueError(f"kill point {text!r}: unknown file {what!r}; one of {', '.join(FILES)}")
    if int(it) < 0 or k < 1:
        raise ValueError(f"kill point {text!r}: the iteration must be >= 0 and K >= 1")
    return Point(kind, what, int(it), k)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Run:
    """Where the run is (iteration, stage) and how often each hooked event happened there."""

    point: Point
    current: Callable[[], int]
    stage: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def here(self) -> bool:
        return self.current() == self.point.iteration

    def count(self, event: str) -> None:
        """Die when ``event`` (the point's kind) happens for the K-th time in its iteration."""
        if event != self.point.kind or not self.here():
            return
        self.counts[event] = self.counts.get(event, 0) + 1
        if self.counts[event] == self.point.k:
            die()


class _KillingOracle:
    """The campaign's oracle with the ``submit`` and ``pending`` points on it."""

    def __init__(self, inner: Any, run: _Run) -> None:
        self.inner, self.run = inner, run
        self.name, self.space = inner.name, inner.space

    def submit(self, designs: Any) -> Any:
        handles = self.inner.submit(designs)
        self.run.count("submit")
        return handles

    def poll(self, handles: Sequence[Any]) -> Any:
        statuses = self.inner.poll(handles)
        if any(not s.terminal for s in statuses):
            self.run.count("pending")
        return statuses

    def __getattr__(self, attr: str) -> Any:  # adopt, pool, results, cancel, idempotent_submit ...
        return getattr(self.inner, attr)


def _hook_ledger(run: _Run) -> None:
    append = ledger.Ledger.append

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = append(self, *args, **kwargs)
        run.count("append")
        return rec

    ledger.Ledger.append = counted  # type: ignore[method-assign]


def _hook_rename(run: _Run) -> None:
    """Wrap ``os.replace`` as `agent.core.atomic` calls it: the temporary file is written and fsynced."""
    target = FILES[run.point.what]
    replace = os.replace

    def renaming(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == target:
            run.count("rename")
        replace(src, dst, *args, **kwargs)

    atomic.os.replace = renaming


def _hook_ray(run: _Run) -> None:
    import ray  # only for the kill points inside Ray

    get = ray.get

    def getting(*args: Any, **kwargs: Any) -> Any:
        if run.stage == "sample":
            run.count("ray")
        return get(*args, **kwargs)

    ray.get = getting


def _hook_reply(run: _Run) -> None:
    """Wrap the http client's requests: die once a job-creating POST has its answer."""
    import httpx  # only for the kill points of the http oracle

    request = httpx.Client.request

    def requesting(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        resp = request(self, method, url, *args, **kwargs)
        if method == "POST" and str(url).endswith("/v1/jobs") and resp.status_code in (200, 201):
            run.count("reply")
        return resp

    httpx.Client.request = requesting  # type: ignore[method-assign]


def _hook_campaign(run: _Run, run_stage: Callable[[str, Callable[[], Any]], Any]) -> None:
    """Give `run_campaign` the stage hook and wrap the oracle it makes; the rest is the CLI's."""
    run_campaign, make_oracle = campaign.run_campaign, campaign.make_campaign_oracle

    def running(*args: Any, **kwargs: Any) -> Any:
        return run_campaign(*args, **kwargs, run_stage=run_stage)

    def making(*args: Any, **kwargs: Any) -> Any:
        return _KillingOracle(make_oracle(*args, **kwargs), run)

    campaign.run_campaign = running
    campaign.make_campaign_oracle = making


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    config, state_dir, text = args
    point = parse_point(text)
    delay = float(os.environ.get("DELAY", "0.05"))
    store = CampaignStore(state_dir, load_config(config).name)
    run = _Run(point, lambda: store.last_completed() + 1 if store.exists() else 0)

    def run_stage(name: str, fn: Any) -> Any:
        run.stage = name
        hit = point.what == name and run.here()
        if hit and point.kind == "before":
            die()
        if hit and point.kind == "during":
            threading.Timer(delay, die).start()
        out = fn()
        if hit and point.kind == "after":
            die()
        run.stage = ""
        return out

    _hook_campaign(run, run_stage)
    _hook_ledger(run)
    hooks = {"rename": _hook_rename, "reply": _hook_reply, "ray": _hook_ray}
    if point.kind in hooks:
        hooks[point.kind](run)
    code = cli.main(["run", config, "--state", state_dir, "--no-prefect", "-q"])
    print("finished")
    return code


if __name__ == "__main__":
    sys.exit(main())
