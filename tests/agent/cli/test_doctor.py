"""`innloop doctor` and `innloop --version`: every row shows, missing parts carry their
install command, a broken core part (not an optional one) makes the exit status 1, and
installed plugins are listed per registry, a broken one as a warning with its reason."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.cli import doctor
from agent.cli.main import main
from agent.core import plugins

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["Python", "torch", "Prefect", "Ray", "GPAW", "SLURM", "Chromium", "Plugins"]


def _doctor_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = main(["doctor", "--json"])
    return rc, json.loads(capsys.readouterr().out)


def _row(report: dict, name: str) -> dict:
    return next(r for r in report["checks"] if r["name"] == name)


@pytest.fixture
def no_prefect_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No API configured anywhere: neither the environment nor a Prefect profile."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))


def test_table_lists_every_row(capsys: pytest.CaptureFixture[str], no_prefect_api: None) -> None:
    rc = main(["doctor"])
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "status" in out and "to install" in out
    assert rc == 0, out  # the core (Python, torch, Prefect, Ray) works wherever the tests run


def test_json_parses(capsys: pytest.CaptureFixture[str], no_prefect_api: None) -> None:
    rc, report = _doctor_json(capsys)
    assert rc == 0
    assert report["version"] == doctor.innloop_version()
    assert report["core_ok"] is True
    assert [r["name"] for r in report["checks"]] == NAMES
    assert {r["name"] for r in report["checks"] if r["core"]} == {"Python", "torch", "Prefect", "Ray"}
    for r in report["checks"]:
        assert r["status"] in {"ok", "warn", "missing"}
        assert r["detail"]
        assert (r["status"] == "ok") == (r["hint"] == ""), r


def test_missing_optional_parts_show_their_install_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_prefect_api: None
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setattr(doctor, "CHROMIUM_FALLBACKS", ())
    rc, report = _doctor_json(capsys)
    assert rc == 0  # optional parts never fail the doctor
    slurm, chromium = _row(report, "SLURM"), _row(report, "Chromium")
    assert slurm["status"] == "missing" and "sbatch not on PATH" in slurm["detail"]
    assert slurm["hint"] == "scripts/install_slurm.sh"
    assert chromium["status"] == "missing" and chromium["hint"] == "scripts/install_chromium.sh"

    assert main(["doctor"]) == 0
    table = capsys.readouterr().out
    assert "scripts/install_slurm.sh" in table and "scripts/install_chromium.sh" in table


def test_unreachable_prefect_api_is_a_broken_core(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    rc, report = _doctor_json(capsys)
    prefect = _row(report, "Prefect")
    assert prefect["status"] == "missing"
    assert "http://127.0.0.1:9/api" in prefect["detail"] and "unreachable" in prefect["detail"]
    assert "prefect server start" in prefect["hint"] and "PREFECT_API_URL" in prefect["hint"]
    assert rc == 1 and report["core_ok"] is False

    assert main(["doctor"]) == 1
    assert "a core component is broken" in capsys.readouterr().out


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"true" if ok else b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_reachable_prefect_api_is_ok(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, health_server: str
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", health_server)
    rc, report = _doctor_json(capsys)
    prefect = _row(report, "Prefect")
    assert prefect["status"] == "ok" and "reachable" in prefect["detail"], prefect
    assert rc == 0


def test_unwritable_prefect_home_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_prefect_api: None, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PREFECT_HOME", str(blocker / "prefect"))  # its parent is a file
    rc, report = _doctor_json(capsys)
    assert _row(report, "Prefect")["status"] == "missing"
    assert rc == 1


def test_a_probe_that_raises_becomes_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(deep: bool) -> tuple[doctor.Status, str, str]:
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(doctor, "PROBES", [("Ray", True, boom), ("GPAW", False, boom)])
    rows = doctor.run_checks()
    assert [(r.name, r.status) for r in rows] == [("Ray", "missing"), ("GPAW", "missing")]
    assert "probe exploded" in rows[0].detail
    assert not doctor.core_ok(rows)
    assert doctor.core_ok(rows[1:])  # an optional part alone never breaks the core


def test_plugins_are_listed_and_a_broken_one_is_a_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_prefect_api: None
) -> None:
    installed = {
        "innloop.oracles": [
            importlib.metadata.EntryPoint("mock_again", "oracles.mock:MockOracle", "innloop.oracles"),
            importlib.metadata.EntryPoint("gone", "innloop_no_such_module:Oracle", "innloop.oracles"),
        ],
    }
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda *, group: installed.get(group, []))
    plugins.reset()
    try:
        rc, report = _doctor_json(capsys)
    finally:
        plugins.reset()
    row = _row(report, "Plugins")
    assert rc == 0 and row["status"] == "warn" and not row["core"]  # a broken plugin never fails the doctor
    assert "oracles: mock_again (unknown distribution)" in row["detail"] and "materials: none" in row["detail"]
    assert "gone = innloop_no_such_module:Oracle" in row["detail"] and "ModuleNotFoundError" in row["detail"]
    assert "pip uninstall" in row["hint"]
    assert report["plugins"]["oracles"]["found"] == {"mock_again": "unknown distribution"}
    assert list(report["plugins"]["oracles"]["problems"]) == ["gone"]


def test_no_plugins_is_ok(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda *, group: [])
    plugins.reset()
    try:
        row = next(r for r in doctor.run_checks() if r.name == "Plugins")
    finally:
        plugins.reset()
    assert row.status == "ok" and row.detail == "materials: none; oracles: none; generators: none"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"innloop {importlib.metadata.version('innloop')}\n"


def test_version_falls_back_to_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with open(ROOT / "pyproject.toml", "rb") as fh:
        declared = tomllib.load(fh)["project"]["version"]
    assert doctor.innloop_version() == declared


def test_version_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"innloop {doctor.innloop_version()}"
