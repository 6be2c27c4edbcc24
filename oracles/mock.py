"""A DFT emulator: the default oracle of demos and tests.

The "physics" is a fixed smooth model fitted to the bundled MoS2 VASP data (weights in
``oracles/data/mock_mos2.npz``, reproduced by ``scripts/fit_mock_oracle.py``, evaluated
with numpy by `oracles.emulator`, so the mock needs no torch). Around it sit the parts
of a real back end that a loop must survive: jobs live on disk (one JSON file each, so
another process can re-attach), take ``latency_s`` to finish, carry optional Gaussian
noise and fail at ``failure_rate``: a share ``infrastructure_share`` (default half) of the
failures are infrastructure (a fresh attempt may succeed), the others physics (the same
design always fails, like an SCF that never converges). With ``latency_sigma`` run times
are heavy-tailed like a cluster's: log-normal with median ``latency_s`` (``latency_sigma
= 1`` puts the 95th percentile at 5.2 times the median). Every outcome and run time is a
pure function of the seed, the design and the attempt number, so campaigns are
reproducible.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_json
from agent.core.errors import ConfigError
from agent.core.materials import Material, get_material
from agent.core.paths import default_state_dir
from oracles.base import (
    ErrorClass,
    Handle,
    JobStatus,
    OracleError,
    OracleRefused,
    Result,
    absolute_path,
    check_own,
    design_digest,
    designs_to_rows,
    resolve_path_settings,
    site_setting,
)
from oracles.emulator import Emulator

__all__ = ["MockOracle"]

_WEIGHTS = "mock_mos2.npz"  # under oracles/data


class MockOracle:
    """On-disk emulated DFT jobs. Settings default to ``INNLOOP_MOCK_*`` environment variables."""

    name = "mock"

    def __init__(
        self,
        workdir: str | Path | None = None,
        latency_s: float | None = None,
        noise_eV: float | None = None,
        failure_rate: float | None = None,
        seed: int = 0,
        latency_sigma: float = 0.0,
        infrastructure_share: float = 0.5,
        material: str | Material = "mos2",
    ) -> None:
        self.latency_s = site_setting(latency_s, "INNLOOP_MOCK_LATENCY_S", 0.0)
        self.noise_eV = site_setting(noise_eV, "INNLOOP_MOCK_NOISE_EV", 0.0)
        self.failure_rate = site_setting(failure_rate, "INNLOOP_MOCK_FAILURE_RATE", 0.0)
        self.latency_sigma, self.infrastructure_share = float(latency_sigma), float(infrastructure_share)
        wrong = [f"{k} >= 0" for k in ("latency_s", "latency_sigma", "noise_eV") if getattr(self, k) < 0]
        wrong += [f"{k} in [0, 1]" for k in ("failure_rate", "infrastructure_share") if not 0 <= getattr(self, k) <= 1]
        if wrong:
            raise OracleError(f"mock oracle: want {', '.join(wrong)}")
        mos2 = get_material("mos2")
        if material != "mos2" and material is not mos2:
            name = material.name if isinstance(material, Material) else str(material)
            what = f"a material of its own named {name!r}" if name == "mos2" else repr(name)
            raise ConfigError(
                f"the mock oracle emulates the built-in MoS2 only (its model is fitted to the bundled "
                f"MoS2 data), not {what}; measure it with the gpaw or vasp oracle, or replay your own "
                "data with the table oracle"
            )
        self.seed = int(seed)
        self.space = mos2.space
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "mock"
        self.jobs = self.workdir / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        with resources.as_file(resources.files("oracles") / "data" / _WEIGHTS) as path:
            self._model = Emulator.load(path)
        self.claims = self.workdir / "attempts"  # one empty file per (design, attempt) ever claimed
        self._attempts: Counter[str] | None = None  # next attempt per design key, as far as this process knows

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``workdir`` absolute against ``base`` (a campaign file's folder)."""
        return resolve_path_settings(settings, ("workdir",), base)

    def value_names(self) -> frozenset[str]:
        """What a completed result carries: the emulated gap only (`oracles.base.NamesValues`)."""
        return frozenset({"gap"})

    # -- the protocol ------------------------------------------------------------------
    def submit(self, designs: Any) -> list[Handle]:
        rows = designs_to_rows(self.space, designs)
        handles = []
        for row in rows:
            key = _design_key(row)
            attempt = self._claim_attempt(key)
            job_id = f"{time.time_ns():x}-{attempt}-{key}"
            h = Handle(self.name, job_id, row, native_id=job_id, workdir=str(self.workdir), submitted_at=time.time())
            write_json(self.jobs / f"{job_id}.json", {"handle": h.to_json(), "attempt": attempt, "cancelled": False})
            handles.append(h)
        return handles

    def _claim_attempt(self, key: str) -> int:
        """The design's next attempt number, claimed atomically (``O_EXCL``) by any process.

        Counting the design's job files instead lists the whole folder per design: O(n²)
        for n designs. The folder is listed once per instance, for folders without claims.
        """
        if self._attempts is None:
            self.claims.mkdir(exist_ok=True)
            names = (n for n in os.listdir(self.jobs) if n.endswith(".json") and not n.startswith("."))
            self._attempts = Counter(n[: -len(".json")].rsplit("-", 1)[-1] for n in names)
        n = self._attempts[key]
        while True:
            try:
                os.close(os.open(self.claims / f"{key}-{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                break
            except FileExistsError:
                n += 1  # another instance or process took it
        self._attempts[key] = n + 1
        return n

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the newest job submitted at or after ``since`` (``None``: it never arrived).

        What a campaign killed between ``submit`` and saving the handles uses to re-attach
        instead of submitting the same design twice.
        """
        out: list[Handle | None] = []
        for row in designs_to_rows(self.space, designs):
            best: Handle | None = None
            for path in self.jobs.glob(f"*-{_design_key(row)}.json"):
                job = self._job(Handle(self.name, path.stem, row))
                if job is None:
                    continue
                h = Handle.from_json(job["handle"])
                if h.submitted_at >= since and (best is None or h.submitted_at > best.submitted_at):
                    best = h
            out.append(best)
        return out

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return [r.status for r in self._outcomes(handles)]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        return self._outcomes(handles)

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
        for h in handles:
            job = self._job(h)
            if job is not None:
                write_json(self.jobs / f"{h.job_id}.json", job | {"cancelled": True})

    def run_time(self, key: str, attempt: int) -> float:
        """Seconds the ``attempt``-th job of the design ``key`` runs: ``latency_s``, times a
        log-normal factor of median 1 with ``latency_sigma``. Read from this instance's
        settings when polled, so a later run with ``latency_s = 0`` finds every job done."""
        if not self.latency_sigma:
            return self.latency_s
        z = np.random.default_rng([self.seed, int(key, 16), attempt + 1, 7]).standard_normal()
        return self.latency_s * float(np.exp(self.latency_sigma * z))

    def submissions(self) -> int:
        """Jobs ever submitted to this work folder: what the fault tests count."""
        return len(list(self.jobs.glob("*.json")))

    # -- emulation ---------------------------------------------------------------------
    def gap(self, designs: Any) -> np.ndarray:
        """The noiseless emulated gap (eV) of designs, ``(n,)``, the same whatever the batch."""
        rows = designs_to_rows(self.space, designs)
        X = np.array([[r[n] for n in self.space.names] for r in rows])
        # float64, and values rounded to 1e-9 eV: a design's value must not depend on which
        # other jobs share the model pass (sums over a batch can differ in the last bit)
        return np.round(self._model.gap(self.space.to_unit(X)), 9)

    def _job(self, h: Handle) -> dict[str, Any] | None:
        path = self.jobs / f"{h.job_id}.json"
        if not path.exists():
            return None
        try:
            job: dict[str, Any] = json.loads(path.read_text())
            return job
        except json.JSONDecodeError as exc:
            raise OracleRefused(f"mock job file {path} is corrupt: {exc}") from None

    def _outcomes(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        out: list[Result] = []
        now = time.time()
        prov = {"oracle": self.name, "model": _WEIGHTS, "seed": self.seed}
        completed: list[tuple[int, float]] = []  # (index, noise): values from one pass of the model, below
        for h in handles:
            job = self._job(h)
            if job is None:
                out.append(
                    Result.failure(
                        h,
                        ErrorClass.INFRASTRUCTURE,
                        f"no job {h.job_id} in {self.jobs}: lost by the back end",
                        status=JobStatus.ABANDONED,
                        provenance=prov,
                    )
                )
                continue
            if job.get("cancelled"):
                out.append(Result(h, JobStatus.CANCELLED, message="cancelled", provenance=prov))
                continue
            if now < h.submitted_at + self.run_time(_design_key(h.design), int(job.get("attempt", 0))):
                out.append(Result(h, JobStatus.RUNNING, provenance=prov))
                continue
            key = _design_key(h.design)
            rng_design = np.random.default_rng([self.seed, int(key, 16)])
            rng_attempt = np.random.default_rng([self.seed, int(key, 16), int(job.get("attempt", 0)) + 1])
            log = str(self.jobs / f"{h.job_id}.json")
            physics, infrastructure = (1 - self.infrastructure_share), self.infrastructure_share
            if rng_design.random() < self.failure_rate * physics:
                out.append(
                    Result.failure(h, ErrorClass.PHYSICS, "SCF did not converge (emulated)", provenance=prov, log=log)
                )
                continue
            if rng_attempt.random() < self.failure_rate * infrastructure:
                out.append(
                    Result.failure(h, ErrorClass.INFRASTRUCTURE, "node failure (emulated)", provenance=prov, log=log)
                )
                continue
            noise = self.noise_eV * float(rng_attempt.standard_normal()) if self.noise_eV else 0.0
            completed.append((len(out), noise))
            out.append(Result(h, JobStatus.COMPLETED, provenance=prov, log=log))
        if completed:
            gaps = self.gap([[out[i].handle.design[n] for n in self.space.names] for i, _ in completed])
            for (i, noise), gap in zip(completed, gaps, strict=True):
                out[i].values = {"gap": max(0.0, float(gap) + noise) if self.noise_eV else float(gap)}
        return out


def _design_key(design: dict[str, float]) -> str:
    return design_digest(design)[:12]
