from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from agent.cli.main import main
from oracles.measure import handles_path

DESIGNS = "a,b,c,alpha,beta,gamma,efield\n3.16,3.16,12.3,90,90,120,0\n3.3,3.0,12.0,95,88,118,0.5\n"


def _count_jobs(folder: Path) -> int:
    return len(list((folder / "jobs").glob("*.json")))


def test_measure_then_resume_without_resubmitting(tmp_path: Path) -> None:
    designs, out, mock = tmp_path / "d.csv", tmp_path / "r.csv", tmp_path / "mock"
    designs.write_text(DESIGNS)
    slow = json.dumps({"workdir": str(mock), "latency_s": 30})
    argv = ["measure", str(designs), "--oracle", "mock", "--out", str(out), "--poll", "0.05", "-q"]
    assert main([*argv, "--settings", slow, "--timeout", "0.2"]) == 2, "gives up waiting, jobs keep running"
    assert handles_path(out).exists() and not out.exists()
    assert _count_jobs(mock) == 2
    fast = json.dumps({"workdir": str(mock), "latency_s": 0})
    assert main([*argv, "--settings", fast]) == 0
    assert _count_jobs(mock) == 2, "the second run re-attached instead of submitting again"
    table = pd.read_csv(out)
    assert list(table["status"]) == ["completed", "completed"]
    assert table["gap"].between(0, 3).all()


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
    assert not (tmp_path / "r.csv").exists()


def test_handles_of_another_measurement_are_not_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    designs, out = tmp_path / "d.csv", tmp_path / "r.csv"
    designs.write_text(DESIGNS)
    settings = ["--settings", json.dumps({"workdir": str(tmp_path / "m")})]
    assert main(["measure", str(designs), "--oracle", "mock", "--out", str(out), "-q", *settings]) == 0
    designs.write_text(DESIGNS.replace("0.5\n", "0.4\n"))
    assert main(["measure", str(designs), "--oracle", "mock", "--out", str(out), *settings]) == 2
    assert "belongs to another measurement" in capsys.readouterr().err
