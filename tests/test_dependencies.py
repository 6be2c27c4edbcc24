"""Every third-party module the package imports is declared in pyproject.toml.

`deptry` (configured in ``[tool.deptry]``) reads the imports of agent/, generators/,
oracles/, flows/, benchmarks/ and scripts/ and compares them with the declared
dependencies: DEP001 (imported, not declared), DEP003 (imported, only there because
another package pulls it in), DEP002 (declared, never imported) and DEP004 (a dev-only
package imported at run time) all fail this test with deptry's own report.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_is_declared() -> None:
    if importlib.util.find_spec("deptry") is None:
        pytest.fail('deptry is not installed: .venv/bin/pip install -e ".[dev]"', pytrace=False)
    proc = subprocess.run(
        [sys.executable, "-m", "deptry", "--no-ansi", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"deptry found undeclared or misplaced dependencies:\n{report}"
    assert "No dependency issues found" in report, report
