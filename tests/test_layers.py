"""The layers hold: import-linter's contracts in ``pyproject.toml`` pass, and every one of
them is checked.

The contracts (``[tool.importlinter]``) say which way imports run between agent.core,
the engines (agent.models, generators, oracles), agent.design, agent.campaign and the
outer layers; that oracles never reach for the loop, the models or the generators; and
that no two sibling modules or packages import each other. A new import that breaks one
fails here with import-linter's own report, naming the import and its line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command as lint; lint()"  # the `lint-imports` command


def _contracts() -> list[dict[str, object]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        found: list[dict[str, object]] = tomllib.load(fh)["tool"]["importlinter"]["contracts"]
    return found


def test_import_contracts_hold() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command as m; m()",
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"an import breaks the layers:\n{report}"
    n = len(_contracts())
    assert f"Contracts: {n} kept, 0 broken." in report, report


def test_the_contracts_cover_every_layer_and_package() -> None:
    contracts = {str(c["type"]): c for c in _contracts()}
    assert {"layers", "forbidden", "acyclic_siblings"} <= set(contracts)
    layers: list[str] = contracts["layers"]["layers"]  # type: ignore[assignment]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {f"agent.{p.name}" for p in (ROOT / "agent").iterdir() if (p / "__init__.py").is_file()}
    packages |= {"generators", "oracles", "flows", "benchmarks"}
    assert packages <= layered, f"not placed in any layer: {sorted(packages - layered)}"
    modules = [p.stem for p in (ROOT / "agent").glob("*.py") if p.stem != "__init__"]
    assert not modules, f"modules at the top of agent/ belong in a subpackage: {modules}"


def _nested_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of each import inside a function that no comment explains.

    An import statement is explained by a comment on its own line, or, for a run of import
    statements one after the other (blank lines between isort's groups allowed), by a comment
    on the run's first line or the line above it.
    """
    lines = path.read_text(encoding="utf-8").splitlines()

    def is_import(n: int) -> bool:  # 1-based line number
        return n >= 1 and lines[n - 1].strip().startswith(("from ", "import "))

    found: list[tuple[int, str]] = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            first = node.lineno
            while True:  # up through the run of imports (isort's blank lines between groups included)
                up = first - 1
                while up >= 1 and not lines[up - 1].strip():
                    up -= 1
                if not is_import(up):
                    break
                first = up
            above = lines[first - 2].strip() if first > 1 else ""
            if "#" in lines[node.lineno - 1] or "#" in lines[first - 1] or above.startswith("#"):
                continue
            name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            found.append((node.lineno, str(name)))
    return found


def test_imports_inside_functions_say_why() -> None:
    """Imports go at the top; one inside a function keeps a heavy or optional dependency
    (torch, Prefect, Ray, GPAW, UMAP, matplotlib …) out of start-up and says so."""
    unexplained = []
    for package in ("agent", "generators", "oracles", "flows", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            unexplained += [f"{path.relative_to(ROOT)}:{line} {mod}" for line, mod in _nested_imports(path)]
    assert not unexplained, "imports inside functions without a comment saying why:\n" + "\n".join(unexplained)
