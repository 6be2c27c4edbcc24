"""What the bad-input corpus shares: the tiny campaign, running it, and checking its error.

`tests/faults/test_bad_inputs.py` (configs and data files) and
`tests/faults/test_bad_state.py` (campaign folders being resumed) use these; the rules
every case asserts are in `check_error` and `snapshot`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.cli.main import main

TINY = """\
name = "tiny"
seed = 1
[[targets]]
value = 1.0
hits = 30
[initial]
random = 12
[loop]
batch_size = 4
samples_per_target = 200
[budget]
iterations = 2
[models]
members = 2
surrogate_epochs = 20
surrogate_warm_epochs = 5
generator_epochs = 10
generator_warm_epochs = 5
[ray]
enabled = false
[retry]
poll_interval_s = 0.01
"""
RESUME = TINY.replace("iterations = 2", "iterations = 3")  # budgets may grow on resume
DATA = Path(__file__).resolve().parents[2] / "agent" / "data" / "mos2" / "mos2_pbe_bandgaps.csv"


def run_tiny(capsys: pytest.CaptureFixture[str], config: Path, state: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", str(config), "--state", str(state), "--no-prefect", "--no-ray", "-q"])
    return code, capsys.readouterr().err


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file and a marker for every folder below ``root``; the run lock, which
    names the last process that ran the campaign, is not data and may change."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.name == "run.lock":
            out[rel] = "<lock>"
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


def check_error(code: int, err: str, where: Path | str, fragments: tuple[str, ...]) -> None:
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert err.splitlines() and err.splitlines()[0].startswith("innloop: error: "), err
    assert "Traceback" not in err, err
    assert str(where) in err, f"{where} not named in:\n{err}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"


def swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)
