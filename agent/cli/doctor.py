"""``innloop doctor``: what works on this machine, and how to install what does not.

innloop leans on several heavy components (torch, a Prefect API, Ray) and on optional
ones that only some campaigns need (GPAW for local DFT, SLURM through psij for VASP,
Chromium for the UI test). When one is missing the failure shows up late, deep inside a
campaign; this module checks each one up front, in a few seconds, and prints one row per
component with the README's install command for whatever is missing. A check never
raises: a broken probe is itself a row. The exit status is 1 only when a core component
(Python, torch, Prefect, Ray) is broken, so scripts can gate on it; ``--deep`` also
starts a temporary Prefect server and a one-CPU Ray to prove they really come up.

The plugins row loads every installed plugin (`agent.core.plugins`: materials, oracles
and generators of other packages) and lists them per registry; a broken or clashing one
is a warning with its one-line reason, since only the campaigns that name it need it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from agent.core.plugins import distribution

__all__ = ["Check", "innloop_version", "main", "render", "run_checks"]

Status = Literal["ok", "warn", "missing"]
Probe = Callable[[bool], tuple[Status, str, str]]  # deep -> (status, detail, hint)

PIP_INSTALL = '.venv/bin/pip install -e ".[dev]"'
PREFECT_HINT = "prefect server start; export PREFECT_API_URL=http://127.0.0.1:4200/api (or unset it)"
CHROMIUM_FALLBACKS: tuple[str, ...] = ("/usr/bin/chromium",)
ELEMENTS = ("Mo", "S")  # the setups the shipped MoS2 campaigns need


@dataclass(frozen=True)
class Check:
    """One row: a component, whether it works here, what was found, how to fix it."""

    name: str
    status: Status
    detail: str
    hint: str
    core: bool


def innloop_version() -> str:
    """The installed distribution's version, else the source tree's pyproject.toml."""
    try:
        return importlib.metadata.version("innloop")
    except importlib.metadata.PackageNotFoundError:
        try:
            with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as fh:
                return str(tomllib.load(fh)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python(deep: bool) -> tuple[Status, str, str]:
    v = sys.version_info
    ok = (v.major, v.minor) >= (3, 11)
    hint = "" if ok else f"Python >= 3.11: python3.11 -m venv .venv && {PIP_INSTALL}"
    return ("ok" if ok else "missing"), f"{v.major}.{v.minor}.{v.micro} ({sys.executable})", hint


def _torch(deep: bool) -> tuple[Status, str, str]:
    hint = f'pip install "torch>=2.4,<2.14" --index-url https://download.pytorch.org/whl/cpu && {PIP_INSTALL}'
    try:
        import torch  # the check is whether it imports: never at the top
    except Exception as exc:
        return "missing", f"not importable ({type(exc).__name__}: {exc})", hint
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        where = f"CUDA {torch.version.cuda}: {len(names)} GPU(s): {', '.join(names)}"
    else:
        where = "CPU only (no CUDA device)"
    return "ok", f"{torch.__version__}, {where}", ""


def _prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def _prefect_api_url() -> tuple[str | None, str]:
    """PREFECT_API_URL from the environment, else from the active Prefect profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "PREFECT_API_URL"
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or _prefect_home() / "profiles.toml").expanduser()
    try:
        with open(path, "rb") as fh:
            profiles = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None, ""
    name = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(name, {}).get("PREFECT_API_URL")
    return (str(url), f"profile {name!r}") if url else (None, "")


