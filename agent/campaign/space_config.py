"""A design space declared in the campaign file (``[space]``), and targets as ranges.

A lab hooking a robot to innloop has a recipe, not a crystal: temperatures, times, a
count of steps, a choice of catalyst, a budget over reagents. ``[space]`` declares it --
parameters, linear constraints, the property and its physical limits, symmetries if any
-- and becomes a `Material` with no structure builder, so the table, http and plugin
oracles measure it and no Python is written. Each parameter is checked on its own, so
every parameter's mistakes are reported together with the rest of the file's; checks
across parameters (names given twice, constraints, symmetries) follow once every
parameter is itself right, as other checks that need another field do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.campaign.config_errors import NO_VALUE, Spec
from agent.core.errors import ConfigError
from agent.core.materials import Material, Symmetry, get_material
from agent.core.space import DesignSpace, Parameter, linear_constraint
from agent.core.targets import TargetRange

__all__ = [
    "ConstraintSpec",
    "ParameterSpec",
    "PropertySpec",
    "SpaceSpec",
    "SymmetrySpec",
    "TargetSpec",
    "material_in",
    "target_problems",
]

DEFAULT_WINDOW = 0.1


class TargetSpec(Spec):
    """One design target: ``value`` ± ``window`` (default 0.1), or a range ``low``..``high``
    (either alone for a one-sided goal, e.g. ``low = 0.8`` for "at least 0.8")."""

    value: float | None = None
    window: float | None = Field(default=None, gt=0)
    low: float | None = None
    high: float | None = None
    hits: int = Field(default=50, ge=1)  # diverse hits wanted for this target
    # distinct regions (families) of the believed solution set that must each hold a hit;
    # unset: hits are still spread over DEFAULT_FAMILIES but only ``hits`` is waited for;
    # 1: no spreading, the likeliest hits wherever they are
    families: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _hits_from_families(cls, data: Any) -> Any:
        # families without hits: one hit per family is what was asked for
        families = data.get("families") if isinstance(data, dict) else None
        if type(families) is int and families >= 1 and "hits" not in data:  # not a bool
            return {**data, "hits": data["families"]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_window(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("value") is not None and data.get("window") is None:
            return {**data, "window": DEFAULT_WINDOW}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> TargetSpec:
        ranged = self.low is not None or self.high is not None
        if self.value is not None and ranged:
            raise ValueError("give either value (± window) or low/high, not both")
        if self.value is None and not ranged:
            raise ValueError("give value (± window), or low and/or high")
        if self.value is None and self.window is not None:
            raise ValueError("window goes with value; a range is given by low and/or high")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.families is not None and self.families > self.hits:
            raise ValueError(f"families ({self.families}) each need a hit: ask for at least {self.families} hits")
        return self

    @property
    def range(self) -> TargetRange:
        if self.value is not None:
            return TargetRange.around(self.value, self.window or DEFAULT_WINDOW)
        lo = -math.inf if self.low is None else self.low
        return TargetRange(lo, math.inf if self.high is None else self.high)

    @property
    def short(self) -> str:
        """The target in a few characters: its value (``1``), or its range's label (``≥ 0.9``)."""
        return f"{self.value:g}" if self.value is not None else self.range.label()

    def to_dict(self) -> dict[str, Any]:
        """The keys the file gave (unset ones left out, so older campaigns keep their fingerprint)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}


class ParameterSpec(Spec):
    """One parameter: ``type`` continuous (``lower``, ``upper``, ``unit``, ``log``), integer
    (whole ``lower``, ``upper``) or categorical (``values``)."""

    name: str
    type: Literal["continuous", "integer", "categorical"] = "continuous"
    lower: float | None = None
    upper: float | None = None
    unit: str = ""
    log: bool = False
    values: list[str] | None = None

    @model_validator(mode="after")
    def _builds(self) -> ParameterSpec:
        try:
            self.parameter()  # every rule of `Parameter`, reported at this parameter's place
        except ValueError as exc:
            raise PydanticCustomError(
                "innloop_many", "bad parameter", {"problems": [((), str(exc), NO_VALUE)]}
            ) from None
        return self

    def parameter(self) -> Parameter:
        try:
            if self.type == "categorical":
                if self.lower is not None or self.upper is not None or self.log:
                    raise ConfigError("a categorical parameter takes values, not lower/upper/log")
                return Parameter.categorical(self.name, self.values or [])
            if self.values is not None:
                raise ConfigError(f"only a categorical parameter lists values (this one is {self.type})")
            if self.lower is None or self.upper is None:
                raise ConfigError(f"a {self.type} parameter needs lower and upper")
            return Parameter(self.name, self.lower, self.upper, self.unit, "", self.type, (), self.log)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ConstraintSpec(Spec):
    """``Σ coefficients[name] · name <= bound`` over continuous or integer parameters."""

    name: str
    coefficients: dict[str, float] = Field(min_length=1)
    bound: float


class SymmetrySpec(Spec):
    """A relabelling that leaves the property unchanged: ``swap`` pairs of interchangeable
    parameters (same type and bounds), ``mirror`` continuous parameters whose scale is
    symmetric about its middle."""

    name: str
    swap: list[list[str]] = Field(default_factory=list)
    mirror: list[str] = Field(default_factory=list)


class PropertySpec(Spec):
    """The measured property: its column name, unit and physical floor and ceiling."""

    name: str
    unit: str = ""
    floor: float | None = None
    ceiling: float | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError("must be a column name made of letters, digits and '_'")
        return name

    @model_validator(mode="after")
    def _ordered(self) -> PropertySpec:
        if self.floor is not None and self.ceiling is not None and not self.floor < self.ceiling:
            raise ValueError(f"floor ({self.floor:g}) must be below ceiling ({self.ceiling:g})")
        return self


class SpaceSpec(Spec):
    """A design space in the campaign file, made into a `Material` without a structure builder."""

    name: str = "space"
    property: PropertySpec
    parameters: list[ParameterSpec] = Field(min_length=1)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    symmetries: list[SymmetrySpec] = Field(default_factory=list)

    @field_validator("parameters")
    @classmethod
    def _distinct(cls, parameters: list[ParameterSpec], info: ValidationInfo) -> list[ParameterSpec]:
        problems: list[tuple[tuple[int | str, ...], str, Any]] = []
        names = [p.name for p in parameters]
        for i, n in enumerate(names):
            if n in names[:i]:
                problems.append(((i, "name"), "names a parameter a second time", n))
        prop = info.data.get("property")
        if isinstance(prop, PropertySpec) and prop.name in names:
            problems.append(((names.index(prop.name), "name"), "is the property's name too", prop.name))
        if problems:
            raise PydanticCustomError("innloop_many", "several parameter problems", {"problems": problems})
        return parameters

    @field_validator("constraints", "symmetries")
    @classmethod
    def _fit_parameters(
        cls, specs: list[ConstraintSpec] | list[SymmetrySpec], info: ValidationInfo
    ) -> list[ConstraintSpec] | list[SymmetrySpec]:
        """Each constraint and symmetry against the parameters (skipped while those are wrong)."""
        given = info.data.get("parameters")
        if given is None:
            return specs
        params = [p.parameter() for p in given]
        problems: list[tuple[tuple[int | str, ...], str, Any]] = []
        for i, spec in enumerate(specs):
            try:
                if isinstance(spec, ConstraintSpec):
                    linear_constraint(spec.name, spec.coefficients, spec.bound, params)
                elif isinstance(spec, SymmetrySpec):
                    _symmetry(spec, params)
            except ConfigError as exc:
                problems.append(((i,), str(exc), NO_VALUE))
        if problems:
            raise PydanticCustomError("innloop_many", "several problems", {"problems": problems})
        return specs

    def material(self) -> Material:
        params = tuple(p.parameter() for p in self.parameters)
        constraints = tuple(linear_constraint(c.name, c.coefficients, c.bound, params) for c in self.constraints)
        space = DesignSpace(self.name, params, constraints)
        return Material(
            name=self.name,
            description=f"design space {self.name!r} declared in the campaign file",
            space=space,
            target=self.property.name,
            target_unit=self.property.unit,
            target_lower_bound=self.property.floor,
            target_upper_bound=self.property.ceiling,
            symmetries=tuple(_symmetry(s, params) for s in self.symmetries),
        )


def _symmetry(spec: SymmetrySpec, params: Sequence[Parameter]) -> Symmetry:
    """The unit-box map of ``spec``: swapped parameters trade their columns (their one-hot
    blocks for categories), mirrored ones map ``u -> 1 - u``."""
    names = [p.name for p in params]
    starts, col = {}, 0
    for p in params:
        starts[p.name] = col
        col += p.width
    perm = list(range(col))
    problems = []
    for pair in spec.swap:
        if len(pair) != 2 or any(n not in names for n in pair):
            problems.append(f"swap {pair} must name two parameters of the space")
            continue
        a, b = (params[names.index(n)] for n in pair)
        if (a.kind, a.lower, a.upper, a.values, a.log) != (b.kind, b.lower, b.upper, b.values, b.log):
            problems.append(f"swap {pair}: the two parameters differ in type, bounds or values")
            continue
        for k in range(a.width):
            perm[starts[a.name] + k], perm[starts[b.name] + k] = starts[b.name] + k, starts[a.name] + k
    flips = []
    for n in spec.mirror:
        if n not in names or params[names.index(n)].kind != "continuous":
            problems.append(f"mirror {n!r} must name a continuous parameter")
        else:
            flips.append(starts[n])
    if not spec.swap and not spec.mirror:
        problems.append("swaps or mirrors nothing")
    if problems:
        raise ConfigError("; ".join(problems))
    return Symmetry(spec.name, tuple(perm), tuple(flips))


@functools.lru_cache(maxsize=16)
def _data_range(material: str) -> tuple[float, float, str] | None:
    """(min, max, words) of a registered material's bundled target column; None without data."""
    mat = get_material(material)
    if mat.dataset is None or not mat.dataset_bounds_targets:
        return None
    y = mat.dataset().y
    lo, hi = float(y.min()), float(y.max())
    return lo, hi, f"the {material} data's {mat.target} range [{lo:g}, {hi:g}] {mat.target_unit}"


