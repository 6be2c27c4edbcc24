"""Who draws generator samples: in this process, or fanned out to Ray actors (`flows.ray_sampler`).

The loop only sees the `Sampler` protocol, so the same step runs in a test, on a laptop
and against a Ray cluster. Generators travel as their weight files' bytes (the format
`generators.load_generator` reads with ``weights_only=True``), never as pickled objects.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from generators import Generator, load_generator

__all__ = ["LocalSampler", "SampleJob", "Sampler", "generator_bytes", "generator_from_bytes", "sample_job"]

SampleJob = tuple[float, int, int]  # (target, n, seed)


class Sampler(Protocol):
    """Draw unit-box samples ``(n, d)`` for each ``(target, n, seed)`` job, in order."""

    def sample(self, generator: Generator, jobs: Sequence[SampleJob]) -> list[np.ndarray]: ...

    def close(self) -> None:
        """Release workers (Ray actors, a Ray started for them); sampling ends."""


def sample_job(generator: Generator, job: SampleJob) -> np.ndarray:
    """One job: ``n`` samples for ``target``; empty when the target lies outside what it learned."""
    target, n, seed = job
    lo, hi = generator.target_range
    if not lo <= target <= hi:
        return np.zeros((0, _dim(generator)))
    return generator.sample(float(target), int(n), seed=int(seed)).detach().cpu().numpy().astype(np.float64)


def _dim(generator: Generator) -> int:
    return int(getattr(generator, "dim", 0))


class LocalSampler:
    """Samples in the calling process: the default when no Ray is wanted (tests, benchmarks)."""

    def sample(self, generator: Generator, jobs: Sequence[SampleJob]) -> list[np.ndarray]:
        return [sample_job(generator, job) for job in jobs]

    def close(self) -> None:
        """Nothing to release: sampling ran in this process."""


def generator_bytes(generator: Generator) -> bytes:
    """The generator's weight file as bytes (what a remote actor loads)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.pt"
        generator.save(path)
        return path.read_bytes()


def generator_from_bytes(blob: bytes, kind: str | None = None) -> Generator:
    """Inverse of `generator_bytes`, through the checked, ``weights_only`` loader."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.pt"
        path.write_bytes(blob)
        return load_generator(path, kind=kind)
