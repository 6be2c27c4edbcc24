"""The first-run benchmark's protocol without running innloop: which commands, which caches, what it prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import first_run
from benchmarks.first_run import CACHES, PHASES, Machine, format_table, measure, timed


class FakeRun:
    """Stands in for `timed`: records each command with the state of the caches, writes what a report writes."""

    def __init__(self, machine: Path) -> None:
        self.machine = machine
        self.calls: list[dict[str, Any]] = []

    def __call__(self, cmd: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> float:
        caches = {var: Path(env[var]) for var in CACHES}
        empty = all(p.is_dir() and not any(p.iterdir()) for p in caches.values())
        self.calls.append({"cmd": cmd, "empty": empty, "env": env})
        for p in caches.values():  # the phase warms every cache
            (p / "warm").write_text("x")
        if "report" in cmd:
            state = Path(cmd[cmd.index("--state") + 1])
            folder = state / cmd[cmd.index("report") + 1] / "report"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps({"seconds": {"load": 0.5, "figures": 1.0}}))
        return 2.0


def test_first_round_empties_the_caches_before_every_phase_and_the_second_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun(tmp_path / "machine")
    monkeypatch.setattr(first_run, "timed", fake)
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    results = measure(tmp_path)
    assert set(results) == {"first", "second"}
    for rnd in results.values():
        assert list(rnd) == list(PHASES) and rnd["report"] == pytest.approx(1.5) and rnd["total"] == 2.0
    assert len(fake.calls) == 10  # five commands per round: the report's two rows come from one run
    first, second = fake.calls[:5], fake.calls[5:]
    assert all(c["empty"] for c in first) and not any(c["empty"] for c in second)
    for call in fake.calls:
        env = call["env"]
        assert "PREFECT_API_URL" not in env  # the temporary server, as a new user gets it
        assert all(Path(env[var]).parent == tmp_path / "machine" for var in CACHES)
    states = [c["cmd"][c["cmd"].index("--state") + 1] for c in fake.calls if "--state" in c["cmd"]]
    assert len(states) == len(set(states)) + 2  # each report reads its round's campaign; every run a new state
    run_cmds = [c["cmd"] for c in fake.calls if "run" in c["cmd"]]
    assert sum("--no-prefect" in c for c in run_cmds) == 2 and sum("--no-prefect" not in c for c in run_cmds) == 2


def test_report_alone_still_runs_its_campaign_and_unknown_phases_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun(tmp_path / "machine")
    monkeypatch.setattr(first_run, "timed", fake)
    results = measure(tmp_path, phases=["report"], rounds=["second"])
    assert results == {"second": {"report": pytest.approx(1.5)}}
    assert [c["cmd"][3] for c in fake.calls] == ["run", "report"]
    with pytest.raises(ValueError, match="unknown phases"):
        measure(tmp_path, phases=["nope"])


def test_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    table = format_table({"first": {"prefect": 12.34, "total": 50.0}, "second": {"prefect": 3.0}})
    lines = table.splitlines()
    assert "first run" in lines[0] and "second run" in lines[0]
    assert lines[2].split() == ["prefect", "12.3", "3.0"] and lines[3].split() == ["total", "50.0", "-"]
    monkeypatch.setattr(first_run, "timed", FakeRun(tmp_path / "w" / "machine"))
    out = tmp_path / "bench.json"
    assert first_run.main(["--phases", "ray", "--keep", str(tmp_path / "w"), "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["seconds"] == {"first": {"ray": 2.0}, "second": {"ray": 2.0}} and payload["phases"] == ["ray"]
    assert "ray" in capsys.readouterr().out


def test_timed_measures_a_command_and_reports_a_failure(tmp_path: Path) -> None:
    machine = Machine(tmp_path / "m")
    machine.empty()
    env = machine.env()
    assert timed([sys.executable, "-c", "pass"], env, 60) > 0
    with pytest.raises(RuntimeError, match="boom"):
        timed([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], env, 60)


@pytest.mark.slow
def test_the_real_ray_phase(tmp_path: Path) -> None:
    results = measure(tmp_path, phases=["ray"], rounds=["first"], timeout=300)
    assert 0 < results["first"]["ray"] < 300
