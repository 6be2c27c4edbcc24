"""innloop on a real multi-node Ray cluster: a head and a worker node (`ray start`, token
auth, on this machine), sampler actors spread over both, the worker node SIGKILLed during
a sampling stage; the campaign must finish with nothing lost and choose exactly what the
same campaign chooses with in-process sampling (every sampling job carries its own seed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.local_ray_cluster import LocalRayCluster, start_local_ray_cluster


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    with start_local_ray_cluster(tmp_path_factory.mktemp("ray-cluster")) as cluster:
        yield cluster


@pytest.mark.slow
def test_a_campaign_survives_losing_a_ray_node_while_sampling(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    raylet = ray_cluster.raylet_pid("node_worker")
    probe = subprocess.run(
        [sys.executable, "-m", "tests.flows.ray_cluster_probe", ray_cluster.address, str(raylet), str(tmp_path)],
        capture_output=True,
        text=True,
        env=os.environ | ray_cluster.env,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    out = json.loads(probe.stdout.strip().splitlines()[-1])
    head, worker = ray_cluster.nodes["head"], ray_cluster.nodes["node_worker"]
    assert sorted(out["nodes_before"]) == sorted([head, worker]), "one sampler actor on each node"
    assert out["killed"] and raylet in out["killed"] and out["calls"] >= 3, "the node died mid-campaign"
    assert out["nodes_after"] == [head, head], "the lost actor was restarted on the surviving node"
    assert out["recoveries"] + out["fallbacks"] >= 1 and "Ray sampling failed" in probe.stderr, "and it was logged"
    assert all(r.startswith("iteration budget reached") for r in out["reason"]), out["reason"]
    assert out["ray_designs"] == out["local_designs"] and len(out["ray_designs"]) == 16 + 3 * 5, "nothing lost"
    alive = [n for n in ray_cluster.node_table() if n.get("Alive")]
    assert [n["NodeID"] for n in alive] == [head], "Ray saw the worker node die"


@pytest.mark.slow
def test_innloop_run_joins_the_cluster_with_ray_address(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    from tests.flows.ray_cluster_probe import CONFIG

    config = tmp_path / "ray-cluster.toml"
    config.write_text(CONFIG.replace("iterations = 4", "iterations = 2"))
    argv = [sys.executable, "-m", "agent.cli.main", "run", str(config), "--state", str(tmp_path / "state")]
    run = subprocess.run(
        [*argv, "--ray-address", ray_cluster.address, "--no-prefect", "-q"],
        capture_output=True,
        text=True,
        env=os.environ | ray_cluster.env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ledger = (tmp_path / "state" / "ray-cluster" / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 16 + 5, "the random batch and one learned batch, sampled on the cluster"
    wrong = subprocess.run(
        [*argv, "--ray-address", ray_cluster.address, "--no-prefect", "-q"],
        capture_output=True,
        text=True,
        env=os.environ | ray_cluster.env | {"RAY_AUTH_TOKEN": "x" * 32},
        timeout=600,
    )
    assert wrong.returncode != 0, "a client without the cluster's token is refused"
    assert "token" in (wrong.stdout + wrong.stderr).lower(), wrong.stdout[-1500:] + wrong.stderr[-1500:]
