"""The MX2 prototype: every member builds, relative to its own unstrained cell, and MoS2 is
exactly what it was (its numbers are written out here, not taken from the prototype)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.errors import ConfigError, DesignError, UnknownNameError
from agent.core.materials import AppliedField, ReferenceCell, available_materials, get_material
from agent.core.materials.mos2 import A0, C0, D_S, MOS2, build_structure, mos2_space
from agent.core.materials.mos2 import MEMBER as MOS2_MEMBER
from agent.core.materials.mx2 import MEMBERS, MIN_VACUUM, MX2, SYMMETRIES, WS2, mx2_material

FAMILY = ["mos2", "ws2", "mose2", "wse2", "mote2"]
SPECIES = {"mos2": "MoS", "ws2": "WS", "mose2": "MoSe", "wse2": "WSe", "mote2": "MoTe"}


def _unstrained(m: MX2, efield: float = 0.0) -> np.ndarray:
    return np.array([m.a0, m.a0, m.c0, 90.0, 90.0, 120.0, efield])


def _member(name: str) -> MX2:
    return MOS2_MEMBER if name == "mos2" else next(m for m in MEMBERS if m.name == name)


def test_the_family_is_registered_and_wte2_is_not() -> None:
    assert set(FAMILY) <= set(available_materials())
    with pytest.raises(UnknownNameError):
        get_material("wte2")  # 2H is not WTe2's phase (module docstring)


@pytest.mark.parametrize("name", FAMILY)
def test_every_member_builds_in_both_conventions(name: str) -> None:
    m, material = _member(name), get_material(name)
    x = _unstrained(m, efield=0.3)
    frac = material.structure(x)
    assert m.metal + m.chalcogen == SPECIES[name]
    assert [s.symbol for s in frac.species] == [m.metal, m.chalcogen, m.chalcogen]
    expected = [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + m.d / m.c0], [2 / 3, 1 / 3, 0.5 - m.d / m.c0]]
    assert np.allclose(frac.frac_coords, expected)
    assert frac.properties == {"efield_V_per_A": 0.3} and material.metadata(x) == {"efield_V_per_A": 0.3}
    assert frac.lattice.abc == pytest.approx((m.a0, m.a0, m.c0))
    cart = material.structure(x, "cartesian")
    z = cart.cart_coords[:, 2]
    assert z[1] - z[0] == pytest.approx(m.d) and z[0] - z[2] == pytest.approx(m.d)
    # unstrained: both conventions put the chalcogens at the same place
    assert np.allclose(cart.cart_coords, frac.cart_coords)


@pytest.mark.parametrize("name", FAMILY)
def test_the_fractional_convention_moves_the_chalcogens_with_c(name: str) -> None:
    m, material = _member(name), get_material(name)
    x = _unstrained(m)
    x[2] = 1.1 * m.c0  # stretched along c: the X-X thickness scales with c
    z = material.structure(x).cart_coords[:, 2]
    assert z[1] - z[2] == pytest.approx(2 * m.d * 1.1)
    zc = material.structure(x, "cartesian").cart_coords[:, 2]
    assert zc[1] - zc[2] == pytest.approx(2 * m.d)


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_bounds_are_relative_to_the_members_own_cell(member: MX2) -> None:
    material = get_material(member.name)
    space = material.space
    assert space.names == ["a", "b", "c", "alpha", "beta", "gamma", "efield"]
    assert space.lower.tolist() == pytest.approx([0.8 * member.a0] * 2 + [0.8 * member.c0, 72, 72, 96, -1])
    assert space.upper.tolist() == pytest.approx([1.2 * member.a0] * 2 + [1.2 * member.c0, 108, 108, 144, 1])
    assert [c.name for c in space.constraints] == ["cell", "layer_spacing"]
    assert space.valid_mask(_unstrained(member)).all()
    assert (material.target, material.target_unit, material.target_lower_bound) == ("gap", "eV", 0.0)
    assert (material.dataset is None) == (member.name != "ws2"), "WS2 ships its GPAW table, the others nothing"
    assert material.reference_cell == ReferenceCell((member.a0, member.a0, member.c0), (90.0, 90.0, 120.0))
    assert material.applied_field == AppliedField("efield_V_per_A", axis=2)
    assert list(material.conventions) == ["fractional", "cartesian"] and material.symmetries == SYMMETRIES
    assert member.pbe_gap_eV is not None and 0.9 < member.pbe_gap_eV < 2.0


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_the_vacuum_rule_uses_the_members_own_height(member: MX2) -> None:
    x = _unstrained(member)
    assert member.vacuum_gap(x[None])[0] == pytest.approx(member.c0 - 2 * member.d)
    # the flattest cell the rule allows: c with exactly MIN_VACUUM left (fractional)
    x[2] = MIN_VACUUM / (1 - 2 * member.d / member.c0)
    get_material(member.name).structure(x * [1, 1, 1.001, 1, 1, 1, 1])
    with pytest.raises(DesignError, match=f"between the {member.chalcogen} planes"):
        get_material(member.name).structure(x * [1, 1, 0.99, 1, 1, 1, 1])
    # in the box, but c so tilted that the layers nearly touch
    tilted = np.array([member.a0, member.a0, 1.19 * member.c0, 72.1, 72.1, 144.0, 0.0])
    assert "layer_spacing" in str(get_material(member.name).space.problems(tilted)[0])


def test_symmetries_keep_every_members_box() -> None:
    rng = np.random.default_rng(0)
    for name in FAMILY:
        space = get_material(name).space
        X = space.from_unit(rng.random((50, 7)))
        for sym in SYMMETRIES:
            U = sym.apply(space.to_unit(X))
            assert ((U >= 0) & (U <= 1)).all()
            assert np.allclose(space.valid_mask(space.from_unit(U)), space.valid_mask(X))


def test_bad_points_and_members_are_refused() -> None:
    ws2 = get_material("ws2")
    with pytest.raises(DesignError, match="expected one WS2 design point"):
        ws2.metadata(np.zeros((2, 7)))
    with pytest.raises(DesignError, match="degenerate WS2 cell"):
        ws2.structure(np.array([3.18, 3.18, 12.3, 60.0, 60.0, 120.0, 0.0]))
    with pytest.raises(ConfigError, match="thinner than c0"):
        MX2("flat", "W", "S", a0=3.18, c0=3.0, d=1.6)
    with pytest.raises(ConfigError, match="re-bound"):
        WS2.space(upper={"colour": 1.0})


# -- MoS2 is what it was ---------------------------------------------------------------------
def test_mos2_keeps_its_data_constants_bounds_and_rules() -> None:
    assert (A0, C0, D_S) == (3.16, 12.30, 1.564)
    space = mos2_space()
    assert space.lower.tolist() == [0.8 * 3.16, 0.8 * 3.16, 9.836, 72.0, 72.0, 96.0, -1.0]
    assert space.upper.tolist() == [3.7925, 3.7925, 1.2 * 12.30, 108.0, 108.0, 144.0, 1.0]
    assert [p.description for p in space.parameters][2] == "lattice constant c (layer + vacuum)"
    assert [(c.name, c.message) for c in space.constraints] == [
        (
            "cell",
            "alpha, beta, gamma do not form a cell (need each in (0, 180) and a positive "
            "Gram determinant 1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ)",
        ),
        (
            "layer_spacing",
            "layer spacing V/(a b sin γ) leaves less than 3 Å of vacuum between the S planes of neighbouring layers",
        ),
    ]
    assert MOS2 is get_material("mos2") and MOS2.space.parameters == space.parameters
    assert MOS2.description == "monolayer 2H-MoS2: PBE band gap under strain and out-of-plane field"
    assert MOS2.dataset is not None and len(MOS2.dataset().X) > 1000
    assert MOS2.symmetries == SYMMETRIES and MOS2.reference_cell == ReferenceCell((3.16, 3.16, 12.3), (90, 90, 120))


def test_mos2_structures_are_unchanged() -> None:
    x = np.array([3.3, 3.1, 11.0, 85.0, 95.0, 118.0, -0.4])
    s = build_structure(x)
    assert [e.symbol for e in s.species] == ["Mo", "S", "S"]
    dz = 1.564 / 12.30
    assert s.frac_coords.tolist() == [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + dz], [2 / 3, 1 / 3, 0.5 - dz]]
    assert s.properties == {"efield_V_per_A": -0.4}
    assert get_material("mos2").structure(x, "cartesian") == build_structure(x, convention="cartesian")
    with pytest.raises(DesignError, match="MoS2 cell too flat for a monolayer"):
        build_structure(np.array([3.16, 3.16, 4.0, 90.0, 90.0, 120.0, 0.0]))


def test_a_member_of_ones_own_is_a_material() -> None:
    mine = mx2_material(MX2("ws2_mine", "W", "S", a0=3.2, c0=12.5, d=1.58))
    assert mine.dataset is None and mine.space.upper[0] == pytest.approx(3.84)
    assert mine.conventions["fractional"] is mine.build
