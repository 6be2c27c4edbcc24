"""Oracles import without torch: a measuring process should not pay for the models.

Each check runs in a fresh interpreter (this one has torch loaded already) and reads
``sys.modules`` afterwards. The mock, the default oracle, is run end to end as well,
since its emulator is the one oracle part that evaluates a network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oracles import available_oracles

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "botorch", "gpytorch", "agent.models", "generators")


def _loaded_after(code: str) -> list[str]:
    """The `HEAVY` modules loaded after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m in {list(HEAVY)!r})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_package_and_its_registry_import_no_torch() -> None:
    code = "import oracles, oracles.base\nprint(oracles.available_oracles())"
    assert _loaded_after(code) == []


@pytest.mark.parametrize("name", available_oracles())
def test_each_back_end_imports_no_torch(name: str) -> None:
    assert _loaded_after(f"import oracles\noracles.oracle_class({name!r})") == []


def test_the_mock_measures_without_torch(tmp_path: Path) -> None:
    code = f"""
from oracles import make_oracle
mock = make_oracle("mock", workdir={str(tmp_path)!r})
handles = mock.submit([[3.16, 3.16, 12.30, 90.0, 90.0, 120.0, 0.0]])
assert 1.0 < mock.results(handles)[0].values["gap"] < 1.6
"""
    assert _loaded_after(code) == []


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    """The check above would pass vacuously if the probe could not see a loaded module."""
    assert {"agent.models", "torch"} <= set(_loaded_after("import agent.models.surrogate"))
