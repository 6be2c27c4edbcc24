"""An instrument or robot that speaks SiLA 2: each design is one observable command execution.

SiLA 2 is the laboratory's instrument standard (gRPC underneath). An instrument that offers
a feature with an observable command taking a design's parameters and returning the
measured value(s) becomes a campaign's oracle through settings alone:

- ``feature`` and ``command``: the identifiers in the instrument's feature definition;
- ``parameters``: design column -> command parameter (default: the column in PascalCase,
  ``efield`` -> ``Efield``), with ``parameter_scale`` (column -> factor) where the
  instrument wants another unit (value sent = design value x factor);
- ``responses``: response identifier -> value name (default: the target's name in
  PascalCase -> the target), with ``response_scale`` (value name -> factor) for the way back;
- ``address``, ``port``, and ``insecure`` or ``root_certs_file`` for TLS.

The command execution UUID the instrument hands back is the job's native id: a campaign
killed while the instrument measures re-attaches to the running execution by its UUID and
never starts it again. Each UUID is also appended (fsynced) to ``started.jsonl`` in the work
folder the moment the instrument confirms it, so `adopt` finds the executions of a submit
whose handles were never saved.

Outcomes: a defined execution error of the command (the instrument's own "the sample could
not be measured") is a physics failure, recorded and not retried; an undefined one, or an
execution the instrument no longer knows (it restarted, or the execution's lifetime ran
out), is an infrastructure failure, re-sent. An instrument that cannot be reached is an
outage (`OracleError`): the jobs wait in flight. SiLA 2 has no standard way to cancel a
running command without the optional CancelController feature: the oracle declares
`oracles.base.KeepsRunning`, so a job past ``retry.job_timeout_s`` is waited for rather than
cancelled and sent again (a second execution of the same sample), and `cancel` only forgets it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from agent.core.materials import Material, as_material
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
    designs_to_rows,
    newest_per_design,
    resolve_path_settings,
)

__all__ = ["Sila2Oracle", "pascal", "use_pure_python_protobuf"]

STARTED = "started.jsonl"


PURE = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


def use_pure_python_protobuf() -> bool:
    """Ask for protobuf's pure-Python implementation, which the ``sila2`` package needs (it
    registers its framework's proto file twice, which protobuf's default implementation
    refuses). It must be chosen before anything imports protobuf (Ray does): returns whether
    it is, or will be, the one in use."""
    if "google.protobuf" not in sys.modules:
        os.environ[PURE] = "python"
        return True
    from google.protobuf.internal import api_implementation  # loaded already: only asked which it is

    return bool(api_implementation.Type() == "python")


def pascal(name: str) -> str:
    """A name as a SiLA identifier: ``efield`` -> ``Efield``, ``band_gap`` -> ``BandGap``."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


