"""Putting one code's gaps on another's scale: fit, clip, persistence, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oracles.base import OracleError
from oracles.calibration import GapCalibration, agreement, load_calibration


def _pairs(shift: float, slope: float = 1.0, n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.0, 2.0, n)
    return g, np.maximum(slope * g + shift + 0.01 * rng.standard_normal(n), 0.0)


def test_shift_fit_recovers_the_offset_and_clips_small_gaps_to_metals() -> None:
    g, v = _pairs(-0.47)
    cal = GapCalibration.fit(g, v, fit_slope=False)
    assert cal.slope == 1.0 and cal.shift == pytest.approx(-0.47, abs=0.01)
    assert cal.apply([0.2, 1.47]).tolist() == pytest.approx([0.0, 1.0], abs=0.01)
    a = agreement(cal.apply(g), v)
    assert a["mae_eV"] < 0.02 and a["metals_right"] == a["metals"] > 0


def test_affine_fit_and_rows_with_nan_are_left_out() -> None:
    g, v = _pairs(-0.3, slope=0.8)
    g[0] = np.nan
    cal = GapCalibration.fit(g, v)
    assert (cal.slope, cal.shift) == (pytest.approx(0.8, abs=0.02), pytest.approx(-0.3, abs=0.02))
    assert cal.notes["n_rows"] == len(g) - 1


def test_metals_alone_do_not_make_a_calibration() -> None:
    with pytest.raises(OracleError, match="at least 2 rows with a target gap"):
        GapCalibration.fit([0.3, 0.4, 0.1], [0.0, 0.0, 0.5])
    with pytest.raises(OracleError, match="positive slope"):
        GapCalibration(slope=-1.0)


def test_bundled_calibration_is_the_shift_fit_with_its_held_out_check() -> None:
    cal = load_calibration("mos2-gpaw-to-vasp")
    assert cal is not None and cal.slope == 1.0 and -0.6 < cal.shift < -0.35
    held = cal.notes["held_out_check"]["validation"]
    assert held["mae_eV"] < 0.1 and held["n"] >= 10
    assert cal.notes["settings"]["convention"] == "fractional"


def test_files_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    cal = GapCalibration(slope=1.0, shift=-0.4, source="a", target="b")
    assert load_calibration(str(cal.save(tmp_path / "c.json"))) == cal
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(OracleError, match=r"bad.json is unreadable"):
        load_calibration(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(OracleError, match="expected a JSON object"):
        load_calibration(str(tmp_path / "list.json"))
    (tmp_path / "nan.json").write_text('{"slope": 1, "shift": "x"}')
    with pytest.raises(OracleError, match=r"nan\.json"):
        load_calibration(str(tmp_path / "nan.json"))
