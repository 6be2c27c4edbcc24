"""Run by `tests.flows.test_ray_cluster` in a process of its own (so it joins the test's Ray
cluster, not a Ray another test of the same worker started): a campaign whose sampler actors
sit on two nodes, one node SIGKILLed during a sampling stage, and the same campaign with
in-process sampling for comparison. Prints one JSON line.

Usage: python -m tests.flows.ray_cluster_probe ADDRESS RAYLET_PID STATE_DIR
"""

from __future__ import annotations

import json
import logging
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.campaign.config import config_from_dict
from agent.campaign.runner import run_campaign
from agent.campaign.store import CampaignStore
from agent.design.sampling import LocalSampler, SampleJob
from flows.local_ray_cluster import kill_tree
from flows.ray_sampler import RaySampler
from generators import Generator

CONFIG = """
name = "ray-cluster"
seed = 3
[[targets]]
value = 1.0
hits = 40
[initial]
random = 16
[loop]
batch_size = 5
samples_per_target = 300
[budget]
iterations = 4
[models]
members = 2
surrogate_epochs = 30
surrogate_warm_epochs = 10
generator_epochs = 15
generator_warm_epochs = 5
[ray]
actors = 2
cpus_per_actor = 0.25
[retry]
poll_interval_s = 0.01
"""


class KillsANode:
    """Delegates to a `RaySampler`; at its ``at``-th call (a sampling stage under way),
    SIGKILLs a node's raylet just before the actors are asked."""

    def __init__(self, inner: RaySampler, raylet: int, at: int = 2) -> None:
        self.inner, self.raylet, self.at, self.calls = inner, raylet, at, 0
        self.killed: list[int] = []
        self.nodes_before: list[str] = []

    def sample(self, generator: Generator, jobs: Sequence[SampleJob]) -> list[np.ndarray]:
        self.calls += 1
        if self.calls == 1:
            self.nodes_before = self.inner.nodes()
        if self.calls == self.at:
            self.killed = kill_tree(self.raylet)
        return self.inner.sample(generator, jobs)

    def close(self) -> None:
        self.inner.close()


def _settled_nodes(sampler: RaySampler, timeout: float = 120) -> list[str]:
    """Where the actors run once Ray has restarted any it lost (it first notices the node died)."""
    import ray

    deadline = time.time() + timeout
    while True:
        try:
            return sampler.nodes()
        except ray.exceptions.RayError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def _designs(state: Path) -> list[list[float]]:
    store = CampaignStore(state, "ray-cluster")
    return [[round(v, 9) for v in r.result.handle.design.values()] for r in store.ledger.records()]


def main(argv: list[str]) -> int:
    address, raylet, state = argv[0], int(argv[1]), Path(argv[2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cfg = config_from_dict(tomllib.loads(CONFIG), "ray_cluster_probe")
    sampler = KillsANode(RaySampler(address, actors=2, cpus_per_actor=0.25), raylet)
    try:
        ray_run = run_campaign(cfg, state / "ray", sampler=sampler)
        nodes_after = _settled_nodes(sampler.inner)
    finally:
        sampler.close()
    local_run = run_campaign(cfg, state / "local", sampler=LocalSampler())
    out: dict[str, Any] = {
        "calls": sampler.calls,
        "killed": sampler.killed,
        "nodes_before": sampler.nodes_before,
        "nodes_after": nodes_after,
        "recoveries": sampler.inner.recoveries,
        "fallbacks": sampler.inner.fallbacks,
        "reason": [ray_run.reason, local_run.reason],
        "ray_designs": _designs(state / "ray"),
        "local_designs": _designs(state / "local"),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
