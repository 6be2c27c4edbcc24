"""Feasibility limits on a second measured property: the campaign file's ``[[constraints]]``.

A design can reach the target and still be worthless: a strained cell whose strain
energy no substrate could supply, a recipe whose cost is out of reach. A campaign may
therefore bound other values its oracle returns besides the target::

    [[constraints]]
    property = "strain_energy"   # a value the oracle's results carry
    max = 1.5                    # and/or min

A measurement is *feasible* when every constrained value is present and within its
bounds; a missing value is infeasible, never silently feasible, so an oracle that stops
returning a property can only cost hits, never fake them. Hits (`agent.campaign.state`)
are feasible in-window measurements; the loop models each property and weights the
acquisition by the probability of feasibility (`agent.campaign.feasibility`).

This module is pure (numbers and records in, masks and messages out) so that the config,
the state, the status and the report read feasibility the same way.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from agent.campaign.config_errors import Problem, Spec
from agent.campaign.ledger import LedgerRecord
from agent.core.errors import ConfigError
from agent.core.materials import Material
from oracles.base import NamesValues, Oracle

__all__ = [
    "UNMEASURED_AFTER",
    "LimitSpec",
    "check_oracle_values",
    "feasible",
    "limit_names",
    "limit_problems",
    "limit_values",
    "recent_results",
    "unmeasured",
    "unmeasured_message",
]

# the latest completed results that, none of them carrying a constrained property, stop a
# campaign whose oracle does not declare its values (`unmeasured`: it could never hit)
UNMEASURED_AFTER = 5


class LimitSpec(Spec):
    """One ``[[constraints]]`` entry: ``property`` and its ``min`` and/or ``max`` (inclusive)."""

    property: str
    min: float | None = None
    max: float | None = None

    @field_validator("property")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError("must be a value name made of letters, digits and '_'")
        return name

    @model_validator(mode="after")
    def _bounded(self) -> LimitSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max")
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self

    def bounds(self) -> tuple[float, float]:
        """``(lo, hi)``, an unset side infinite."""
        return (-math.inf if self.min is None else self.min, math.inf if self.max is None else self.max)

    def label(self) -> str:
        """The limit in a few characters: ``strain_energy ≤ 1.5``, ``0 ≤ cost ≤ 3``."""
        if self.min is None:
            return f"{self.property} ≤ {self.max:g}"
        if self.max is None:
            return f"{self.property} ≥ {self.min:g}"
        return f"{self.min:g} ≤ {self.property} ≤ {self.max:g}"

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Which ``values`` lie within the bounds (NaN, a missing value, never does)."""
        v = np.asarray(values, dtype=np.float64)
        lo, hi = self.bounds()
        with np.errstate(invalid="ignore"):
            return (v >= lo) & (v <= hi)

    def to_dict(self) -> dict[str, Any]:
        """The keys the file gave (an unset bound left out)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}


def limit_problems(names: Sequence[str | None], material: Material | None) -> list[Problem]:
    """Limits on what cannot be a second property: the target itself, a design parameter,
    a property named twice. ``names``: each entry's property, ``None`` where the entry has
    no usable name (that mistake is reported on its own); ``material`` None while it is
    itself a mistake (those checks wait). Names, not `LimitSpec` s, so that the checks run
    on entries that are wrong in other ways too and every mistake is reported at once."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            words = f"limits the same property as constraints.{seen[name]} (give min and max in one entry)"
            problems.append(((i, "property"), words, name))
        seen.setdefault(name, i)
        if material is None:
            continue
        if name == material.target:
            problems.append(((i, "property"), "is the target property; a target's range says where it must lie", name))
        elif name in material.space.names:
            problems.append(((i, "property"), "is a design parameter; bound it in the design space instead", name))
    return problems


def limit_names(entries: Any) -> list[str | None]:
    """The property each raw ``[[constraints]]`` entry names (as `limit_problems` takes them),
    ``None`` where it names none that could be valid; nothing when the section is no array."""
    if not isinstance(entries, list | tuple):
        return []
    out: list[str | None] = []
    for entry in entries:
        name = entry.get("property") if isinstance(entry, dict) else getattr(entry, "property", None)
        out.append(name if isinstance(name, str) and name.isidentifier() else None)
    return out


