"""Real DFT on this machine: one GPAW subprocess per design (`oracles.gpaw_job`).

Each job gets its own folder under ``workdir`` (``input.json``, ``output.json``,
``gpaw.txt``, ``eigenvalues.json``, ``stdout.txt``), runs in its own process session with
a wall-time limit and an address-space limit (a degenerate cell once made GPAW eat
12 GB), and is found again from its handle alone: the folder is in it and the folder
holds the pid (``job.json``), so a restarted campaign re-attaches instead of paying for
the same DFT twice.

The work folder is also a small queue: at most ``max_parallel`` jobs are in flight at once
(default 1, ``INNLOOP_GPAW_MAX_PARALLEL``), the rest wait as PENDING and are started,
oldest first, by whichever process polls next -- sixty designs on a two-core machine
must not become sixty DFT processes.

Where a job runs (`oracles.job_runners`): by default a process on this machine. With
``executor`` set (``slurm``, ``pbs``, ``lsf``... or ``INNLOOP_GPAW_EXECUTOR``) each job is a
batch job submitted through psij, exactly as the ``vasp`` oracle's (`oracles.scheduler`:
``queue``, ``account``, ``nodes``, ``ppn``, ``launcher``, ``poll_interval_s``; the scheduler
enforces ``walltime_s`` and ``memory_gb``), found again by its native id from ``job.json``.
``max_parallel`` then caps the jobs at the scheduler (a site's limit honoured by a campaign
that restarts: the count is read from the folders), and a submission that a per-user limit
refuses (`oracles.scheduler.SiteLimit`) stays queued and is tried again at the next poll.

Status comes from the folder: ``output.json`` present -> finished (COMPLETED, or FAILED
with the job's own error class); not started -> PENDING; started -> what its runner sees:
RUNNING (or PENDING at a scheduler), TIMEOUT past its wall time, FAILED, infrastructure,
once it ended without output (killed, out of memory, machine rebooted); a job that could
not be started at all (the command missing, the scheduler refusing it) -> FAILED,
infrastructure, with the reason.

`submit` only queues: once a job's ``input.json`` is written it is the polling side's
to start, so a failure to start one never makes `submit` raise with jobs left behind.
`adopt(designs, since)` finds the queued jobs of a submit whose handles were lost (a
campaign killed between `submit` returning and saving them).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.core.atomic import write_json
from agent.core.errors import ConfigError, UnknownNameError
from agent.core.materials import Material, as_material, get_material
from agent.core.paths import default_state_dir
from oracles.base import (
    ErrorClass,
    Handle,
    JobStatus,
    OracleError,
    Result,
    absolute_command,
    absolute_path,
    check_own,
    designs_to_rows,
    newest_per_design,
    resolve_path_settings,
    site_setting,
    site_text,
)
from oracles.calibration import BUNDLED, GapCalibration, load_calibration
from oracles.gpaw_output import parse_output
from oracles.gpaw_reference import PREFIX, StrainReference
from oracles.job_runners import BatchRunner, LocalRunner, Runner
from oracles.local_jobs import absolute_pythonpath, job_meta, lock_lost, take_lock
from oracles.scheduler import Scheduler, SiteHold, SiteLimit

__all__ = ["GpawOracle"]

LAUNCH_GRACE_S = 60.0  # a launch lock this old whose process is gone: the launcher died


class GpawOracle:
    """Settings: ``material`` (a registered material, by name or as the `Material` itself;
    each job gets its name and builds that material's structure and field -- any crystal
    material, e.g. the MX2 family ``mos2``, ``ws2``, ``mose2``, ``wse2``, ``mote2``),
    ``convention`` (one of the material's atomic-position conventions; default its first),
    ``settings`` (ecut_eV, kpts, smearing_eV, spin, xc, maxiter; kpts default to the
    material's mesh, `oracles.kpoints`), ``walltime_s``, ``memory_gb``, ``max_parallel``,
    ``command`` (the job's argv prefix; default runs ``python -m oracles.gpaw_job``),
    ``calibration``, ``strain_reference``, and ``executor`` with the scheduler's settings
    (module docstring). Defaults come from ``INNLOOP_GPAW_*`` where set.

    Results carry ``gap`` on the scale of the bundled VASP data (through ``calibration``,
    by default the bundled fit ``mos2-gpaw-to-vasp``, for MoS2 only: another material
    reports GPAW's raw gap unless given a calibration of its own; see
    `oracles.calibration`) and ``gap_raw``, GPAW's own number. ``calibration=None`` (or
    ``"none"``) reports the raw gap as ``gap``. They also carry ``energy``, the total energy
    per formula unit (eV), and ``strain_energy``, that energy less the unstrained cell's
    (`Material.unstrained_design`, no field) under the same material, convention and
    settings: one reference job per work folder and setting set, queued before the first
    design and waited for (``strain_reference=False``: none, no ``strain_energy``).

    A material that builds no structure (its designs are not crystals) is refused here
    with a `ConfigError`, and so is a `Material` object that is not the registered one of
    its name: the job runs in a fresh process that finds its material by name."""

    name = "gpaw"

    def __init__(
        self,
        workdir: str | Path | None = None,
        convention: str | None = None,
        settings: dict[str, Any] | None = None,
        walltime_s: float | None = None,
        memory_gb: float | None = None,
        max_parallel: int | None = None,
        command: Sequence[str] | None = None,
        material: str | Material = "mos2",
        calibration: str | Path | dict[str, Any] | GapCalibration | None = "mos2-gpaw-to-vasp",
        strain_reference: bool = True,
        executor: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        nodes: int | None = None,
        ppn: int | None = None,
        launcher: str | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.material = as_material(material)
        self.material.builder()  # a material that is not a crystal: ConfigError now, not per job
        if _registered(self.material.name) is not self.material:
            raise ConfigError(
                f"gpaw oracle: material {self.material.name!r} is not the registered material of that name, "
                "and each GPAW job looks its material up by name in a fresh process: measure a built-in "
                "material or one an installed plugin provides"
            )
        self.space = self.material.space
        self.convention = self.material.convention(convention)  # one it names, else ConfigError now
        if calibration == "mos2-gpaw-to-vasp" and self.material.name != "mos2":
            calibration = None
        self.calibration = None if calibration in (None, "none") else load_calibration(calibration)
        self.settings = dict(settings or {})
        self.walltime_s = site_setting(walltime_s, "INNLOOP_GPAW_WALLTIME_S", 1800.0)
        self.memory_gb = site_setting(memory_gb, "INNLOOP_GPAW_MEMORY_GB", 4.0)
        self.max_parallel = int(site_setting(max_parallel, "INNLOOP_GPAW_MAX_PARALLEL", 1))
        if self.walltime_s <= 0 or self.memory_gb <= 0 or self.max_parallel < 1:
            raise OracleError("gpaw oracle: walltime_s, memory_gb and max_parallel must be positive")
        # Absolute from here on: each job runs in its own folder, so a relative work folder
        # or program would be looked up again there and name something else.
        self.command = absolute_command(command) if command else [sys.executable, "-m", "oracles.gpaw_job"]
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "gpaw"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runner: Runner = LocalRunner(self.walltime_s, self.memory_gb)
        if site_text(executor, "INNLOOP_GPAW_EXECUTOR"):
            site = Scheduler(
                self.name,
                self.workdir,
                executor=executor,
                queue=queue,
                account=account,
                walltime_s=self.walltime_s,
                nodes=nodes,
                ppn=ppn,
                launcher=launcher,
                poll_interval_s=poll_interval_s,
            )
            _ = site.executor  # an unknown executor is refused here, not at the first job
            self.runner = BatchRunner(site, self.memory_gb)
        self.hold = SiteHold()  # why queued jobs wait (a site limit), and when to ask the site again
        if not isinstance(strain_reference, bool):
            raise OracleError(f"gpaw oracle: strain_reference must be true or false, got {strain_reference!r}")
        self._reference: StrainReference | None = None  # what strain energies are measured from
        if strain_reference and self.material.reference_cell is not None:
            with contextlib.suppress(ConfigError):  # no unstrained design in this space: energies only
                unstrained = self.material.unstrained_design()
                self._reference = StrainReference(self.workdir, self.material, self.convention, unstrained, self.name)

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with their paths absolute against ``base`` (a campaign file's folder):
        ``workdir``, a ``calibration`` file (not a bundled name, not ``"none"``) and a
        ``command`` whose program is given by a path."""
        keys = ["workdir"]
        calibration = settings.get("calibration")
        if isinstance(calibration, str) and calibration not in BUNDLED and calibration != "none":
            keys.append("calibration")
        out = resolve_path_settings(settings, keys, base)
        command = out.get("command")
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            out["command"] = absolute_command(command, base)
        return out

    def reference_folder(self) -> Path | None:
        """The unstrained cell's job folder for this oracle's settings (`oracles.gpaw_reference`);
        None when results carry no ``strain_energy``."""
        return None if self._reference is None else self._reference.folder(self.settings)

    def value_names(self) -> frozenset[str]:
        """The values a completed result carries (`oracles.base.NamesValues`)."""
        names = {"gap", "gap_raw", "energy"}
        return frozenset(names | ({"strain_energy"} if self._reference is not None else set()))

    def submit(self, designs: Any) -> list[Handle]:
        """Queue the designs (one folder each) and start as many as free slots allow; the
        unstrained reference is queued first when it has not been."""
        rows = designs_to_rows(self.space, designs)
        if self._reference is not None:
            self._reference.queue(self.settings)
        handles = []
        for row in rows:
            job_id = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"  # sorts in submission order
            folder = self.workdir / job_id
            folder.mkdir(parents=True)
            payload = {
                "material": self.material.name,
                "design": row,
                "convention": self.convention,
                "settings": self.settings,
            }
            write_json(folder / "input.json", payload, indent=1)
            handles.append(Handle(self.name, job_id, row, workdir=str(folder), submitted_at=time.time()))
        with contextlib.suppress(OSError, OracleError):  # queued: the next poll starts them (or says why not)
            self._start_queued()
        return handles

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the newest queued or started job created at or after ``since`` (else ``None``)."""
        rows = designs_to_rows(self.space, designs)
        found: list[Handle] = []
        for inp in self.workdir.glob("*/input.json"):
            if inp.parent.name.startswith(PREFIX):  # a reference job is nobody's design
                continue
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                at = int(inp.parent.name.split("-")[0], 16) / 1e9  # job ids start with time_ns in hex
                if at < since:
                    continue
                design = {str(k): float(v) for k, v in json.loads(inp.read_text())["design"].items()}
                found.append(Handle(self.name, inp.parent.name, design, workdir=str(inp.parent), submitted_at=at))
        return newest_per_design(rows, found)

    def _start_queued(self, first: Sequence[Handle] = ()) -> None:
        """Launch queued jobs of this work folder up to ``max_parallel`` running: the
        unstrained reference, then those of the handles ``first`` in their order (the jobs
        the caller waits for: a job queued again after its process was lost is not sent to
        the back), then the rest, oldest first.

        The queue is the folders themselves (``input.json`` without ``job.json``), so any
        process that polls drives it; a ``launch.lock`` created with O_EXCL makes sure two
        processes never start the same job.
        """
        if not self.hold.ready():
            return  # a site limit said "later": ask again after HOLD_S, not at every poll
        running, queued = 0, []
        for folder in sorted(p for p in self.workdir.iterdir() if p.is_dir()):
            if (folder / "output.json").exists() or (folder / "cancelled").exists():
                continue
            meta = job_meta(folder)
            if meta is not None:
                running += self.runner.in_flight(folder, meta)
            elif (folder / "input.json").exists() and not (folder / "launch.lock").exists():
                queued.append(folder)
        rank = {h.job_id: i for i, h in reversed(list(enumerate(first)))}
        queued.sort(key=lambda f: (not f.name.startswith(PREFIX), rank.get(f.name, len(rank))))  # stable
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        if os.environ.get("PYTHONPATH"):  # e.g. a source checkout run as `PYTHONPATH=. innloop …`
            env["PYTHONPATH"] = absolute_pythonpath(os.environ["PYTHONPATH"])
        for folder in queued[: max(0, int(self.max_parallel) - running)]:
            lock = folder / "launch.lock"
            if not take_lock(lock):
                continue
            if (folder / "cancelled").exists():  # cancelled while this process took the lock
                continue
            argv = [*self.command, str(folder / "input.json"), str(folder / "output.json")]
            try:
                meta = self.runner.start(folder, argv, env)
            except SiteLimit as exc:  # the site says "later": the job stays queued, in its turn
                lock.unlink()
                self.hold.hold(exc)
                break
            except (OSError, OracleError) as exc:  # this job's outcome, not a poll's crash
                why = f"the job could not be started ({' '.join(self.command[:3])}): {exc}"
                error = {"class": "infrastructure", "message": why}
                write_json(folder / "output.json", {"gap_eV": None, "converged": False, "error": error})
                continue
            write_json(folder / "job.json", meta)
            if (folder / "cancelled").exists():  # cancelled while it was being started
                with contextlib.suppress(OracleError):
                    self.runner.stop(folder, meta)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return [r.status for r in self.results(handles)]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        self._start_queued(first=handles)
        return [self._with_strain_energy(self._status(h)) for h in handles]

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
        failed = []
        for h in handles:
            folder = Path(h.workdir or "")
            if not folder.is_dir() or (folder / "output.json").exists():
                continue  # gone, or finished: its outcome stands
            (folder / "cancelled").touch()  # first, so a queued job is never started
            meta = job_meta(folder)
            try:
                if meta is not None:
                    self.runner.stop(folder, meta)
            except OracleError as exc:  # the others are still cancelled
                failed.append(str(exc))
        if failed:
            raise OracleError("; ".join(failed))

    def _status(self, h: Handle) -> Result:
        """What a job's folder says (no strain energy yet: `_with_strain_energy`)."""
        folder = Path(h.workdir or "")
        log = str(folder / "gpaw.txt")
        prov: dict[str, Any] = {"oracle": self.name, "code": "gpaw", "convention": self.convention}
        if not folder.is_dir():
            return Result.failure(
                h,
                ErrorClass.INFRASTRUCTURE,
                f"job folder {folder} is gone",
                status=JobStatus.ABANDONED,
                provenance=prov,
            )
        out = folder / "output.json"
        if out.exists():
            with contextlib.suppress(OracleError):  # a batch job's result names its scheduler job
                native = (job_meta(folder) or {}).get("native_id")
                prov |= {"native_id": native} if native else {}
            return parse_output(h, out, prov, log, self.calibration)
        if (folder / "cancelled").exists():
            return Result(h, JobStatus.CANCELLED, message="cancelled", provenance=prov, log=log)
        meta = job_meta(folder)
        if meta is None:
            lock = folder / "launch.lock"
            if lock_lost(lock, LAUNCH_GRACE_S):
                return Result.failure(
                    h,
                    ErrorClass.INFRASTRUCTURE,
                    "the process starting this job died before recording it",
                    provenance=prov,
                )
            if lock.exists():  # another process is starting it right now
                return Result(h, JobStatus.PENDING, provenance=prov, log=log)
            if (folder / "input.json").exists():
                why = f"queued: {self.hold.reason}" if self.hold.reason else "queued for a free slot"
                return Result(h, JobStatus.PENDING, message=why, provenance=prov, log=log)
            return Result.failure(
                h, ErrorClass.INFRASTRUCTURE, f"job folder {folder} has no input.json", provenance=prov
            )
        watch = self.runner.watch(folder, meta)
        prov |= watch.provenance
        if watch.status in (JobStatus.PENDING, JobStatus.RUNNING):
            return Result(h, watch.status, provenance=prov, log=log)
        if watch.status is JobStatus.CANCELLED:
            return Result(h, JobStatus.CANCELLED, message=watch.message, provenance=prov, log=log)
        return Result.failure(
            h,
            ErrorClass.INFRASTRUCTURE,
            watch.message,
            status=watch.status,
            provenance=prov,
            log=str(folder / watch.log),
        )

    def _with_strain_energy(self, result: Result) -> Result:
        """A completed result with ``strain_energy`` (eV per formula unit above the unstrained
        cell's energy): RUNNING while that reference is queued or running, final without it
        (saying why) when the reference gave no energy (`oracles.gpaw_reference`)."""
        if self._reference is None or not result.ok or result.values is None or "energy" not in result.values:
            return result
        reference, why, folder = self._reference.energy(Path(result.handle.workdir or ""), self._status)
        prov = dict(result.provenance or {})
        if why is not None:
            return replace(result, provenance=prov | {"strain_energy": f"no strain energy: {why}"})
        if reference is None:
            waiting = f"waiting for the unstrained cell's energy ({folder.name})"
            return Result(result.handle, JobStatus.RUNNING, message=waiting, provenance=prov, log=result.log)
        values = dict(result.values) | {"strain_energy": result.values["energy"] - reference}
        return replace(result, values=values, provenance=prov | {"reference_energy_eV_per_fu": reference})


def _registered(name: str) -> Material | None:
    """The material registered as ``name``, or None (a job process would not find it either)."""
    try:
        return get_material(name)
    except UnknownNameError:
        return None
