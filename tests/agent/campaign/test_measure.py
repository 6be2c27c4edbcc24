"""``innloop measure`` on the job driver: resumable, ledger-first, outages and time limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.campaign.config import RetrySpec
from agent.campaign.journal import FileJournal, in_flight
from agent.campaign.measure import journal_path, measure
from agent.cli.main import main
from oracles.base import design_digest
from oracles.mock import MockOracle
from oracles.testing.faulty import Fault, FaultyOracle

DESIGNS = "a,b,c,alpha,beta,gamma,efield\n3.16,3.16,12.3,90,90,120,0\n3.3,3.0,12.0,95,88,118,0.5\n"
ROWS = [
    {"a": 3.16, "b": 3.16, "c": 12.3, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0},
    {"a": 3.3, "b": 3.0, "c": 12.0, "alpha": 95.0, "beta": 88.0, "gamma": 118.0, "efield": 0.5},
]


def _count_jobs(folder: Path) -> int:
    return len(list((folder / "jobs").glob("*.json")))


def _mock(folder: Path, **kw: Any) -> MockOracle:
    # explicit settings: INNLOOP_MOCK_* variables of the environment must not leak in
    return MockOracle(workdir=folder, **({"latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0} | kw))


def test_measure_then_resume_without_resubmitting(tmp_path: Path) -> None:
    designs, out, mock = tmp_path / "d.csv", tmp_path / "r.csv", tmp_path / "mock"
    designs.write_text(DESIGNS)
    slow = json.dumps({"workdir": str(mock), "latency_s": 30})
    argv = ["measure", str(designs), "--oracle", "mock", "--out", str(out), "--poll", "0.05", "-q"]
    assert main([*argv, "--settings", slow, "--timeout", "0.2"]) == 2, "gives up waiting, jobs keep running"
    assert not out.exists()
    jobs, since = in_flight(FileJournal(journal_path(out)))
    assert len(jobs) == 2 and all(j.handle for j in jobs) and since is None
    assert _count_jobs(mock) == 2
    fast = json.dumps({"workdir": str(mock), "latency_s": 0})
    assert main([*argv, "--settings", fast]) == 0
    assert _count_jobs(mock) == 2, "the second run re-attached instead of submitting again"
    table = pd.read_csv(out)
    assert list(table["status"]) == ["completed", "completed"]
    assert table["gap"].between(0, 3).all()
    journal = FileJournal(journal_path(out))
    assert len(journal.ledger.records()) == 2 and in_flight(journal) == ([], None)
    assert main([*argv, "--settings", fast]) == 0
    assert _count_jobs(mock) == 2, "a third run answers from the ledger"
    pd.testing.assert_frame_equal(pd.read_csv(out), table)


def test_table_oracle_measures_bundled_rows(tmp_path: Path) -> None:
    designs = tmp_path / "d.csv"
    designs.write_text(
        "a,b,c,alpha,beta,gamma,efield\n3.141776659,3.621898165,14.30794047,95.16068202,72.40513821,99.50909182,-0.771024618\n"
    )
    assert main(["measure", str(designs), "--oracle", "table", "--out", str(tmp_path / "r.csv"), "-q"]) == 0
    assert pd.read_csv(tmp_path / "r.csv")["gap"].tolist() == [0.0]


@pytest.mark.parametrize(
    ("content", "args", "words"),
    [
        (DESIGNS, ["--oracle", "nope"], "unknown oracle 'nope'"),
        ("a,b\n1,2\n", ["--oracle", "mock"], "missing design columns"),
        (DESIGNS.replace("3.3,", "33,"), ["--oracle", "mock"], "outside"),
        (DESIGNS, ["--oracle", "mock", "--settings", "{bad"], "not valid JSON"),
        (DESIGNS, ["--oracle", "mock", "--outage", "0"], "outage_s"),
        (DESIGNS, ["--oracle", "mock", "--max-attempts", "0"], "max_attempts"),
    ],
)
def test_bad_input_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str], words: str
) -> None:
    designs = tmp_path / "d.csv"
    designs.write_text(content)
    settings = [] if "--settings" in args else ["--settings", json.dumps({"workdir": str(tmp_path / "m")})]
    rc = main(["measure", str(designs), "--out", str(tmp_path / "r.csv"), *args, *settings])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "r.csv").exists() and not journal_path(tmp_path / "r.csv").exists()


def test_other_designs_reuse_what_is_recorded(tmp_path: Path) -> None:
    out, mock = tmp_path / "r.csv", _mock(tmp_path / "m")
    first = measure(mock, pd.DataFrame(ROWS), out)
    changed = [ROWS[0], ROWS[1] | {"efield": 0.4}, ROWS[0]]
    second = measure(mock, pd.DataFrame(changed), out)
    assert mock.submissions() == 3, "only the new design is submitted; a repeated one is measured once"
    assert len(second) == 3 and list(second["job_id"])[::2] == [first["job_id"][0]] * 2
    assert len(FileJournal(journal_path(out)).ledger.records()) == 3


def test_a_journal_of_another_oracle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    designs, out = tmp_path / "d.csv", tmp_path / "r.csv"
    designs.write_text(DESIGNS)
    settings = ["--settings", json.dumps({"workdir": str(tmp_path / "m")})]
    assert main(["measure", str(designs), "--oracle", "mock", "--out", str(out), "-q", *settings]) == 0
    designs.write_text(DESIGNS.replace("0.5\n", "0.4\n"))
    assert main(["measure", str(designs), "--oracle", "table", "--out", str(out)]) == 2
    assert "keeps the measurements of oracle 'mock', not 'table'" in capsys.readouterr().err


def test_handles_of_an_older_innloop_are_reattached(tmp_path: Path) -> None:
    out, mock = tmp_path / "r.csv", _mock(tmp_path / "m")
    handles = mock.submit(ROWS)
    old = out.with_name("r.csv.handles.json")
    old.write_text(json.dumps({"oracle": "mock", "designs": "x", "handles": [h.to_json() for h in handles]}))
    table = measure(mock, pd.DataFrame(ROWS), out)
    assert mock.submissions() == 2 and list(table["job_id"]) == [h.job_id for h in handles]
    assert not old.exists()


def test_outage_is_waited_out_nothing_lost_nothing_paid_twice(tmp_path: Path) -> None:
    inner = _mock(tmp_path / "m")
    faulty = FaultyOracle(inner)
    faulty.down = 4  # submit, adopt, ... refused until four calls have failed
    waits: list[float] = []
    retry = RetrySpec(backoff_s=0.0, poll_interval_s=0.01, max_backoff_s=0.02, outage_s=60)
    table = measure(faulty, pd.DataFrame(ROWS), tmp_path / "r.csv", retry=retry, sleep=waits.append)
    assert list(table["status"]) == ["completed", "completed"]
    assert inner.submissions() == 2, "a submit that raised was adopted, not paid twice"
    assert waits[:4] == [0.01, 0.02, 0.02, 0.02] and faulty.down == 0
    assert len(FileJournal(journal_path(tmp_path / "r.csv")).ledger.records()) == 2


def test_oracle_down_past_outage_stops_with_exit_3_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    designs, out = tmp_path / "d.csv", tmp_path / "r.csv"
    designs.write_text(DESIGNS)
    inner = _mock(tmp_path / "m", latency_s=60)
    calls: list[float] = []

    def go_down(_seconds: float) -> None:  # the lab goes down at the first poll, the jobs running
        calls.append(_seconds)
        if len(calls) == 2:
            faulty.down = 10**9

    faulty = FaultyOracle(inner, sleep=go_down)
    faulty.slow = 2  # the submit and the first poll pass through `go_down`
    monkeypatch.setattr("oracles.make_oracle", lambda _name, **_kw: faulty)
    argv = ["measure", str(designs), "--oracle", "mock", "--out", str(out), "--poll", "0.01"]
    assert main([*argv, "--outage", "0.05"]) == 3
    err = capsys.readouterr().err
    assert "'mock' unreachable" in err and "running the same `innloop measure` again" in err
    assert not out.exists() and inner.submissions() == 2
    jobs, _ = in_flight(FileJournal(journal_path(out)))
    assert len(jobs) == 2 and all(j.handle for j in jobs), "the jobs are kept for the next run"
    monkeypatch.undo()
    fast = json.dumps({"workdir": str(tmp_path / "m"), "latency_s": 0, "noise_eV": 0, "failure_rate": 0})
    assert main([*argv, "--settings", fast, "-q"]) == 0
    assert inner.submissions() == 2 and list(pd.read_csv(out)["status"]) == ["completed", "completed"]


def test_a_job_that_never_finishes_is_cancelled_as_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    designs, out = tmp_path / "d.csv", tmp_path / "r.csv"
    designs.write_text(DESIGNS)
    inner = _mock(tmp_path / "m")
    faulty = FaultyOracle(inner, {design_digest(ROWS[1]): [Fault.STUCK]})
    monkeypatch.setattr("oracles.make_oracle", lambda _name, **_kw: faulty)
    argv = ["measure", str(designs), "--oracle", "mock", "--out", str(out), "--poll", "0.01", "-q"]
    assert main([*argv, "--job-timeout", "0.05", "--max-attempts", "1"]) == 1, "not every design completed"
    table = pd.read_csv(out)
    assert list(table["status"]) == ["completed", "timeout"]
    assert table["message"][1] == "no result after 0.05 s: cancelled" and table["error_class"][1] == "infrastructure"
    assert faulty.calls["cancel"] == 1 and inner.submissions() == 2
    stuck = FileJournal(journal_path(out)).ledger.records()[1].result.handle
    assert json.loads((inner.jobs / f"{stuck.job_id}.json").read_text())["cancelled"] is True