def material_in(data: dict[str, Any]) -> Material | None:
    """The material the fields validated so far describe (``[space]`` or a registered name),
    or None while either is itself a mistake."""
    if "space" not in data or "material" not in data:
        return None
    space, name = data["space"], data["material"]
    if isinstance(space, SpaceSpec):
        return None if name is not None else space.material()
    return get_material(name) if isinstance(name, str) else None


def target_problems(
    targets: list[TargetSpec], material: Material | None
) -> list[tuple[tuple[int | str, ...], str, Any]]:
    """Targets the property cannot reach: a value outside the bundled data's range (or a
    window as wide), a range beyond the property's physical floor or ceiling."""
    problems: list[tuple[tuple[int | str, ...], str, Any]] = []
    if material is None:
        return problems
    span = _data_range(material.name) if material.dataset is not None else None
    floor, ceiling = material.target_lower_bound, material.target_upper_bound
    for i, t in enumerate(targets):
        if span is not None and t.value is not None:
            lo, hi, where = span
            if not lo <= t.value <= hi:
                problems.append(((i, "value"), f"outside {where}", t.value))
            if t.window is not None and t.window >= hi - lo:
                problems.append(((i, "window"), f"must be smaller than {where}", t.window))
        r = t.range
        if span is not None and t.value is None and (r.lo > span[1] or r.hi < span[0]):
            problems.append(((i,), f"does not overlap {span[2]}", r.label()))
        if ceiling is not None and r.lo > ceiling:
            problems.append(((i,), f"lies above the {material.target} ceiling {ceiling:g}", r.label()))
        if floor is not None and r.hi < floor:
            problems.append(((i,), f"lies below the {material.target} floor {floor:g}", r.label()))
    return problems
