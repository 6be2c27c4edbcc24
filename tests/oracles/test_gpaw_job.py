"""Pure parts of the GPAW job: input checks, gap extraction, atomic result files.

None of these tests needs GPAW: the job module imports it only inside `run_job`, so
validation and result handling can be trusted on machines where DFT cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import ConfigError, DesignError
from oracles.gpaw_job import (
    JobSettings,
    gap_from_eigenvalues,
    main,
    parse_input,
    result_dict,
    write_result,
)

UNSTRAINED = {"a": 3.16, "b": 3.16, "c": 12.30, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}


def _raw(**design: float) -> dict[str, object]:
    return {"design": {**UNSTRAINED, **design}}


# -- parse_input ---------------------------------------------------------------------
def test_defaults_are_the_production_settings() -> None:
    job = parse_input(_raw())
    assert job.convention == "fractional"
    assert job.settings == JobSettings(350.0, (9, 9, 1), 0.01, False, "PBE")
    assert job.design == (3.16, 3.16, 12.30, 90.0, 90.0, 120.0, 0.0)


def test_settings_and_convention_are_read() -> None:
    raw = {
        **_raw(efield=0.5),
        "convention": "cartesian",
        "settings": {"ecut_eV": 300, "kpts": [6, 6, 1], "spin": True, "smearing_eV": 0.05},
    }
    job = parse_input(raw)
    assert job.convention == "cartesian"
    assert job.settings.kpts == (6, 6, 1) and job.settings.ecut_eV == 300.0
    assert job.settings.spin is True and job.settings.smearing_eV == 0.05
    assert job.design[6] == 0.5


def test_degenerate_cell_is_refused_before_launch() -> None:
    # alpha + beta = gamma: the three cell vectors are coplanar.
    with pytest.raises(DesignError, match="degenerate"):
        parse_input(_raw(alpha=60.0, beta=60.0, gamma=120.0))
    with pytest.raises(DesignError, match="degenerate"):
        parse_input(_raw(a=0.0))


def test_flat_cell_is_refused_under_its_own_convention() -> None:
    # Strongly tilted c: fine as a cell, but layer spacing leaves no vacuum.
    with pytest.raises(DesignError, match="vacuum"):
        parse_input(_raw(c=4.0))
    # A cell that passes the fractional check can still be too flat for the cartesian one:
    # fractional gap h(1 - 2d/c0) >= 3 needs h >= 4.0; cartesian h - 2d >= 3 needs h >= 6.13.
    parse_input({**_raw(c=5.0), "convention": "fractional"})
    with pytest.raises(DesignError, match="cartesian"):
        parse_input({**_raw(c=5.0), "convention": "cartesian"})


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"design": {k: v for k, v in UNSTRAINED.items() if k != "efield"}}, DesignError),
        ({"design": {**UNSTRAINED, "a": "wide"}}, DesignError),
        ({"design": {**UNSTRAINED, "c": float("nan")}}, DesignError),
        ({**_raw(), "convention": "polar"}, ConfigError),
        ({**_raw(), "settings": {"kpts": [9, 9]}}, ConfigError),
        ({**_raw(), "settings": {"kpts": [9.5, 9, 1]}}, ConfigError),
        ({**_raw(), "settings": {"ecut_eV": -1}}, ConfigError),
        ({**_raw(), "settings": {"spin": "yes"}}, ConfigError),
        ({**_raw(), "settings": {"ecutt": 300}}, ConfigError),
        ({"cell": UNSTRAINED}, ConfigError),
    ],
)
def test_malformed_input_is_rejected(raw: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_input(raw)


# -- gap_from_eigenvalues -------------------------------------------------------------
def test_direct_and_indirect_gap() -> None:
    eps = np.array([[-2.0, -1.0, 1.0, 2.0], [-2.0, -0.5, 0.8, 2.0]])  # (kpts, bands)
    # VBM -0.5 at k1, CBM 0.8 at k1 -> 1.3; shift CBM to k0 for an indirect gap.
    assert gap_from_eigenvalues(eps, 0.0) == pytest.approx(1.3)
    eps[0, 2] = 0.6
    assert gap_from_eigenvalues(eps, 0.0) == pytest.approx(1.1)


def test_band_crossing_fermi_level_is_a_metal() -> None:
    eps = np.array([[-2.0, -0.2, 1.0], [-2.0, 0.3, 1.0]])
    assert gap_from_eigenvalues(eps, 0.0) == 0.0


def test_spin_channels_share_one_gap() -> None:
    up = [[-1.0, 0.5], [-0.8, 0.7]]
    down = [[-0.6, 1.2], [-0.9, 0.9]]
    # VBM = -0.6 (down), CBM = 0.5 (up): the gap spans both channels.
    assert gap_from_eigenvalues([up, down], 0.0) == pytest.approx(1.1)
    assert gap_from_eigenvalues([up, down], [0.0, 0.0]) == pytest.approx(1.1)


def test_a_metallic_spin_channel_makes_a_metal() -> None:
    up = [[-1.0, 0.5], [-0.8, 0.7]]
    down = [[-0.6, 1.2], [0.1, 0.9]]
    assert gap_from_eigenvalues([up, down], 0.0) == 0.0


def test_too_few_bands_is_an_error_not_a_gap() -> None:
    with pytest.raises(ValueError, match="bands below"):
        gap_from_eigenvalues([[-1.0, -0.5], [-1.2, -0.4]], 0.0)
    with pytest.raises(ValueError, match="shape"):
        gap_from_eigenvalues([1.0, 2.0], 0.0)


# -- results ---------------------------------------------------------------------------
def test_write_result_is_atomic_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "job" / "out.json"
    res = result_dict(
        gap=1.2, converged=True, wall_s=3.14159, gpaw_version="26.7.0", settings=JobSettings(), convention="fractional"
    )
    write_result(out, res)
    data = json.loads(out.read_text())
    assert set(data) == {
        "gap_eV",
        "energy_eV",
        "formula_units",
        "converged",
        "wall_s",
        "gpaw_version",
        "settings",
        "convention",
        "error",
    }
    assert data["settings"]["kpts"] == [9, 9, 1] and data["error"] is None
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]  # no temp file left behind


def test_write_result_leaves_old_file_when_serialisation_fails(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text('{"old": true}')
    with pytest.raises(ValueError):
        write_result(out, {"gap_eV": float("nan")})
    assert json.loads(out.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_main_reports_a_refused_design_as_physics(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.json", tmp_path / "out.json"
    inp.write_text(json.dumps({**_raw(alpha=60.0, beta=60.0), "settings": {"ecut_eV": 300}}))
    assert main([str(inp), str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["converged"] is False and data["gap_eV"] is None
    assert data["error"]["class"] == "physics" and "degenerate" in data["error"]["message"]
    assert data["settings"] == {"ecut_eV": 300}


def test_main_reports_unreadable_input_as_infrastructure(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert main([str(tmp_path / "missing.json"), str(out)]) == 0
    assert json.loads(out.read_text())["error"]["class"] == "infrastructure"
    assert main(["only-one-arg"]) == 2
