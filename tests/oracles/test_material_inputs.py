"""The DFT oracles build the material they are given, not MoS2.

A second material is registered here: MoS2's geometry with W and Se on its sites, its
field named ``ex`` in the design and ``field_along_a`` in the metadata, pointing along
the first lattice vector, and a stricter vacuum rule (6 Å). VASP inputs and GPAW jobs
for it must carry its species, its field, its field's direction and its vacuum rule;
the same calls for MoS2 must still give MoS2's.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymatgen.core import SETTINGS, Structure
from pymatgen.io.vasp.inputs import Incar, Poscar

from agent.core.errors import ConfigError, DesignError
from agent.core.materials import AppliedField, Material, base, get_material, register_material
from agent.core.materials.mos2 import build_structure, vacuum_gap
from agent.core.space import DesignSpace
from oracles.gpaw import GpawOracle
from oracles.gpaw_job import job_atoms, main, parse_input
from oracles.vasp import VaspOracle
from oracles.vasp_inputs import write_inputs

FIELD = "field_along_a"
MIN_VACUUM = 6.0
CELL = {"a": 3.3, "b": 3.3, "c": 13.0, "alpha": 90.0, "beta": 90.0, "gamma": 120.0}
WSE2_DESIGN = CELL | {"ex": 0.4}
MOS2_DESIGN = CELL | {"efield": 0.4}


def _build(x: np.ndarray) -> Structure:
    point = np.asarray(x, dtype=np.float64).reshape(1, -1)
    vacuum = float(vacuum_gap(point)[0])
    if vacuum < MIN_VACUUM:
        raise DesignError(f"WSe2-like cell leaves {vacuum:.3g} Å of vacuum, below {MIN_VACUUM:g} Å")
    structure = build_structure(point)
    structure.replace_species({"Mo": "W", "S": "Se"})
    structure.properties = {FIELD: float(point[0, 6])}
    return structure


def _metadata(x: np.ndarray) -> dict[str, Any]:
    return {FIELD: float(np.asarray(x, dtype=np.float64).reshape(-1)[6])}


@pytest.fixture
def wse2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Material]:
    mos2 = get_material("mos2")
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    params = tuple(dataclasses.replace(p, name="ex") if p.name == "efield" else p for p in mos2.space.parameters)
    material = Material(
        name="wse2_test",
        description="MoS2's cells with W and Se, an in-plane field and a wider vacuum rule",
        space=DesignSpace("wse2_test", params, mos2.space.constraints),
        target="gap",
        target_unit="eV",
        target_lower_bound=0.0,
        build=_build,
        metadata=_metadata,
        applied_field=AppliedField(FIELD, axis=0),
    )
    yield register_material(material)


@pytest.fixture
def no_potcars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", None)


# -- VASP --------------------------------------------------------------------------------
def test_vasp_inputs_are_the_materials_structure_and_field(tmp_path: Path, wse2: Material, no_potcars: None) -> None:
    incar = write_inputs(tmp_path, WSE2_DESIGN, wse2)
    structure = Poscar.from_file(tmp_path / "POSCAR").structure
    assert sorted(s.symbol for s in structure.species) == ["Se", "Se", "W"]
    assert [s.split("_")[0] for s in (tmp_path / "POTCAR.spec").read_text().split()] == ["W", "Se"]
    written = Incar.from_file(tmp_path / "INCAR")
    assert written["EFIELD"] == pytest.approx(0.4) and incar["EFIELD"] == pytest.approx(0.4)
    assert written["IDIPOL"] == 1, "the field runs along the first lattice vector"
    # atoms at fractional x 1/3, 2/3, 2/3: the dipole sits at their mean along a
    assert written["DIPOL"] == pytest.approx([5 / 9, 0.5, 0.5])


def test_vasp_inputs_for_mos2_are_unchanged(tmp_path: Path, wse2: Material, no_potcars: None) -> None:
    write_inputs(tmp_path, MOS2_DESIGN, get_material("mos2"))
    written = Incar.from_file(tmp_path / "INCAR")
    assert (written["IDIPOL"], written["EFIELD"]) == (3, pytest.approx(0.4))
    assert written["DIPOL"] == pytest.approx([0.5, 0.5, 0.5])
    assert sorted(s.symbol for s in Poscar.from_file(tmp_path / "POSCAR").structure.species) == ["Mo", "S", "S"]


def test_vasp_inputs_follow_the_materials_vacuum_rule(tmp_path: Path, wse2: Material, no_potcars: None) -> None:
    tight = {"c": 7.0}  # 5.2 Å of vacuum: enough for MoS2 (3 Å), not for this material (6 Å)
    write_inputs(tmp_path / "mos2", MOS2_DESIGN | tight, get_material("mos2"))
    with pytest.raises(DesignError, match="below 6 Å"):
        write_inputs(tmp_path / "wse2", WSE2_DESIGN | tight, wse2)
    with pytest.raises(DesignError, match="design lacks"):
        write_inputs(tmp_path / "keys", MOS2_DESIGN, wse2)  # MoS2's column names are not this design's


def test_the_vasp_oracle_takes_its_conventions_from_the_material(tmp_path: Path, wse2: Material) -> None:
    command = [sys.executable, "-m", "oracles.testing.fake_vasp"]
    assert VaspOracle(workdir=tmp_path, command=command, material="wse2_test").convention is None
    assert VaspOracle(workdir=tmp_path, command=command).convention == "fractional"
    with pytest.raises(ConfigError, match="no atomic-position convention 'cartesian'"):
        VaspOracle(workdir=tmp_path, command=command, material="wse2_test", convention="cartesian")


# -- GPAW --------------------------------------------------------------------------------
def test_a_gpaw_job_builds_the_named_material(wse2: Material) -> None:
    job = parse_input({"material": "wse2_test", "design": WSE2_DESIGN})
    assert (job.material, job.convention) == ("wse2_test", None)
    atoms, efield, direction = job_atoms(job)
    assert sorted(atoms.get_chemical_symbols()) == ["Se", "Se", "W"]
    assert efield == pytest.approx(0.4)
    cell = atoms.cell.array
    # along the first axis: normal to b and c, on a's side
    assert np.dot(direction, cell[1]) == pytest.approx(0.0, abs=1e-12)
    assert np.dot(direction, cell[2]) == pytest.approx(0.0, abs=1e-12)
    assert np.dot(direction, cell[0]) > 0 and np.linalg.norm(direction) == pytest.approx(1.0)


def test_a_gpaw_job_for_mos2_is_unchanged(wse2: Material) -> None:
    job = parse_input({"design": MOS2_DESIGN})
    assert (job.material, job.convention) == ("mos2", "fractional")
    atoms, efield, direction = job_atoms(job)
    assert sorted(atoms.get_chemical_symbols()) == ["Mo", "S", "S"]
    assert (efield, direction) == (pytest.approx(0.4), [0.0, 0.0, 1.0])


def test_a_gpaw_job_follows_the_materials_rules(wse2: Material) -> None:
    parse_input({"design": MOS2_DESIGN | {"c": 7.0}})
    with pytest.raises(DesignError, match="refused before launching DFT"):
        parse_input({"material": "wse2_test", "design": WSE2_DESIGN | {"c": 7.0}})
    with pytest.raises(DesignError, match=r"missing \['ex'\]"):
        parse_input({"material": "wse2_test", "design": MOS2_DESIGN})
    with pytest.raises(ConfigError, match="convention"):
        parse_input({"material": "wse2_test", "design": WSE2_DESIGN, "convention": "fractional"})


def test_a_gpaw_job_reports_an_unknown_material_as_infrastructure(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.json", tmp_path / "out.json"
    inp.write_text(json.dumps({"material": "wse2_elsewhere", "design": WSE2_DESIGN}))
    assert main([str(inp), str(out)]) == 0
    error = json.loads(out.read_text())["error"]
    assert error["class"] == "infrastructure" and "unknown material 'wse2_elsewhere'" in error["message"]


def test_the_gpaw_oracle_names_the_material_in_each_job(tmp_path: Path, wse2: Material) -> None:
    stand_in = [sys.executable, "-c", "pass"]  # the job's run is not what is checked here
    oracle = GpawOracle(workdir=tmp_path, material="wse2_test", command=stand_in, calibration=None)
    (handle,) = oracle.submit([list(WSE2_DESIGN.values())])
    sent = json.loads((Path(handle.workdir or "") / "input.json").read_text())
    assert sent["material"] == "wse2_test" and sent["design"] == WSE2_DESIGN and sent["convention"] is None
    assert parse_input(sent).material == "wse2_test"
    with pytest.raises(ConfigError, match="no atomic-position convention"):
        GpawOracle(workdir=tmp_path, material="wse2_test", convention="cartesian", calibration=None)
