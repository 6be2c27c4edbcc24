"""Structure building and file output for MoS2 design points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from agent.core.errors import ConfigError, DesignError
from agent.core.materials import get_material
from agent.core.materials.mos2 import D_S, build_structure
from agent.core.structures import build_structures, to_ase, write_structures

UNSTRAINED = np.array([3.16, 3.16, 12.30, 90.0, 90.0, 120.0, 0.0])


def _random_valid(n: int, seed: int = 0) -> np.ndarray:
    space = get_material("mos2").space
    U = np.random.default_rng(seed).random((4 * n, space.dim))
    X = space.from_unit(U)
    return X[space.valid_mask(X)][:n]


def _mo_s_bonds(s: Structure) -> np.ndarray:
    return np.array([s.get_distance(0, j) for j in (1, 2)])


@pytest.mark.parametrize("convention", ["fractional", "cartesian"])
def test_builder_reproduces_lattice(convention: str) -> None:
    for x in _random_valid(20):
        try:
            s = build_structure(x, convention=convention)  # type: ignore[arg-type]
        except DesignError:
            assert convention == "cartesian"  # stricter vacuum rule
            continue
        assert np.allclose(s.lattice.abc, x[:3], atol=1e-6)
        assert np.allclose(s.lattice.angles, x[3:6], atol=1e-6)
        assert s.composition.reduced_formula == "MoS2" and len(s) == 3
        assert s.properties["efield_V_per_A"] == pytest.approx(x[6])
        assert np.allclose(s.lattice.matrix[:2, 2], 0.0, atol=1e-9)  # layer in the xy plane


def test_unstrained_bond_lengths() -> None:
    for convention in ("fractional", "cartesian"):
        s = build_structure(UNSTRAINED, convention=convention)
        assert _mo_s_bonds(s) == pytest.approx([2.41, 2.41], abs=0.02)


def test_conventions_differ_in_how_c_moves_sulfur() -> None:
    x = UNSTRAINED.copy()
    x[2] = 14.0
    frac = build_structure(x)  # default: fractional, S planes scale with c
    cart = build_structure(x, convention="cartesian")
    thick = lambda s: s.cart_coords[1, 2] - s.cart_coords[2, 2]  # noqa: E731
    assert thick(cart) == pytest.approx(2 * D_S)
    assert thick(frac) == pytest.approx(2 * D_S * 14.0 / 12.30)


def test_ase_atoms_match() -> None:
    x = UNSTRAINED.copy()
    x[6] = 0.25
    s = build_structure(x)
    atoms = to_ase(s, {"run": "r1"})
    assert np.allclose(atoms.cell.array, s.lattice.matrix)
    assert atoms.pbc.all()
    assert atoms.info["efield_V_per_A"] == pytest.approx(0.25)
    assert atoms.info["run"] == "r1"
    assert atoms.get_chemical_formula() == "MoS2"


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_files_round_trip(tmp_path: Path) -> None:
    X = _random_valid(3, seed=1)
    structures = build_structures(get_material("mos2"), X)
    paths = write_structures(structures, tmp_path / "out")
    assert [p.name for p in paths[:2]] == ["cand_0000.cif", "cand_0000.vasp"]
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    for k, s in enumerate(structures):
        for p in paths[2 * k : 2 * k + 2]:
            back = Structure.from_file(p)
            assert np.allclose(back.lattice.abc, s.lattice.abc, atol=1e-5)
            assert np.allclose(back.lattice.angles, s.lattice.angles, atol=1e-5)
            assert back.composition == s.composition
    efield = f"efield_V_per_A={X[0, 6]:.10g}"
    assert efield in paths[1].read_text().splitlines()[0]
    cif = paths[0].read_text()
    assert efield in cif and "_innloop_efield_V_per_A" in cif


def test_write_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="xyz"):
        write_structures([build_structure(UNSTRAINED)], tmp_path, formats=("xyz",))


def test_degenerate_cells_raise() -> None:
    material = get_material("mos2")
    flat = np.array([3.16, 3.16, 14.7, 72.1, 72.1, 144.0, 0.0])  # in bounds, ~1 Å spacing
    with pytest.raises(DesignError, match="layer_spacing"):
        build_structures(material, np.vstack([UNSTRAINED, flat]))
    with pytest.raises(DesignError, match="too flat"):
        build_structure(flat)
    no_cell = UNSTRAINED.copy()
    no_cell[3:6] = [30.0, 30.0, 120.0]
    with pytest.raises(DesignError, match="degenerate"):
        build_structure(no_cell)
    with pytest.raises(DesignError, match="shape"):
        build_structure(UNSTRAINED[:6])
