"""Design parameters and constraints: what one axis of a design space may be.

A lab's recipe mixes kinds -- a temperature (continuous, maybe on a log scale), a number
of steps (integer), a choice of catalyst (categorical) -- and budgets such as "the
reagents add up to at most 1 M" (a linear constraint). Each is declared here once, so
the space (`agent.core.space`) can relax it for the models and snap it back for people.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent.core.errors import ConfigError

__all__ = ["KINDS", "Constraint", "Kind", "Parameter", "linear_constraint"]

Kind = Literal["continuous", "integer", "categorical"]
KINDS: tuple[str, ...] = ("continuous", "integer", "categorical")


# what pandas reads as a missing value rather than text, by default (its `na_values`)
_MISSING = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>"}
_MISSING |= {"N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _text_in_csv(value: str) -> bool:
    """Whether a category name survives a CSV round trip as text: not a number, a boolean or
    a missing-value marker (every table innloop writes and reads back holds category names)."""
    try:
        float(value)
    except ValueError:
        return value.strip() not in _MISSING and value.strip().lower() not in ("true", "false")
    return False


@dataclass(frozen=True)
class Parameter:
    """One design variable with closed bounds ``[lower, upper]`` in ``unit``.

    ``kind``: ``"continuous"`` (optionally ``log``: uniform in log10, bounds > 0),
    ``"integer"`` (integer bounds) or ``"categorical"`` (``values``, the category names;
    a design holds the category's position ``0..k-1`` and tables show its name). Build
    the last two with `Parameter.integer` and `Parameter.categorical`.
    """

    name: str
    lower: float = 0.0
    upper: float = 1.0
    unit: str = ""
    description: str = ""
    kind: Kind = "continuous"
    values: tuple[str, ...] = ()
    log: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"parameter name {self.name!r} must be a non-empty identifier")
        if self.kind not in KINDS:
            raise ConfigError(f"parameter {self.name!r}: unknown type {self.kind!r}; use one of {list(KINDS)}")
        if self.kind == "categorical":
            self._check_categories()
        elif self.values:
            raise ConfigError(f"parameter {self.name!r}: only a categorical parameter lists values")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper)):
            raise ConfigError(f"parameter {self.name!r}: bounds must be finite numbers")
        if not self.lower < self.upper:
            raise ConfigError(
                f"parameter {self.name!r}: lower bound {self.lower} is not below "
                f"upper bound {self.upper} (reversed or empty bounds)"
            )
        if self.kind == "integer" and not (float(self.lower).is_integer() and float(self.upper).is_integer()):
            raise ConfigError(f"integer parameter {self.name!r}: bounds {self.lower}, {self.upper} must be integers")
        if self.log and (self.kind != "continuous" or self.lower <= 0):
            raise ConfigError(f"parameter {self.name!r}: a log scale needs a continuous parameter with bounds > 0")

    def _check_categories(self) -> None:
        if len(self.values) < 2:
            what = "an empty category list" if not self.values else "one category (a constant, not a parameter)"
            raise ConfigError(f"categorical parameter {self.name!r} has {what}; list at least two values")
        if not all(isinstance(v, str) and v for v in self.values):
            raise ConfigError(f"categorical parameter {self.name!r}: values must be non-empty strings")
        if read_back := [v for v in self.values if not _text_in_csv(v)]:
            raise ConfigError(
                f"categorical parameter {self.name!r}: values {read_back} would read back from a CSV file as numbers, "
                "booleans or missing values; give names with letters in them (e.g. 'x1' for '1')"
            )
        if dupes := sorted({v for v in self.values if self.values.count(v) > 1}):
            raise ConfigError(f"categorical parameter {self.name!r}: values {dupes} are listed twice")
        if (self.lower, self.upper) != (0.0, float(len(self.values) - 1)):
            raise ConfigError(f"categorical parameter {self.name!r}: use Parameter.categorical to build it")

    @classmethod
    def integer(cls, name: str, lower: int, upper: int, unit: str = "", description: str = "") -> Parameter:
        return cls(name, float(lower), float(upper), unit, description, kind="integer")

    @classmethod
    def categorical(cls, name: str, values: Sequence[str], description: str = "") -> Parameter:
        vals = tuple(values)
        return cls(name, 0.0, float(max(len(vals) - 1, 0)) or 1.0, "", description, "categorical", vals)

    @property
    def width(self) -> int:
        """Columns this parameter takes in the unit box: one, or one per category (one-hot)."""
        return len(self.values) if self.kind == "categorical" else 1

    def describe(self, value: float) -> str:
        """One value in words, e.g. ``catalyst='Pd'`` or ``steps=3``."""
        if self.kind == "categorical":
            i = int(value)
            return f"{self.name}={self.values[i]!r}" if 0 <= i < len(self.values) else f"{self.name}=#{value:g}"
        return f"{self.name}={value:.6g}" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class Constraint:
    """A physical validity rule beyond the box, e.g. "the three angles form a cell".

    ``check`` maps physical points ``(n, d)`` to a boolean mask ``(n,)`` of valid rows.
    """

    name: str
    check: Callable[[np.ndarray], np.ndarray]
    message: str


def linear_constraint(
    name: str, coefficients: Mapping[str, float], bound: float, parameters: Sequence[Parameter]
) -> Constraint:
    """``Σ aᵢ xᵢ <= bound`` over continuous or integer ``parameters`` named in ``coefficients``
    (physical units). Raises `ConfigError` for an unknown name or a categorical parameter."""
    by_name = {p.name: (j, p) for j, p in enumerate(parameters)}
    problems = []
    for key, a in coefficients.items():
        if key not in by_name:
            problems.append(f"unknown parameter {key!r}")
        elif by_name[key][1].kind == "categorical":
            problems.append(f"{key!r} is categorical (a sum needs numbers)")
        elif not np.isfinite(a):
            problems.append(f"coefficient of {key!r} is not a finite number")
    if not coefficients:
        problems.append("no coefficients")
    if not np.isfinite(bound):
        problems.append("the bound is not a finite number")
    if problems:
        raise ConfigError(f"constraint {name!r}: " + "; ".join(problems))
    cols = np.array([by_name[k][0] for k in coefficients])
    coef = np.array([float(v) for v in coefficients.values()])
    terms = " + ".join(f"{v:g}·{k}" for k, v in coefficients.items())

    def check(X: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(X, dtype=np.float64)[:, cols] @ coef <= bound + 1e-9 * max(1.0, abs(bound)))

    return Constraint(name, check, f"{terms} must be at most {bound:g}")
