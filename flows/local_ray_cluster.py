"""A throw-away multi-node Ray cluster on this machine, for the tests and benchmarks that
must meet a real cluster (a head and worker nodes, as ``ray start`` makes them).

Why real nodes: a private ``ray.init`` is one node, where nothing can be lost; innloop's
``--ray-address`` promise is about clusters, where a node can die under a running campaign.
Each node is a ``ray start`` of its own, with its own CPUs and a custom resource naming it;
all share one session folder and one token (Ray clusters authenticate with a shared token:
``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), which `LocalRayCluster.env` carries for clients.
`LocalRayCluster.kill_node` SIGKILLs a worker node's raylet and every process under it, the
way a machine that vanishes would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from oracles.testing.lab import free_port

__all__ = ["LocalRayCluster", "kill_tree", "start_local_ray_cluster"]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest last."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every process under it (a node's raylet: the node is gone); the pids."""
    doomed = [pid, *_children(pid)]
    for p in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return doomed


def _command_lines() -> Iterator[tuple[int, list[bytes]]]:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            yield int(cmdline.parent.name), cmdline.read_bytes().split(b"\0")


class LocalRayCluster:
    """A head and worker nodes started with ``ray start`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Ray's session folder holds its Unix sockets, whose paths must stay under 108 bytes:
        # a short folder of its own in the system's temp folder, not under ``root``
        self.session = Path(tempfile.mkdtemp(prefix="innloop-ray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "RAY_USAGE_STATS_ENABLED": "0",
            # a dead node is noticed after ~3 s instead of Ray's default ~15 s (as a test wants)
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
        self.nodes: dict[str, str] = {}  # our node name -> Ray node id

    def _ray(self, *args: str) -> None:
        log = self.root / "ray-start.log"
        with open(log, "a") as out:
            res = subprocess.run(
                [_ray_cli(), *args], stdout=out, stderr=subprocess.STDOUT, env=os.environ | self.env, timeout=120
            )
        if res.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"ray {' '.join(args[:2])} failed ({res.returncode}):\n{tail}")

    def start_head(self, cpus: float = 1) -> None:
        self._ray(
            "start",
            "--head",
            f"--port={self.port}",
            f"--num-cpus={cpus:g}",
            f"--resources={json.dumps({'node_head': 1})}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.session}",
        )
        self.nodes["head"] = self._node_with("node_head")

    def add_worker(self, name: str, cpus: float = 1) -> None:
        self._ray("start", f"--address={self.address}", f"--num-cpus={cpus:g}", f"--resources={json.dumps({name: 1})}")
        self.nodes[name] = self._node_with(name)

    def _node_with(self, resource: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in self.node_table():
                resources = node.get("Resources")
                if node.get("Alive") and isinstance(resources, dict) and resource in resources:
                    return str(node["NodeID"])
            time.sleep(0.5)
        raise RuntimeError(f"no live Ray node with resource {resource!r} within {timeout:g} s")

    def node_table(self) -> list[dict[str, object]]:
        """``ray.nodes()`` as a client of this cluster sees it (asked from a fresh process, so
        this process never joins the cluster)."""
        code = "import json, ray; ray.init(address=%r, logging_level='ERROR'); print(json.dumps(ray.nodes()))"
        res = subprocess.run(
            [sys.executable, "-c", code % self.address],
            capture_output=True,
            text=True,
            env=os.environ | self.env,
            timeout=120,
        )
        if res.returncode != 0:
            raise RuntimeError(f"could not read the node table: {res.stderr.strip()[-500:]}")
        table: list[dict[str, object]] = json.loads(res.stdout.strip().splitlines()[-1])
        return table

    def raylet_pid(self, name: str) -> int:
        """The pid of node ``name``'s raylet (its command line names its node id)."""
        needle = f"--node_id={self.nodes[name]}".encode()
        for pid, argv in _command_lines():
            if argv and argv[0].endswith(b"raylet") and needle in argv:
                return pid
        raise RuntimeError(f"no raylet found for node {name!r}")

    def pids(self) -> list[int]:
        """Every process of this cluster: the daemons (their command lines name its folder) and
        everything under them (workers, agents)."""
        root = str(self.session).encode()
        daemons = [pid for pid, argv in _command_lines() if any(root in a for a in argv)]
        return sorted({p for d in daemons for p in (d, *_children(d))})

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL node ``name``'s raylet and every process under it; the pids killed."""
        return kill_tree(self.raylet_pid(name))

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every process of this cluster (not ``ray stop``: that would stop every Ray on
        the machine, other tests' among them): SIGTERM, then SIGKILL after ``grace_s``."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
            doomed = self.pids()
            for p in doomed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            deadline = time.time() + wait
            while time.time() < deadline and self.pids():
                time.sleep(0.2)
        shutil.rmtree(self.session, ignore_errors=True)


@contextlib.contextmanager
def start_local_ray_cluster(root: Path, workers: tuple[str, ...] = ("node_worker",)) -> Iterator[LocalRayCluster]:
    """A head (1 CPU) and one node per name in ``workers`` (1 CPU each), stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalRayCluster(root)
    try:
        cluster.start_head()
        for name in workers:
            cluster.add_worker(name)
        yield cluster
    finally:
        cluster.stop()
