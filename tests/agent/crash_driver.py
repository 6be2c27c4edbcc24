"""Run a campaign in this process and SIGKILL it at a chosen point (used by test_resume.py).

``python crash_driver.py CONFIG STATE_DIR POINT``; POINT is ``none`` or
``<where>:<stage>:<iteration>`` with where in ``before``, ``after``, ``during`` (a timer
fires ``DELAY`` seconds into the stage), or ``submit:-:<iteration>`` (killed after the
oracle accepted a batch, before its handles were saved).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from agent.campaign import make_campaign_oracle, open_campaign, run_campaign
from agent.config import load_config
from agent.store import CampaignStore


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterSubmit:
    """The campaign's oracle, except that the process dies once a batch was accepted."""

    def __init__(self, inner: Any, store: CampaignStore, iteration: int) -> None:
        self.inner, self.store, self.iteration = inner, store, iteration
        self.name, self.space = inner.name, inner.space

    def submit(self, designs: Any) -> Any:
        handles = self.inner.submit(designs)
        if self.store.last_completed() + 1 == self.iteration:
            die()
        return handles

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def main() -> None:
    config, state_dir, point = sys.argv[1:4]
    delay = float(os.environ.get("DELAY", "0.05"))
    cfg = load_config(config)
    where, stage, it = ([*point.split(":"), "", ""])[:3] if point != "none" else ("none", "", "-1")
    iteration = {"n": 0}
    store = CampaignStore(state_dir, cfg.name)

    def run_stage(name: str, fn: Any) -> Any:
        if name == "retrain":
            iteration["n"] = store.last_completed() + 1
        hit = name == stage and str(iteration["n"]) == it
        if hit and where == "before":
            die()
        if hit and where == "during":
            threading.Timer(delay, die).start()
        out = fn()
        if hit and where == "after":
            die()
        return out

    oracle: Any = None
    if where == "submit":
        open_campaign(cfg, state_dir)  # creates the folder the oracle's jobs live in
        oracle = KillAfterSubmit(make_campaign_oracle(cfg, store), store, int(it))
    run_campaign(cfg, state_dir, oracle=oracle, run_stage=run_stage)
    print("finished")


if __name__ == "__main__":
    main()