def limit_values(records: Iterable[LedgerRecord], limits: Sequence[LimitSpec]) -> np.ndarray:
    """``(n, c)``: each record's value of each limited property, NaN where it has none
    (a failed job, or a result without that value)."""
    listed = list(records)
    out = np.full((len(listed), len(limits)), np.nan)
    for i, r in enumerate(listed):
        values = (r.result.values or {}) if r.result.ok else {}
        out[i] = [_number(values.get(limit.property)) for limit in limits]
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def feasible(values: np.ndarray, limits: Sequence[LimitSpec]) -> np.ndarray:
    """``(n,)`` bool: every limited value present and within its bounds (all true without limits)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.ones(len(v), dtype=bool)
    for j, limit in enumerate(limits):
        ok &= limit.contains(v[:, j])
    return ok


def recent_results(records: Sequence[LedgerRecord]) -> list[LedgerRecord]:
    """The last `UNMEASURED_AFTER` completed results of ``records`` (in the order given: the
    state's canonical order, iteration by iteration, so a resumed run reads the same ones)."""
    return [r for r in records if r.result.ok][-UNMEASURED_AFTER:]


def unmeasured(
    records: Sequence[LedgerRecord], limits: Sequence[LimitSpec], *, known: Collection[int] = ()
) -> list[str]:
    """Limited properties that none of the `recent_results` carries, once there are
    `UNMEASURED_AFTER` of them and one of them is not ``known`` (by ledger ``seq``).

    The latest results only, and only once a new one came in (a run passes the results it
    found on opening as ``known``): the cause may be fixed between runs (a reference job
    rerun, a column filled in), and a campaign that stopped here must resume, collect its
    jobs and show by its new results whether the fix worked, not stop on its old ones.
    """
    done = recent_results(records)
    if not limits or len(done) < UNMEASURED_AFTER or all(r.seq in known for r in done):
        return []
    values = limit_values(done, limits)
    return [limit.property for j, limit in enumerate(limits) if not np.isfinite(values[:, j]).any()]


def unmeasured_message(
    names: Sequence[str], oracle: str, records: Sequence[LedgerRecord], *, declared: bool = False
) -> str:
    """What `unmeasured` found, for the user: what the latest results carried instead and
    what may be the cause. ``declared``: the oracle says it measures ``names`` (`NamesValues`),
    so the campaign goes on and this is a warning; otherwise it stops here."""
    recent = recent_results(records)
    returned = sorted({k for r in recent for k in (r.result.values or {})})
    said = (
        f"constraints: the last {len(recent)} completed results of the {oracle} oracle carry no "
        f"{', '.join(map(repr, names))} (their values: {', '.join(returned) or 'none'}), so none of them can be a hit"
    )
    if declared:
        return (
            f"{said}, although the oracle declares it; the campaign goes on, counting them infeasible. Check the "
            "oracle's setup (e.g. a failed reference calculation that the property is computed from)"
        )
    return (
        f"{said}. The cause may be the oracle (it does not measure that value) or its setup (a failed reference "
        "calculation, an empty column, a lab that stopped reporting it). Fix it and run again: the campaign resumes "
        "with its results kept and checks the new ones; if the oracle cannot measure it, remove the constraint and "
        "start a new campaign"
    )


def check_oracle_values(limits: Sequence[LimitSpec], oracle: Oracle) -> None:
    """Before anything is submitted: a `ConfigError` when the oracle declares the values its
    results carry (`NamesValues`: the table, the mock, GPAW …, whatever implements
    ``value_names``) and a limited property is not among them. An oracle that declares
    nothing is checked on its latest results instead (`unmeasured`), and only then."""
    if not limits or not isinstance(oracle, NamesValues):
        return
    names = oracle.value_names()
    missing = [limit.property for limit in limits if limit.property not in names]
    if missing:
        raise ConfigError(
            f"constraints: the {oracle.name} oracle does not measure {', '.join(map(repr, missing))} "
            f"(its results carry: {', '.join(sorted(names)) or 'nothing'}); a campaign limited on it could never "
            "hit. Remove the constraint or use an oracle that returns it (for the table oracle, a column of its CSV)"
        )