class Sila2Oracle:
    """Measures designs with a SiLA 2 server's observable command (see the module)."""

    name = "sila2"
    cancels: Literal[False] = False  # `oracles.base.KeepsRunning`: a job past its time limit is waited for

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 50052,
        feature: str = "DesignMeasurement",
        command: str = "Measure",
        parameters: Mapping[str, str] | None = None,
        responses: Mapping[str, str] | None = None,
        parameter_scale: Mapping[str, float] | None = None,
        response_scale: Mapping[str, float] | None = None,
        insecure: bool = False,
        root_certs_file: str | None = None,
        workdir: str | Path | None = None,
        material: str | Material = "mos2",
    ) -> None:
        mat = as_material(material)
        self.space, self.address, self.port = mat.space, str(address), int(port)
        self.feature, self.command = str(feature), str(command)
        self.parameters = {n: pascal(n) for n in self.space.names} | dict(parameters or {})
        self.responses = dict(responses or {pascal(mat.target): mat.target})
        self.parameter_scale = {str(k): float(v) for k, v in (parameter_scale or {}).items()}
        self.response_scale = {str(k): float(v) for k, v in (response_scale or {}).items()}
        wrong = sorted(set(self.parameters) - set(self.space.names))
        wrong += sorted(set(self.parameter_scale) - set(self.space.names))
        wrong += sorted(set(self.response_scale) - set(self.responses.values()))
        if wrong:
            raise OracleError(f"sila2 oracle: {wrong} name no design column (parameters) or value (responses)")
        if insecure and root_certs_file:
            raise OracleError("sila2 oracle: give insecure = true or root_certs_file, not both")
        self.insecure, self.root_certs_file = bool(insecure), root_certs_file
        if not self.insecure and root_certs_file is not None and not Path(root_certs_file).is_file():
            raise OracleError(f"sila2 oracle: root_certs_file {root_certs_file} does not exist")
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "sila2"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._client: Any = None
        self._lock = threading.Lock()
        self._done: dict[str, Result] = {}  # outcomes read by `poll`, handed out by `results`
        use_pure_python_protobuf()  # as early as this process allows (`innloop run` asks before Ray loads)

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``workdir`` and ``root_certs_file`` absolute against ``base``."""
        return resolve_path_settings(settings, ("workdir", "root_certs_file"), base)

    def value_names(self) -> frozenset[str]:
        """The values its responses become (`oracles.base.NamesValues`)."""
        return frozenset(self.responses.values())

    # -- the protocol ------------------------------------------------------------------
    def submit(self, designs: Any) -> list[Handle]:
        rows = designs_to_rows(self.space, designs)
        cmd = self._command()
        handles = []
        for row in rows:
            args = {self.parameters[n]: float(v) * self.parameter_scale.get(n, 1.0) for n, v in row.items()}
            instance = self._call(lambda a=args: cmd(**a))
            uuid = str(instance.execution_uuid)
            instance.cancel_execution_info_subscription()  # `poll` asks for results; no stream per job
            h = Handle(
                self.name, f"sila2-{uuid}", row, native_id=uuid, workdir=str(self.workdir), submitted_at=time.time()
            )
            self._started(h)
            handles.append(h)
        return handles

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        check_own(self.name, handles)
        out = []
        for h in handles:
            if h.job_id not in self._done:
                result = self._outcome(h)
                if result.status.terminal:
                    self._done[h.job_id] = result
                out.append(result.status)
            else:
                out.append(self._done[h.job_id].status)
        return out

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        return [self._done.pop(h.job_id) if h.job_id in self._done else self._outcome(h) for h in handles]

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)  # no standard cancel without CancelController: let it finish, forget it
        for h in handles:
            self._done.pop(h.job_id, None)

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the newest execution started at or after ``since`` (`oracles.base.Adopts`)."""
        path = self.workdir / STARTED
        found = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                h = Handle.from_json(json.loads(line))
            except (ValueError, OracleError):
                continue  # a torn last line: that execution's confirmation never fully arrived
            if h.submitted_at >= since:
                found.append(h)
        return newest_per_design(designs_to_rows(self.space, designs), found)

    # -- SiLA 2 --------------------------------------------------------------------------
    def _connect(self) -> Any:
        if not use_pure_python_protobuf():
            raise OracleRefused(
                "sila2: the SiLA 2 client needs protobuf's pure-Python implementation, and this process loaded "
                f"another one first (Ray does): run it through `innloop run`, or set {PURE}=python before Python starts"
            )
        from sila2.client import SilaClient  # the SiLA 2 stack (grpc) only for a campaign that uses it
        from sila2.framework.errors.sila_connection_error import SilaConnectionError

        with self._lock:
            if self._client is None:
                certs = None if self.root_certs_file is None else Path(self.root_certs_file).read_bytes()
                try:
                    self._client = SilaClient(self.address, self.port, insecure=self.insecure, root_certs=certs)
                except SilaConnectionError as exc:
                    raise OracleError(f"sila2: cannot reach {self.address}:{self.port}: {exc}") from None
            return self._client

    def _command(self) -> Any:
        """The client's observable command, or `OracleRefused` naming what the server offers instead."""
        client = self._connect()  # first: it says so when this process cannot load the SiLA 2 stack
        from sila2.client.client_observable_command import ClientObservableCommand  # see `_connect`

        features = client._features  # the features the server declared, by identifier (SiLAService first)
        if self.feature not in features:
            offered = ", ".join(sorted(k for k in features if k != "SiLAService")) or "none"
            where = f"{self.address}:{self.port}"
            raise OracleRefused(f"sila2: {where} offers no feature {self.feature!r} (it offers {offered})")
        cmd = getattr(features[self.feature], self.command, None)
        if not isinstance(cmd, ClientObservableCommand):
            raise OracleRefused(f"sila2: feature {self.feature!r} has no observable command {self.command!r}")
        return cmd

    def _call(self, fn: Any) -> Any:
        """Run one call; an unreachable server is an outage, and the next call connects afresh."""
        from sila2.framework.errors.sila_connection_error import SilaConnectionError  # see `_connect`

        try:
            return fn()
        except SilaConnectionError as exc:
            self._client = None
            raise OracleError(f"sila2: {self.address}:{self.port} unreachable: {exc}") from None

    def _outcome(self, h: Handle) -> Result:
        """The execution's state, read with one ``<Command>_Result`` call (no stream per job)."""
        cmd = self._command()  # first: see `_command`
        from sila2.client.utils import call_rpc_function  # see `_connect`
        from sila2.framework.errors.command_execution_not_finished import CommandExecutionNotFinished
        from sila2.framework.errors.defined_execution_error import DefinedExecutionError
        from sila2.framework.errors.invalid_command_execution_uuid import InvalidCommandExecutionUUID
        from sila2.framework.errors.undefined_execution_error import UndefinedExecutionError

        wrapped, feature = cmd._wrapped_command, cmd._parent_feature
        message = feature._pb2_module.SiLAFramework__pb2.CommandExecutionUUID(value=h.native_id)
        rpc = getattr(feature._grpc_stub, f"{self.command}_Result")
        prov = {"instrument": f"{self.address}:{self.port}", "execution_uuid": h.native_id, "command": self.command}
        try:
            reply = self._call(lambda: call_rpc_function(rpc, message, None, feature._parent_client, wrapped))
        except CommandExecutionNotFinished:
            return Result(h, JobStatus.RUNNING)
        except DefinedExecutionError as exc:
            return Result.failure(h, ErrorClass.PHYSICS, f"{exc.identifier}: {exc.message}", provenance=prov)
        except InvalidCommandExecutionUUID:
            why = "the instrument no longer knows this execution (it restarted, or the execution's lifetime ran out)"
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, why, status=JobStatus.ABANDONED, provenance=prov)
        except UndefinedExecutionError as exc:
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, f"instrument error: {exc.message}", provenance=prov)
        got = wrapped.responses.to_native_type(reply)._asdict()
        missing = sorted(set(self.responses) - set(got))
        if missing:
            raise OracleRefused(f"sila2: command {self.command!r} returned no {missing} (it returns {sorted(got)})")
        values = {v: float(got[r]) * self.response_scale.get(v, 1.0) for r, v in self.responses.items()}
        return Result(h, JobStatus.COMPLETED, values=values, provenance=prov)

    def _started(self, h: Handle) -> None:
        with open(self.workdir / STARTED, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(h.to_json()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
