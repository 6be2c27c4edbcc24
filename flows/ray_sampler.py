"""Sampler actors on Ray: each holds the generator's weights and draws samples for one job at a time.

Actors reserve a fraction of a CPU (``cpus_per_actor``, 0.25 by default) so that on a
small machine they never starve Ray's other tasks. Weights are shipped as the bytes of
the weight file (loaded with ``weights_only=True``) and re-sent only when they change.
``address=None`` starts a private local Ray; an address joins an existing cluster.

On a cluster the actors are spread over the nodes (Ray's ``SPREAD`` strategy), and a node
may die while they sample. Nothing is lost then, and nothing changes: a dead actor is
restarted by Ray on a surviving node (``max_restarts``) without its weights, so the
sampler re-sends them and runs the batch once more; if that fails too, the batch is drawn
in this process. Actors that are alive but do not answer within ``timeout_s`` (a node cut
off, a hung process) are never restarted by Ray: the sampler replaces them all with fresh
actors before the second try. Every job carries its own seed (`agent.design.sampling.SampleJob`), so
each way gives the same samples. Each recovery is logged (logger ``innloop.ray``) and
counted (`RaySampler.recoveries`, `RaySampler.fallbacks`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from agent.design.sampling import SampleJob, generator_bytes, generator_from_bytes, sample_job
from generators import Generator

__all__ = ["RaySampler", "SamplerActor"]

log = logging.getLogger("innloop.ray")
RESTARTS = 3  # times Ray restarts a dead actor (a node lost) before it stays dead


class SamplerActor:
    """Holds one generator; ``load`` swaps its weights, ``sample`` runs one job."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self._generator: Generator | None = None
        self.digest: str | None = None

    def load(self, blob: bytes, kind: str, digest: str) -> str:
        self._generator = generator_from_bytes(blob, kind=kind)
        self.digest = digest
        return digest

    def sample(self, job: SampleJob) -> np.ndarray:
        if self._generator is None:
            raise RuntimeError("sampler actor has no generator loaded")
        return sample_job(self._generator, job)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The id of the Ray node this actor runs on."""
        return str(ray.get_runtime_context().get_node_id())


class RaySampler:
    """Fans sampling jobs out over ``actors`` Ray actors (round robin, results in job order)."""

    def __init__(
        self, address: str | None = None, actors: int = 2, cpus_per_actor: float = 0.25, timeout_s: float = 600.0
    ) -> None:
        self.timeout_s = timeout_s  # a batch not back by then counts as lost (a node cut off, not dead)
        self.started_ray = False
        if not ray.is_initialized():
            # Ray's start-up INFO lines and token notice would print over the console's one view
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            # ray.init replaces SIGTERM's handler with a bare exit; the caller's (the CLI's clean
            # stop, Prefect's crash report) is put back
            term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
                self.started_ray = True
            if term is not None:
                signal.signal(signal.SIGTERM, term)
        self._remote = ray.remote(SamplerActor).options(
            num_cpus=cpus_per_actor, max_restarts=RESTARTS, scheduling_strategy="SPREAD"
        )
        self.actors: list[Any] = [self._remote.remote() for _ in range(actors)]
        self._digest: str | None = None
        self.recoveries = 0  # batches run again after actors were lost or restarted
        self.fallbacks = 0  # batches drawn in this process because Ray could not

    def sample(self, generator: Generator, jobs: Sequence[SampleJob]) -> list[np.ndarray]:
        try:
            return self._on_ray(generator, jobs)
        except ray.exceptions.RayError as exc:  # a node lost, an actor restarted without its weights
            self.recoveries += 1
            log.warning("Ray sampling failed (%s); re-sending the weights and sampling again", _short(exc))
            self._digest = None
            if isinstance(exc, ray.exceptions.GetTimeoutError):  # alive but stuck (a node cut off): Ray
                self._renew()  # would never restart them, so the next try goes to fresh actors
        try:
            return self._on_ray(generator, jobs)
        except ray.exceptions.RayError as exc:
            self.fallbacks += 1
            log.warning("Ray sampling failed again (%s); sampling this batch in this process", _short(exc))
            self._digest = None
            return [sample_job(generator, job) for job in jobs]

    def _on_ray(self, generator: Generator, jobs: Sequence[SampleJob]) -> list[np.ndarray]:
        blob = generator_bytes(generator)
        digest = hashlib.sha256(blob).hexdigest()
        if digest != self._digest:
            ref = ray.put(blob)
            kind = str(getattr(generator, "name", ""))
            ray.get([a.load.remote(ref, kind, digest) for a in self.actors], timeout=self.timeout_s)
            self._digest = digest
        futures = [self.actors[i % len(self.actors)].sample.remote(job) for i, job in enumerate(jobs)]
        return list(ray.get(futures, timeout=self.timeout_s))

    def _renew(self) -> None:
        """Replace every actor by a fresh one (placed anew, SPREAD); the stuck ones are killed."""
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = [self._remote.remote() for _ in self.actors]

    def pids(self) -> list[int]:
        return list(ray.get([a.pid.remote() for a in self.actors]))

    def nodes(self) -> list[str]:
        """The Ray node each actor runs on now (a restarted actor may have moved)."""
        return list(ray.get([a.node.remote() for a in self.actors]))

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.started_ray:
            ray.shutdown()


def _short(exc: BaseException) -> str:
    """An exception's first line (Ray's carry whole remote tracebacks)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
