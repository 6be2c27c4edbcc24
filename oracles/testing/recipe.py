"""A reaction-recipe emulator: what a lab's robot would measure, for the experiment example.

innloop's first users hook it to DFT; the next ones hook it to a robot whose design space
is a recipe. This is such a recipe, with a closed-form yield, so a campaign over a mixed
space (two categories, an integer, four numbers, a reagent budget) can be run, tested and
benchmarked end to end without a lab: a cross-coupling with a choice of catalyst and
solvent, equivalents of base, temperature, time (log scale), concentration and catalyst
loading (log scale). The yield in [0, 1] is conversion × selectivity:

- conversion ``1 - exp(-k t)``, with an Arrhenius rate per catalyst (its own activation
  energy and prefactor), times √loading, times the solvent's factor for that catalyst;
- selectivity falls with side reactions that grow with temperature and time
  (decomposition above each catalyst's tolerance) and with the distance of the base
  equivalents from the catalyst's optimum, and with dilution below 0.1 M.

The parameters are made up, shaped after textbook kinetics; every catalyst has a region
of yield ≥ 0.8 somewhere else in the space, so "hits that cover every family" is a real
question here. It is served like any plugin oracle: registered through the
``innloop.oracles`` entry point as ``recipe`` (innloop's own pyproject declares it), and
behind the lab server with ``python -m oracles.lab_server --oracle recipe``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from agent.core.errors import ConfigError
from agent.core.materials import Material, as_material
from agent.core.space import DesignSpace, Parameter, linear_constraint
from oracles.base import Handle, JobStatus, OracleRefused, Result, check_own, design_digest, designs_to_rows

__all__ = ["CATALYSTS", "SOLVENTS", "RecipeOracle", "recipe_space", "recipe_yield"]

CATALYSTS = ("Pd(PPh3)4", "Pd(dppf)Cl2", "XPhos-Pd-G3", "NiCl2(dppp)")
SOLVENTS = ("toluene", "dioxane", "DMF")
PROPERTY = "yield"  # a fraction in [0, 1]

# per catalyst: activation energy (kJ/mol), log10 prefactor (1/h at loading 1 mol%),
# decomposition onset (°C), optimal base equivalents
_EA = np.array([62.0, 55.0, 44.0, 70.0])
_LOG_A = np.array([8.4, 7.6, 6.2, 9.3])
_ONSET = np.array([95.0, 110.0, 75.0, 120.0])
_BASE_OPT = np.array([2.0, 3.0, 1.0, 4.0])
# solvent factor on the rate, per (catalyst, solvent)
_SOLVENT = np.array(
    [
        [1.0, 0.6, 0.25],
        [0.5, 1.0, 0.7],
        [0.8, 1.0, 0.3],
        [0.2, 0.5, 1.0],
    ]
)
_R = 8.314e-3  # kJ/(mol K)


def recipe_space() -> DesignSpace:
    """The recipe: catalyst, solvent, base equivalents, temperature, time, concentration, loading."""
    params = (
        Parameter.categorical("catalyst", CATALYSTS, "palladium or nickel precatalyst"),
        Parameter.categorical("solvent", SOLVENTS, "reaction solvent"),
        Parameter.integer("base_equiv", 1, 5, "equiv", "equivalents of K3PO4"),
        Parameter("temperature", 25.0, 140.0, "°C", "bath temperature"),
        Parameter("time", 0.25, 24.0, "h", "reaction time", log=True),
        Parameter("concentration", 0.02, 1.0, "M", "concentration of the limiting reagent"),
        Parameter("loading", 0.5, 10.0, "mol%", "catalyst loading", log=True),
    )
    budget = linear_constraint("reagent_budget", {"loading": 1.0, "concentration": 8.0}, 12.0, params)
    return DesignSpace("recipe", params, (budget,))


def recipe_yield(X: np.ndarray) -> np.ndarray:
    """Yields ``(n,)`` in [0, 1] of physical designs ``X (n, 7)`` (categories by position)."""
    X = np.asarray(X, dtype=np.float64).reshape(-1, 7)
    cat, sol = X[:, 0].astype(int), X[:, 1].astype(int)
    base, temp, hours, conc, load = X[:, 2], X[:, 3], X[:, 4], X[:, 5], X[:, 6]
    kelvin = temp + 273.15
    rate = 10.0 ** _LOG_A[cat] * np.exp(-_EA[cat] / (_R * kelvin)) * np.sqrt(load) * _SOLVENT[cat, sol]
    conversion = 1.0 - np.exp(-rate * hours)
    decomposition = 0.02 * hours * np.exp((temp - _ONSET[cat]) / 12.0)
    base_penalty = 0.06 * (base - _BASE_OPT[cat]) ** 2
    dilution = np.maximum(0.0, 0.1 - conc) * 3.0
    selectivity = np.exp(-(decomposition + base_penalty + dilution))
    return np.clip(conversion * selectivity, 0.0, 1.0)


class RecipeOracle:
    """Measures recipes with `recipe_yield` at once (optionally with seeded noise per design).

    Stateless: a handle carries its design and the result is recomputed from it, so a
    restarted process re-attaches to every job; re-sending a batch costs nothing.
    """

    name = "recipe"
    idempotent_submit: Literal[True] = True

    def __init__(self, material: str | Material | None = None, noise: float = 0.0) -> None:
        self.space = recipe_space()
        if material is not None:
            theirs = as_material(material).space
            if [(p.name, p.kind, p.values) for p in theirs.parameters] != [
                (p.name, p.kind, p.values) for p in self.space.parameters
            ]:
                raise ConfigError(
                    f"the recipe oracle measures {self.space.names} (categories {list(CATALYSTS)}, "
                    f"{list(SOLVENTS)}); the campaign's space {theirs.name!r} has {theirs.names}"
                )
        if not 0.0 <= noise <= 0.5:
            raise ConfigError(f"recipe oracle: noise must be in [0, 0.5], got {noise}")
        self.noise = float(noise)

    def submit(self, designs: Any) -> list[Handle]:
        rows = designs_to_rows(self.space, designs)
        now = time.time()
        return [
            Handle(self.name, uuid.uuid4().hex, row, native_id=design_digest(row), submitted_at=now) for row in rows
        ]

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        check_own(self.name, handles)
        return [JobStatus.COMPLETED for _ in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        out = []
        for h in handles:
            try:
                X = self.space.validate(self.space.from_rows([h.design], source=f"job {h.job_id}"))
            except Exception as exc:  # a handle whose design is not a recipe: refused, never guessed
                raise OracleRefused(f"handle {h.job_id!r} does not hold a recipe: {exc}") from exc
            value = float(recipe_yield(X)[0])
            if self.noise:
                seed = int.from_bytes(hashlib.sha256(design_digest(h.design).encode()).digest()[:8], "little")
                value = float(np.clip(value + np.random.default_rng(seed).normal(0.0, self.noise), 0.0, 1.0))
            out.append(
                Result(
                    h,
                    JobStatus.COMPLETED,
                    values={PROPERTY: round(value, 9)},
                    provenance={"oracle": self.name, "model": "closed-form recipe yield", "noise": self.noise},
                )
            )
        return out

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
