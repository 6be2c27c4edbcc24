"""A reference SiLA 2 instrument: the MoS2 emulator behind an observable ``Measure`` command.

What `oracles.sila2` is tested against, and what a lab can point its own client at to see
the mapping work before an instrument is connected. It speaks SiLA 2 over gRPC (the
``sila2`` package's server) on loopback, in a process of its own, so a test can kill the
campaign or the instrument for real:

- the feature (`feature_definition`): ``DesignMeasurement``, one observable command
  ``Measure`` with one Real parameter per design column (``a`` -> ``A``, ``efield`` ->
  ``Efield``), one Real response ``BandGap`` (eV), and the defined execution error
  ``MeasurementFailed``;
- a measurement takes ``latency_s`` (progress reported as it goes), and a design whose
  ``efield`` is at or above ``fail_above`` fails with ``MeasurementFailed``, as a sample
  that will not measure does;
- every execution the server starts is appended to ``executions.jsonl`` in its state folder
  (uuid, design, time), so a test counts at the instrument that nothing ran twice.

``python -m oracles.testing.sila_lab --port P --state-dir D [--latency-s S] [--fail-above F]``
serves until SIGTERM; `start_sila_lab` and `stop_sila_lab` run it from Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from agent.core.materials import get_material
from oracles.emulator import Emulator

__all__ = ["EXECUTIONS", "executions", "feature_definition", "identifier", "start_sila_lab", "stop_sila_lab"]

EXECUTIONS = "executions.jsonl"
FEATURE, COMMAND, RESPONSE, FAILED = "DesignMeasurement", "Measure", "BandGap", "MeasurementFailed"


def identifier(name: str) -> str:
    """A design column's SiLA identifier: ``efield`` -> ``Efield``, ``a_strain`` -> ``AStrain``."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


def _element(tag: str, ident: str, words: str, body: str) -> str:
    return (
        f"<{tag}><Identifier>{ident}</Identifier><DisplayName>{ident}</DisplayName>"
        f"<Description>{escape(words)}</Description>{body}</{tag}>"
    )


def feature_definition(names: Sequence[str], units: dict[str, str]) -> str:
    """The FDL (feature definition XML) of the measuring feature for design columns ``names``."""
    real = "<DataType><Basic>Real</Basic></DataType>"
    params = "".join(
        _element("Parameter", identifier(n), f"design parameter {n} ({units.get(n) or 'no unit'})", real) for n in names
    )
    response = _element("Response", RESPONSE, "the measured band gap (eV)", real)
    errors = f"<DefinedExecutionErrors><Identifier>{FAILED}</Identifier></DefinedExecutionErrors>"
    command = _element(
        "Command", COMMAND, "Measure one design; observable, it reports its progress",
        f"<Observable>Yes</Observable>{params}{response}{errors}",
    )  # fmt: skip
    error = _element("DefinedExecutionError", FAILED, "The sample could not be measured.", "")
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<Feature xmlns="http://www.sila-standard.org" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'SiLA2Version="1.0" FeatureVersion="1.0" Originator="org.innloop" Category="examples" '
        'xsi:schemaLocation="http://www.sila-standard.org '
        'https://gitlab.com/SiLA2/sila_base/raw/master/schema/FeatureDefinition.xsd">'
        f"<Identifier>{FEATURE}</Identifier><DisplayName>Design Measurement</DisplayName>"
        f"<Description>Measures a design of the innloop campaign's space.</Description>{command}{error}</Feature>"
    )


def _serve(port: int, folder: Path, latency_s: float, fail_above: float | None) -> None:
    # the SiLA 2 stack (grpc, lxml) only in the server process
    from sila2.framework import Feature
    from sila2.framework.errors.command_execution_not_finished import CommandExecutionNotFinished
    from sila2.framework.errors.defined_execution_error import DefinedExecutionError
    from sila2.server import FeatureImplementationBase, SilaServer

    logging.getLogger("sila2").setLevel(logging.CRITICAL)  # "not finished yet" is logged as an error there
    # ... and with a traceback by the feature's own logger, on every poll of a running execution
    logging.getLogger(FEATURE).addFilter(
        lambda r: not (r.exc_info and isinstance(r.exc_info[1], CommandExecutionNotFinished))
    )
    folder.mkdir(parents=True, exist_ok=True)  # the README's `--state-dir /tmp/sila-lab` need not exist
    space = get_material("mos2").space
    feature = Feature(feature_definition(space.names, space.units))
    with resources.as_file(resources.files("oracles") / "data" / "mock_mos2.npz") as path:
        model = Emulator.load(path)
    log, lock = folder / EXECUTIONS, threading.Lock()

    class Measuring(FeatureImplementationBase):
        def Measure(self, *values: float, metadata: Any, instance: Any) -> float:
            design = dict(zip(space.names, (float(v) for v in values)))
            with lock, open(log, "a", encoding="utf-8") as fh:  # counted before it runs: a kill loses no count
                fh.write(json.dumps({"uuid": str(instance.execution_uuid), "design": design, "time": time.time()}))
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            instance.begin_execution()
            steps = 10
            for k in range(steps):
                time.sleep(latency_s / steps)
                instance.progress = (k + 1) / steps
            if fail_above is not None and design.get("efield", -np.inf) >= fail_above:
                raise DefinedExecutionError(feature.defined_execution_errors[FAILED], "the sample did not conduct")
            X = space.validate(np.array([[design[n] for n in space.names]]))
            return float(np.round(model.gap(space.to_unit(X))[0], 9))

    server = SilaServer("innloop-lab", "ReferenceInstrument", "innloop's reference SiLA 2 lab", "1.0", "https://x.org")
    server.set_feature_implementation(feature, Measuring(server))
    server.start_insecure("127.0.0.1", port, enable_discovery=False)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    (folder / "ready").write_text(str(os.getpid()))
    print(f"reference SiLA 2 instrument on 127.0.0.1:{port} (insecure); executions counted in {folder / EXECUTIONS}")
    print("stop it with Ctrl-C or SIGTERM", flush=True)
    done.wait()
    server.stop(grace_period=1)
    (folder / "ready").unlink(missing_ok=True)


def executions(folder: Path) -> list[dict[str, Any]]:
    """Every execution the server started (``executions.jsonl``), in order."""
    path = folder / EXECUTIONS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_sila_lab(
    folder: Path, *, port: int | None = None, latency_s: float = 0.0, fail_above: float | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """The reference server on 127.0.0.1 (a free port unless given), once it serves; its process and port."""
    (folder / "ready").unlink(missing_ok=True)  # the server makes ``folder`` (tests give a new one)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "oracles.testing.sila_lab", "--port", str(port), "--state-dir", str(folder)]
    cmd += ["--latency-s", str(latency_s)] + ([] if fail_above is None else ["--fail-above", str(fail_above)])
    proc = subprocess.Popen(cmd)
    end = time.monotonic() + 60
    while not (folder / "ready").exists():
        if proc.poll() is not None or time.monotonic() > end:
            stop_sila_lab(proc, kill=True)
            raise RuntimeError(f"the reference SiLA 2 server did not start (exit {proc.returncode})")
        time.sleep(0.1)
    return proc, port


def stop_sila_lab(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state-dir", required=True, help="folder for executions.jsonl")
    p.add_argument("--latency-s", type=float, default=0.0, help="seconds a measurement takes")
    p.add_argument("--fail-above", type=float, help="designs with efield at or above this fail (MeasurementFailed)")
    args = p.parse_args(argv)
    _serve(args.port, Path(args.state_dir), args.latency_s, args.fail_above)
    return 0


if __name__ == "__main__":
    sys.exit(main())
