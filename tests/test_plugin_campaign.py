"""A plugin package, installed with pip, runs a campaign: its material, oracle and generator.

``tests/plugins/innloop_demo_plugin`` declares a three-parameter recipe that is not a
crystal, a closed-form oracle measuring it and a generator, through entry points only;
``tests/plugins/innloop_broken_plugin`` declares two that cannot be imported. Both are
installed with pip into a temporary folder (``--target``) that only the subprocesses see
on their ``PYTHONPATH``, so neither the shared virtual environment nor the tests running
beside this one change. Then ``innloop run`` runs a campaign naming the plugin's material,
oracle and generator (a fresh ``HOME`` and ``PREFECT_HOME``, as in
``tests/agent/cli/test_cli_run.py``), and ``innloop doctor`` lists the plugins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.testing.backends import QUICK_MODELS
from agent.testing.kills import ENV

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"
INNLOOP = str(Path(sys.executable).parent / "innloop")  # the console script a user runs

CAMPAIGN = """
name = "demo-plugin"
material = "demo_blend"
seed = 1
[[targets]]
value = 0.5
window = 0.04
hits = 3
[[targets]]
value = 0.9
window = 0.04
hits = 3
[oracle]
name = "demo_formula"
[initial]
random = 12
[loop]
batch_size = 4
samples_per_target = 200
[budget]
oracle_calls = 60
""" + QUICK_MODELS.replace("[models]", '[models]\ngenerator = "demo_cinn"')


def _install(tmp_path: Path) -> Path:
    """pip-install both plugin packages into ``tmp_path/site``; built from copies, so no
    build folder or egg-info lands in the repository."""
    site, src = tmp_path / "site", tmp_path / "src"
    copies = [shutil.copytree(PLUGINS / name, src / name) for name in ("innloop_demo_plugin", "innloop_broken_plugin")]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    env = os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [*pip, "--target", str(site), *map(str, copies)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return site


def _env(tmp_path: Path, site: Path) -> dict[str, str]:
    """A new, empty home and Prefect home; the plugins' folder first on the path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "INNLOOP_", "RAY_"))}
    path = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return env | {"HOME": str(home), "PREFECT_HOME": str(home / ".prefect"), "PYTHONPATH": path} | ENV


@pytest.mark.slow
def test_an_installed_plugin_runs_a_campaign(tmp_path: Path) -> None:
    site = _install(tmp_path)
    assert {p.name for p in site.glob("*.dist-info")} == {
        "innloop_demo_plugin-0.1.0.dist-info",
        "innloop_broken_plugin-0.0.1.dist-info",
    }
    env = _env(tmp_path, site)
    work = tmp_path / "work"
    work.mkdir()
    (work / "demo.toml").write_text(CAMPAIGN)

    doctor = subprocess.run(
        [INNLOOP, "doctor", "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert doctor.returncode == 0, doctor.stderr[-3000:]  # a broken plugin is a warning, not a failure
    found = json.loads(doctor.stdout)["plugins"]
    assert found["materials"]["found"] == {"demo_blend": "innloop-demo-plugin 0.1.0"}
    assert found["oracles"]["found"]["demo_formula"] == "innloop-demo-plugin 0.1.0"  # beside innloop's own recipe
    assert found["generators"]["found"] == {"demo_cinn": "innloop-demo-plugin 0.1.0"}
    broken = found["materials"]["problems"]["broken_material"]
    assert "innloop-broken-plugin 0.0.1" in broken and "needs libdemo.so" in broken
    assert "innloop_missing_dependency" in found["oracles"]["problems"]["broken_oracle"]

    run = subprocess.run(
        [INNLOOP, "run", "demo.toml", "--state", str(tmp_path / "state")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert "demo-plugin: every target has its diverse hits" in run.stdout, run.stdout
    assert "temperature (K)" in run.stdout and "score" in run.stdout

    campaign = tmp_path / "state" / "demo-plugin"
    records = [json.loads(line) for line in (campaign / "ledger.jsonl").read_text().splitlines()]
    assert 12 < len(records) <= 60  # the seed designs, then batches the models proposed
    for rec in records:
        result = rec["result"]
        assert result["handle"]["oracle"] == "demo_formula" and result["status"] == "completed"
        assert result["provenance"]["plugin"] == "innloop-demo-plugin"
        assert set(result["handle"]["design"]) == {"temperature", "ratio", "hours"}
        assert set(result["values"]) == {"score"}
    weights = sorted(campaign.glob("iterations/*/generator.pt"))
    assert weights, "the plugin's generator was never trained"

    status = subprocess.run(
        [INNLOOP, "status", "demo-plugin", "--state", str(tmp_path / "state"), "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr[-3000:]
    summary = json.loads(status.stdout)
    assert summary["done"] and summary["oracle"] == "demo_formula" and summary["oracle_calls"] == len(records)
    assert [t["hits"] >= t["wanted"] for t in summary["targets"]] == [True, True]

    # the plugin's generator reads its own weight files back (the kind they carry is the plugin's name)
    check = "import sys; from generators import load_generator as g; print(g(sys.argv[1], kind='demo_cinn').name)"
    loaded = subprocess.run(
        [sys.executable, "-c", check, str(weights[-1])], env=env, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0 and loaded.stdout.strip() == "demo_cinn", loaded.stderr[-3000:]
