"""Materials registry and the MoS2 design space, checked against the bundled data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent.core.errors import ConfigError, UnknownNameError
from agent.core.materials import (
    AppliedField,
    Material,
    ReferenceCell,
    available_materials,
    base,
    get_material,
    load_dataset,
    register_material,
)
from agent.core.materials.mos2 import (
    MIN_VACUUM,
    cell_gram_determinant,
    cell_is_valid,
    layer_spacing,
    leaves_vacuum,
    vacuum_gap,
)
from agent.core.observations import Observations
from agent.core.space import Parameter

UNSTRAINED = np.array([3.16, 3.16, 12.30, 90.0, 90.0, 120.0, 0.0])


@pytest.fixture(scope="module")
def data() -> Observations:
    return load_dataset("mos2")


def test_registry_finds_mos2() -> None:
    m = get_material("mos2")
    assert "mos2" in available_materials()
    assert m.target == "gap" and m.target_unit == "eV" and m.target_lower_bound == 0.0
    assert m.space.names == ["a", "b", "c", "alpha", "beta", "gamma", "efield"]
    assert m.metadata(UNSTRAINED) == {"efield_V_per_A": 0.0}


def test_unknown_material_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="mos2") as info:
        get_material("graphene")
    assert "graphene" in str(info.value)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_material(get_material("mos2"))


def test_register_new_material(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    toy = dataclasses.replace(get_material("mos2"), name="toy", dataset=None)
    assert register_material(toy) is toy
    assert get_material("toy") is toy
    assert available_materials() == sorted(["mos2", "mose2", "mote2", "toy", "ws2", "wse2"])


def test_material_rejects_target_clashing_with_parameter() -> None:
    with pytest.raises(ConfigError, match="clashes"):
        dataclasses.replace(get_material("mos2"), name="bad", target="a")
    assert isinstance(get_material("mos2"), Material)


def test_reversed_bounds_raise() -> None:
    with pytest.raises(ConfigError, match="reversed"):
        Parameter("a", 3.8, 2.5, "Å")


def test_every_bundled_row_is_valid(data: Observations) -> None:
    space = get_material("mos2").space
    assert space.valid_mask(data.X).all()
    assert cell_is_valid(data.X).all() and leaves_vacuum(data.X).all()
    # the data's smallest layer spacing: 4.62 Å, i.e. 3.45 Å of vacuum (fractional)
    assert layer_spacing(data.X).min() == pytest.approx(4.6218, abs=1e-3)
    assert vacuum_gap(data.X).min() == pytest.approx(3.4464, abs=1e-3)


def test_cell_constraint_on_impossible_angles() -> None:
    X = np.tile(UNSTRAINED, (5, 1))
    X[0, 3:6] = [90, 90, 120]  # fine
    X[1, 3:6] = [30, 30, 120]  # gamma > alpha + beta: no cell
    X[2, 3:6] = [170, 170, 170]  # sum > 360
    X[3, 3:6] = [0, 90, 90]  # zero angle
    X[4, 3:6] = [90, 90, 180]  # flat
    assert cell_is_valid(X).tolist() == [True, False, False, False, False]
    assert cell_gram_determinant(90, 90, 120) == pytest.approx(0.75)
    assert cell_gram_determinant(72, 72, 144) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(layer_spacing(X[1:])).all()
    assert not leaves_vacuum(X[1:]).any()


def test_tiny_spacing_inside_the_box_is_rejected() -> None:
    space = get_material("mos2").space
    x = np.array([3.16, 3.16, 14.7, 72.1, 72.1, 144.0, 0.0])  # in bounds, nearly coplanar c
    assert cell_is_valid(x[None]).all()
    assert layer_spacing(x[None])[0] < 2.0
    assert not space.valid_mask(x).any()
    assert "layer_spacing" in str(space.problems(x)[0])


def test_spacing_of_unstrained_cell() -> None:
    assert layer_spacing(UNSTRAINED[None])[0] == pytest.approx(12.30)
    assert vacuum_gap(UNSTRAINED[None], "cartesian")[0] == pytest.approx(12.30 - 2 * 1.564)
    assert vacuum_gap(UNSTRAINED[None])[0] > MIN_VACUUM
    with pytest.raises(ConfigError):
        vacuum_gap(UNSTRAINED[None], "polar")  # type: ignore[arg-type]


# -- what the DFT oracles and the strain features ask of a material -------------------------
def test_mos2_declares_its_conventions_field_and_reference_cell() -> None:
    m = get_material("mos2")
    assert list(m.conventions) == ["fractional", "cartesian"] and m.convention() == "fractional"
    frac, cart = m.structure(UNSTRAINED), m.structure(UNSTRAINED, "cartesian")
    assert frac.frac_coords[1, 2] == pytest.approx(0.5 + 1.564 / 12.30)
    assert cart.cart_coords[1, 2] - cart.cart_coords[0, 2] == pytest.approx(1.564)
    assert m.applied_field == AppliedField("efield_V_per_A", axis=2)
    assert m.field_strength(np.array([3.16, 3.16, 12.30, 90.0, 90.0, 120.0, -0.7])) == -0.7
    assert m.reference_cell == ReferenceCell((3.16, 3.16, 12.30), (90.0, 90.0, 120.0))
    assert m.reference_cell.value("c") == 12.30 and m.reference_cell.value("gamma") == 120.0
    with pytest.raises(ConfigError, match="no atomic-position convention 'polar'"):
        m.structure(UNSTRAINED, "polar")


def test_a_material_without_conventions_or_field() -> None:
    plain = dataclasses.replace(get_material("mos2"), name="plain", conventions={}, applied_field=None)
    assert plain.convention() is None and plain.field_strength(UNSTRAINED) == 0.0
    assert sorted(s.symbol for s in plain.structure(UNSTRAINED).species) == ["Mo", "S", "S"]
    with pytest.raises(ConfigError, match="it has none"):
        plain.convention("fractional")
    unlabelled = dataclasses.replace(plain, name="unlabelled", applied_field=AppliedField("missing"))
    with pytest.raises(ConfigError, match="declares the field 'missing', but its metadata carries none"):
        unlabelled.field_strength(UNSTRAINED)


def test_declarations_are_checked() -> None:
    mos2 = get_material("mos2")
    with pytest.raises(ConfigError, match="first of its conventions"):
        dataclasses.replace(mos2, name="odd", conventions={"cartesian": mos2.conventions["cartesian"]})
    with pytest.raises(ConfigError, match="axis"):
        AppliedField("efield", axis=3)
    with pytest.raises(ConfigError, match="not a cell"):
        ReferenceCell((3.16, 0.0, 12.3), (90.0, 90.0, 120.0))
    with pytest.raises(UnknownNameError, match="cell parameter"):
        ReferenceCell((3.16, 3.16, 12.3), (90.0, 90.0, 120.0)).value("efield")
