"""The DFT benchmarks' bookkeeping, on recorded rows (no DFT code needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import dft_validation, gpaw_calibration

KEYS = ("a", "b", "c", "alpha", "beta", "gamma", "efield")


def _convention_file(path: Path, n: int = 24, shift: float = 0.45) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        vasp = float(max(0.0, rng.uniform(-0.4, 1.6)))
        gpaw = vasp + shift if vasp > 0 else float(rng.uniform(0.0, shift - 0.05))
        rows.append(
            {"row": i, "category": ["metal", "sheared", "random"][i % 3], "vasp_gap": vasp}
            | dict.fromkeys(KEYS, 1.0)
            | {"fractional": {"gap_eV": gpaw, "wall_s": 10.0, "error": None}}
        )
    rows.append(rows[0] | {"fractional": {"gap_eV": None, "wall_s": 5.0, "error": {"class": "physics"}}, "row": 99})
    path.write_text(json.dumps({"settings": {"ecut_eV": 350.0, "kpts": [9, 9, 1]}, "rows": rows}))
    return path


def test_calibration_benchmark_splits_by_category_and_validates(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = _convention_file(tmp_path / "conv.json")
    frame = gpaw_calibration.load_rows([src])
    assert len(frame) == 24, "the failed row is left out"
    cal, val = gpaw_calibration.split_rows(frame, 0)
    assert (cal ^ val).all() and frame[cal].category.value_counts().to_dict() == {"metal": 4, "sheared": 4, "random": 4}
    assert gpaw_calibration.main(["--from", str(src), "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["shift_fit"]["shift"] == pytest.approx(-0.45, abs=0.01)
    assert out["validation"]["raw GPAW"]["mae_eV"] > 0.3 > 0.01 > out["validation"]["shift-only (bundled)"]["mae_eV"]
    assert "bundled" not in out, "nothing bundled is written without --write"
    assert "shift-only (bundled)" in capsys.readouterr().out


def test_calibration_benchmark_refuses_mixed_settings(tmp_path: Path) -> None:
    a = _convention_file(tmp_path / "a.json")
    b = tmp_path / "b.json"
    b.write_text(json.dumps(json.loads(a.read_text()) | {"settings": {"ecut_eV": 300.0, "kpts": [3, 3, 1]}}))
    with pytest.raises(SystemExit, match="different settings"):
        gpaw_calibration.load_rows([a, b])


def test_validation_figures() -> None:
    table = pd.DataFrame(
        {
            "gap": [0.5, 0.6, 0.0, np.nan],
            "pred": [0.5, 0.5, 0.5, 0.5],
            "status": ["completed", "completed", "completed", "failed"],
        }
    )
    f = dft_validation.summarise(table, 0.5, outlier=0.3)
    assert (f["measured"], f["completed"], f["failed"]) == (4, 3, 1)
    assert f["mae_vs_target_eV"] == pytest.approx(0.2)
    assert f["metal_share"] == pytest.approx(1 / 3) and f["outlier_share"] == pytest.approx(1 / 3)
    assert f["surrogate_mae_vs_oracle_eV"] == pytest.approx(0.2)


def test_candidates_are_a_seeded_subset() -> None:
    cands = pd.DataFrame({"a": np.arange(50.0)})
    one, two = dft_validation.pick_candidates(cands, 10, 3), dft_validation.pick_candidates(cands, 10, 3)
    assert one.equals(two) and one.a.is_unique and len(one) == 10
    with pytest.raises(SystemExit, match="only 50 candidates"):
        dft_validation.pick_candidates(cands, 60, 0)
