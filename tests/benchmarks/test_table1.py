from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.table1 import METHODS, TARGETS, main


@pytest.mark.slow
def test_table1_quick_run_prints_and_writes_every_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t1.json"
    argv = ["--quick", "-n", "300", "--threads", "1", "--state", str(tmp_path), "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    cells = {(r["method"], r["target"]) for r in result["rows"]}
    assert cells == {(m, t) for m in METHODS for t in TARGETS}
    for r in result["rows"]:
        assert r["n"] == 300 and 0 <= r["kept"] <= 300
        assert r["method"] in printed
        if r["method"].startswith("MatDesINNe") and r["kept"]:
            assert r["in_box"] == 1.0, "refined candidates are always inside the design space"
            assert r["mae_loc"] <= 0.011
    assert set(result["surrogates"]) == {"S80 on test 20%", "S_A on half B", "V_B on half A"}
    for s in result["surrogates"].values():
        assert 0 <= s["coverage_1sigma"] <= s["coverage_2sigma"] <= 1
    assert "Surrogate ensembles" in printed and "paper" in printed