def _prefect(deep: bool) -> tuple[Status, str, str]:
    import httpx  # Prefect's own client: present exactly when Prefect is

    version = _version("prefect")
    if version is None:
        return "missing", "prefect is not installed", PIP_INSTALL
    url, source = _prefect_api_url()
    if url:
        try:
            resp = httpx.get(url.rstrip("/") + "/health", timeout=3.0)
        except httpx.HTTPError as exc:
            return "missing", f"{url} ({source}) unreachable: {type(exc).__name__}: {exc}", PREFECT_HINT
        if resp.status_code != 200:
            return "missing", f"{url} ({source}): /health answered HTTP {resp.status_code}", PREFECT_HINT
        return "ok", f"prefect {version}, API {url} ({source}) reachable", ""
    home = _prefect_home()
    existing = next((p for p in (home, *home.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return "missing", f"prefect {version}, PREFECT_HOME {home} is not writable", PREFECT_HINT
    if not deep:
        return "ok", f"prefect {version}, no API set: a temporary server starts (PREFECT_HOME {home})", ""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.server.api.server import SubprocessASGIServer  # Prefect only for --deep

    server = SubprocessASGIServer()
    try:
        server.start(timeout=90)
        resp = httpx.get(f"{server.api_url}/health", timeout=5.0)
        state = "answered" if resp.status_code == 200 else f"answered HTTP {resp.status_code}"
    finally:
        server.stop()
    ok = resp.status_code == 200
    return (
        ("ok" if ok else "missing"),
        f"prefect {version}, a temporary server started and {state}",
        ("" if ok else PREFECT_HINT),
    )


def _ray(deep: bool) -> tuple[Status, str, str]:
    hint = f"{PIP_INSTALL} (or run campaigns with --no-ray)"
    try:
        import ray  # the check is whether it imports
    except Exception as exc:
        return "missing", f"not importable ({type(exc).__name__}: {exc})", hint
    if not deep:
        return "ok", f"{ray.__version__} importable (--deep starts a local Ray)", ""
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        cpus = ray.cluster_resources().get("CPU", 0)
    finally:
        ray.shutdown()
    return "ok", f"{ray.__version__}, a local Ray started ({cpus:g} CPU) and shut down", ""


def _gpaw(deep: bool) -> tuple[Status, str, str]:
    hint = "scripts/install_gpaw.sh .venv"
    try:
        import gpaw  # optional (scripts/install_gpaw.sh): the check is whether it imports
    except Exception as exc:
        return "missing", f"not importable ({type(exc).__name__}: {exc})", hint
    paths = [Path(p) for p in getattr(gpaw, "setup_paths", [])]
    missing = [e for e in ELEMENTS if not any(any(p.glob(f"{e}.PBE*")) for p in paths if p.is_dir())]
    where = ", ".join(str(p) for p in paths) or "no setup path"
    if missing:
        return "missing", f"gpaw {gpaw.__version__}, no PBE setups for {', '.join(missing)} in {where}", hint
    return "ok", f"gpaw {gpaw.__version__}, PBE setups for {', '.join(ELEMENTS)} in {where}", ""


def _tool_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def _slurm(deep: bool) -> tuple[Status, str, str]:
    hint = "scripts/install_slurm.sh"
    try:
        from psij import JobExecutor  # the check is whether it imports

        executors = sorted(JobExecutor.get_executor_names())
        found = f"psij executors: {', '.join(executors)}"
    except Exception as exc:
        return "missing", f"psij not importable ({type(exc).__name__}: {exc})", PIP_INSTALL
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        return "missing", f"{found}; sbatch not on PATH", hint
    if "slurm" not in executors:
        return "warn", f"{found}; sbatch at {sbatch} but psij has no slurm executor", PIP_INSTALL
    return "ok", f"{found}; {_tool_version(sbatch) or 'sbatch'} at {sbatch}", ""


def _chromium(deep: bool) -> tuple[Status, str, str]:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    found = found or next((p for p in CHROMIUM_FALLBACKS if os.access(p, os.X_OK)), None)
    if found is None:
        return "missing", "chromium not on PATH (only the Prefect UI test needs it)", "scripts/install_chromium.sh"
    return "ok", f"{_tool_version(found) or 'chromium'} at {found}", ""


def plugin_report() -> dict[str, dict[str, dict[str, str]]]:
    """Per registry, ``{"found": {name: its distribution}, "problems": {name: why}}``, every plugin loaded."""
    import generators  # the registries themselves: torch (checked above) and the oracles
    import oracles
    from agent.core.materials import base as materials

    out = {}
    for kind, group in (
        ("materials", materials.PLUGINS),
        ("oracles", oracles.PLUGINS),
        ("generators", generators.PLUGINS),
    ):
        loaded, problems = group.load_all()
        found = {name: distribution(group.entry_points(name)[0]) for name in loaded}
        out[kind] = {"found": found, "problems": problems}
    return out


def _plugins(deep: bool) -> tuple[Status, str, str]:
    report = plugin_report()
    parts = [
        f"{kind}: {', '.join(f'{name} ({dist})' for name, dist in sorted(r['found'].items())) or 'none'}"
        for kind, r in report.items()
    ]
    problems = [why for r in report.values() for why in r["problems"].values()]
    if problems:
        hint = "fix or uninstall the broken plugins' packages (pip uninstall DISTRIBUTION)"
        return "warn", "; ".join(parts) + "; broken: " + " | ".join(problems), hint
    return "ok", "; ".join(parts), ""


PROBES: list[tuple[str, bool, Probe]] = [
    ("Python", True, _python),
    ("torch", True, _torch),
    ("Prefect", True, _prefect),
    ("Ray", True, _ray),
    ("GPAW", False, _gpaw),
    ("SLURM", False, _slurm),
    ("Chromium", False, _chromium),
    ("Plugins", False, _plugins),
]


def run_checks(deep: bool = False) -> list[Check]:
    """Every probe in order; an exception inside a probe becomes a ``missing`` row."""
    rows = []
    for name, core, probe in PROBES:
        try:
            status, detail, hint = probe(deep)
        except Exception as exc:
            status, detail, hint = "missing", f"check failed: {type(exc).__name__}: {exc}", ""
        rows.append(Check(name, status, detail, hint, core))
    return rows


def core_ok(rows: list[Check]) -> bool:
    return all(r.status != "missing" for r in rows if r.core)


def render(rows: list[Check]) -> None:
    """An aligned table on stdout (colours only on a terminal)."""
    from rich.console import Console  # only for the human-readable table, not --json
    from rich.table import Table

    colour = {"ok": "green", "warn": "yellow", "missing": "red"}
    table = Table(title=f"innloop {innloop_version()}", title_justify="left")
    table.add_column("component", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("to install", overflow="fold")
    for r in rows:
        name = r.name if r.core else f"{r.name} (optional)"
        table.add_row(name, f"[{colour[r.status]}]{r.status}[/]", r.detail, r.hint)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if core_ok(rows):
        console.print("core components work; optional ones are needed only by the campaigns that use them")
    else:
        console.print("[red]a core component is broken[/]: innloop run will fail until it is fixed")


def main(as_json: bool = False, deep: bool = False) -> int:
    """Run the checks and print them; 0 when the core works, else 1."""
    rows = run_checks(deep)
    if as_json:
        out: dict[str, Any] = {"version": innloop_version(), "core_ok": core_ok(rows)}
        out["checks"] = [asdict(r) for r in rows]
        try:
            out["plugins"] = plugin_report()  # loaded by the plugins row already: cached
        except Exception as exc:  # as in run_checks: the report never raises
            out["plugins"] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out, indent=2))
    else:
        render(rows)
    return 0 if core_ok(rows) else 1
