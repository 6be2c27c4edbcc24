"""VASP on a cluster, submitted through psij (SLURM, PBS, LSF, ... or ``local``).

One folder per job under ``workdir`` (INCAR, KPOINTS, POSCAR, POTCAR or POTCAR.spec,
``job.json``, VASP's ``vasp.out``/``vasp.err`` and ``vasprun.xml``); the handle carries
the scheduler's job id (psij's ``native_id``) and the folder, so a restarted campaign
re-attaches with ``executor.attach`` instead of paying for the same DFT twice.

Status and re-attach follow `oracles.scheduler` (shared with the ``gpaw`` oracle's
scheduler mode): ``scheduler.json`` in the job folder keeps the scheduler's final word.

Outcomes:

- scheduler reports a walltime kill (SLURM state TO; psij: "exhausted its time limit")
  -> TIMEOUT, infrastructure;
- job finished, vasprun.xml converged -> COMPLETED with ``{"gap": eV}``; not converged
  -> FAILED, physics; missing/truncated -> FAILED, infrastructure. A job that left the
  scheduler without an exit code and without output was killed from outside (also a
  walltime kill the scheduler had already forgotten): FAILED, infrastructure;
- the scheduler cannot be asked (``squeue`` fails, psij fails the job with "Failed to
  poll") -> no verdict: the last known status stands and the job is re-attached later;
- held by a site limit (below) -> PENDING, saying so;
- folder gone or no native id (and not held) -> ABANDONED.

Job folders. `submit` makes every folder of a batch (inputs only) before the first
``sbatch``; right after the scheduler accepts a job, its ``job.json`` gets the native id,
the design and the time. `adopt(designs, since)` finds jobs from those files: what a
campaign killed between `submit` returning and saving its handles uses to re-attach
instead of submitting again. A kill in the milliseconds between the scheduler accepting
a job and its ``job.json`` being written leaves a folder with inputs and no ``job.json``:
nothing on disk names its scheduler job, so `adopt` does not adopt it (``None``) and the
design is submitted again; the orphan job may still run, once, and its folder is never
read -- no result is ever invented for it.

Site limits. When the scheduler refuses a submission because a per-user or per-account
limit is full (`oracles.scheduler.SiteLimit`, e.g. SLURM's ``QOSMaxSubmitJobPerUserLimit``),
the jobs it accepted stay, and that job and the rest of the batch are *held*: their
``job.json`` says so, their handles have no native id yet, and they are PENDING. Every
`results`/`poll` (from any process) submits held jobs, oldest first, once the site was last
asked `oracles.scheduler.HOLD_S` ago, and writes the native id into ``job.json`` (a ``submit.lock`` created
with O_EXCL keeps two processes from submitting the same one; only jobs recorded under this
oracle's command, executor, queue and account). A held job that the scheduler then refuses
for another reason fails (infrastructure: the loop may send the design again). At submit,
only refusals that are not a site limit undo the batch and raise.

Site settings come from the constructor or ``INNLOOP_VASP_*``: ``COMMAND`` (required,
e.g. ``vasp_std``; split like a shell would) and the scheduler's (`oracles.scheduler`:
``EXECUTOR`` slurm, ``QUEUE``, ``ACCOUNT``, ``WALLTIME_S`` 3600, ``NODES`` 1, ``PPN`` 1,
``LAUNCHER``, ``POLL_S`` 30).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.core.atomic import write_json
from agent.core.materials import Material, as_material
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
)
from oracles.local_jobs import lock_lost, take_lock
from oracles.scheduler import VERDICT, Scheduler, SiteHold, SiteLimit
from oracles.vasp_inputs import has_potcar_library, parse_vasprun, write_inputs

__all__ = ["VaspOracle"]

REFUSED = "refused.json"  # a held job the scheduler then refused for good (not a site limit)
LOCK_GRACE_S = 60.0  # a submit lock this old whose process is gone: the submitter died


class VaspOracle:
    """Settings: see the module docstring. ``incar`` overrides single INCAR tags; ``material``
    (a registered name or a `Material`; any crystal, e.g. the MX2 family) builds the
    structures and carries the field (`oracles.vasp_inputs`, which also sizes the k-point
    mesh to each structure), ``convention`` picks one of its atomic-position conventions
    (default: its first). A material that builds no structure is refused here (`ConfigError`)."""

    name = "vasp"

    def __init__(
        self,
        workdir: str | Path | None = None,
        command: str | Sequence[str] | None = None,
        executor: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        walltime_s: float | None = None,
        nodes: int | None = None,
        ppn: int | None = None,
        launcher: str | None = None,
        poll_interval_s: float | None = None,
        convention: str | None = None,
        incar: dict[str, Any] | None = None,
        material: str | Material = "mos2",
    ) -> None:
        self.material = as_material(material)
        self.material.builder()  # a material that is not a crystal: ConfigError now, not per job
        self.space = self.material.space
        self.convention = self.material.convention(convention)  # one it names, else ConfigError now
        raw = command if command is not None else os.environ.get("INNLOOP_VASP_COMMAND")
        # a program given by a path is made absolute here: the scheduler runs the job in its folder
        self.command = absolute_command(shlex.split(raw) if isinstance(raw, str) else list(raw or []))
        if not self.command:
            raise OracleError(
                "vasp oracle: no VASP command; pass command=... (e.g. 'vasp_std') or set INNLOOP_VASP_COMMAND"
            )
        self.incar = dict(incar or {})
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "vasp"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hold = SiteHold()  # why jobs are held (a site limit), and when to ask the site again
        self.site = Scheduler(
            self.name,
            self.workdir,
            executor=executor,
            queue=queue,
            account=account,
            walltime_s=walltime_s,
            nodes=nodes,
            ppn=ppn,
            launcher=launcher,
            poll_interval_s=poll_interval_s,
        )

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``workdir`` and a ``command`` program given by a path absolute against
        ``base`` (a campaign file's folder)."""
        out = resolve_path_settings(settings, ("workdir",), base)
        command = out.get("command")
        if isinstance(command, str) and command.strip():
            argv = shlex.split(command)
            resolved = absolute_command(argv, base)
            out["command"] = command if resolved == argv else shlex.join(resolved)
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            out["command"] = absolute_command(command, base)
        return out

    # -- protocol -----------------------------------------------------------------------
    def submit(self, designs: Any) -> list[Handle]:
        """Write every job's inputs, then submit them all; if the scheduler refuses one,
        cancel the ones already accepted, remove the batch's folders and raise one
        `OracleError` -- no handle is ever returned for a job that is not queued. A site
        limit is not a refusal: from that job on, the batch is held (module docstring)."""
        rows = designs_to_rows(self.space, designs)
        _ = self.site.executor  # an unknown executor fails here, before anything is written
        folders: list[tuple[str, Path, dict[str, float]]] = []
        incars: list[dict[str, Any]] = []
        try:
            for row in rows:
                job_id = uuid.uuid4().hex[:16]
                folders.append((job_id, self.workdir / job_id, row))
                folders[-1][1].mkdir(parents=True)
                incars.append(write_inputs(folders[-1][1], row, self.material, self.convention, self.incar))
        except BaseException:
            for _, folder, _ in folders:
                shutil.rmtree(folder, ignore_errors=True)
            raise

        handles: list[Handle] = []
        self._submit_held()  # jobs held earlier go first; if the site still says "later", these wait too
        for (job_id, folder, row), incar in zip(folders, incars, strict=True):
            native: str | None = None
            if self.hold.reason is None:
                try:
                    native = self._sbatch(job_id, folder)
                except SiteLimit as exc:  # the site says "later": this job and the rest are held
                    self.hold.hold(exc)
                except OracleError as exc:
                    self.site.cancel_quietly([h.job_id for h in handles if h.native_id])
                    for _, f, _ in folders:
                        shutil.rmtree(f, ignore_errors=True)
                    raise OracleError(f"{exc}; nothing of this batch of {len(rows)} was submitted") from None
            now = time.time()
            meta = {
                "native_id": native,
                "held": native is None,
                **self._job_settings(),
                **{k: v for k, v in self.site.describe().items() if k not in ("executor", "launcher")},
                "incar": incar,
                "potcar": "POTCAR" if has_potcar_library() else "POTCAR.spec",
                "design": row,
                "submitted_at": now,
            }
            write_json(folder / "job.json", meta, indent=1)
            handles.append(Handle(self.name, job_id, row, native_id=native, workdir=str(folder), submitted_at=now))
        return handles

    def _job_settings(self) -> dict[str, Any]:
        """What a job's ``job.json`` records of the settings it is submitted under."""
        site = self.site.describe()
        return {"executor": site["executor"], "command": self.command} | {k: site[k] for k in ("queue", "account")}

    def _sbatch(self, job_id: str, folder: Path) -> str:
        return self.site.submit(job_id, folder, self.command, stdout=folder / "vasp.out", stderr=folder / "vasp.err")

    def _submit_held(self) -> None:
        """Submit held jobs of this work folder, oldest first, until the site says "later"
        again; at most once every ``HOLD_S`` (module docstring, "Site limits")."""
        if not self.hold.ready():
            return
        held = []
        for meta_path in self.workdir.glob("*/job.json"):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                meta = json.loads(meta_path.read_text())
                folder = meta_path.parent
                ours = all(meta.get(k) == v for k, v in self._job_settings().items())  # another campaign's: not ours
                gone = any((folder / f).exists() for f in ("cancelled", "submit.lock", REFUSED))
                if meta.get("held") and ours and not gone:
                    held.append((float(meta["submitted_at"]), folder, meta))
        for _, folder, meta in sorted(held, key=lambda t: t[0]):
            if not take_lock(folder / "submit.lock"):
                continue
            if (folder / "cancelled").exists():  # cancelled while this process took the lock
                continue
            try:
                native = self._sbatch(folder.name, folder)
            except SiteLimit as exc:  # a limit again: still held, asked later
                (folder / "submit.lock").unlink()
                self.hold.hold(exc)
                return
            except OracleError as exc:  # refused for good (a queue or account gone): the job's outcome
                write_json(folder / REFUSED, {"message": str(exc), "at": time.time()})
                continue
            write_json(folder / "job.json", meta | {"native_id": native, "held": False}, indent=1)
            if (folder / "cancelled").exists():  # cancelled while it was being submitted
                with contextlib.suppress(OracleError):
                    self.site.cancel(folder.name, native)

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the newest job whose ``job.json`` has a native id or says it is held, and
        was submitted at or after ``since`` (``None``: it never reached the scheduler; see
        "Job folders" above)."""
        rows = designs_to_rows(self.space, designs)
        found: list[Handle] = []
        for meta_path in self.workdir.glob("*/job.json"):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                meta = json.loads(meta_path.read_text())
                if not (meta.get("native_id") or meta.get("held")) or not isinstance(meta.get("design"), dict):
                    continue
                at = float(meta["submitted_at"])
                if at < since:
                    continue
                design = {str(k): float(v) for k, v in meta["design"].items()}
                folder = meta_path.parent
                native = str(meta["native_id"]) if meta.get("native_id") else None
                found.append(Handle(self.name, folder.name, design, native, str(folder), at))
        return newest_per_design(rows, found)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return [r.status for r in self.results(handles)]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        if any(not h.native_id for h in handles):
            self._submit_held()
        return [self._result(h) for h in handles]

    def cancel(self, handles: Sequence[Handle]) -> None:
        """Cancel through psij; jobs already finished keep their outcome."""
        check_own(self.name, handles)
        for h in handles:
            folder = Path(h.workdir or "")
            native = h.native_id or _native_id(folder)
            if folder.is_dir() and not native:  # held: never submitted from now on
                (folder / "cancelled").touch()
            if not folder.is_dir() or not native or (folder / VERDICT).exists():
                continue
            self.site.cancel(h.job_id, native)
            (folder / "cancelled").touch()

    # -- outcome of one job -------------------------------------------------------------
    def _result(self, h: Handle) -> Result:
        folder = Path(h.workdir or "")
        meta = _job_file(folder)  # read once: the native id, whether held, provenance
        native = h.native_id or (str(meta["native_id"]) if meta.get("native_id") else None)  # held: set later
        if native and not h.native_id:
            h = replace(h, native_id=native)  # its result names the scheduler job
        prov: dict[str, Any] = {"oracle": self.name, "code": "vasp", "native_id": native}
        log = str(folder / "vasp.out")
        if h.workdir and folder.is_dir() and not native and meta.get("held"):
            return self._held_result(h, folder, prov)
        if not h.workdir or not folder.is_dir() or not native:
            why = "has no native id" if not native else f"folder {folder} is gone"
            return Result.failure(
                h, ErrorClass.INFRASTRUCTURE, f"job {h.job_id} {why}", status=JobStatus.ABANDONED, provenance=prov
            )
        if meta:
            prov |= {k: meta.get(k) for k in ("executor", "incar", "walltime_s", "submitted_at")}
        verdict = self.site.verdict(h.job_id, native, folder)
        if verdict is None:
            return Result(h, self.site.status_while_running(h.job_id), provenance=prov, log=log)
        state, exit_code, message = verdict["state"], verdict.get("exit_code"), verdict.get("message") or ""
        prov["exit_code"] = exit_code
        if state == "CANCELED" or (folder / "cancelled").exists():
            return Result(h, JobStatus.CANCELLED, message="cancelled", provenance=prov, log=log)
        if Scheduler.timed_out(verdict):
            msg = f"killed by the scheduler at its wall time of {self.site.walltime_s:g} s ({message})"
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, msg, status=JobStatus.TIMEOUT, provenance=prov, log=log)
        run = parse_vasprun(folder / "vasprun.xml")
        prov |= run.provenance
        if run.converged and run.gap_eV is not None:
            return Result(h, JobStatus.COMPLETED, values={"gap": run.gap_eV}, provenance=prov, log=log)
        msg = run.message or "no value"
        if not (folder / "vasprun.xml").exists():
            if Scheduler.output_due(verdict):  # a shared file system may show it a little later
                return Result(h, JobStatus.RUNNING, message="ended; waiting for vasprun.xml to appear", provenance=prov)
            how = "without an exit code (killed from outside)" if exit_code is None else f"with exit code {exit_code}"
            msg = f"job {native} ended {how} and wrote no vasprun.xml; see {folder / 'vasp.err'}"
        return Result.failure(h, run.error_class or ErrorClass.INFRASTRUCTURE, msg, provenance=prov, log=log)

    def _held_result(self, h: Handle, folder: Path, prov: dict[str, Any]) -> Result:
        if (folder / "cancelled").exists():
            return Result(h, JobStatus.CANCELLED, message="cancelled while held", provenance=prov)
        with contextlib.suppress(OSError, ValueError):
            why = str(json.loads((folder / REFUSED).read_text())["message"])
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, f"held, then refused: {why}", provenance=prov)
        lock = folder / "submit.lock"
        if lock_lost(lock, LOCK_GRACE_S):
            why = "the process submitting this held job died before recording its native id"
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, why, provenance=prov)
        why = f"held: {self.hold.reason}" if self.hold.reason else "held by a site limit; submitted at a later poll"
        return Result(h, JobStatus.PENDING, message=why, provenance=prov)


def _job_file(folder: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((folder / "job.json").read_text())
        if isinstance(meta, dict):
            return meta
    return {}


def _native_id(folder: Path) -> str | None:
    native = _job_file(folder).get("native_id")
    return str(native) if native else None
