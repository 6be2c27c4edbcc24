"""What a report reads: the campaign from disk, its last models, and candidate designs per target.

Everything comes from ``state/<campaign>/`` through `agent.campaign.runner.open_campaign`, which
re-hashes every committed iteration first, so a report never draws from damaged files.
Candidates are what the campaign would propose now: the last committed generator's
samples through the loop's own candidate funnel (`agent.campaign.plan.loop_funnel`, run by
`agent.design.funnel.design`) on the last committed surrogate, those predicted in the
target's window; or, for an oracle that measures a listed pool only (``table``), the pool
rows the surrogate puts in the window. The models come with the acquisition's model the
campaign scores with (`agent.campaign.plan.with_acquisition_model`); a ``[transfer]``
source's prior mean joins it only when its model is already cached (a note says when not).

A target is a range (`agent.core.targets.TargetRange`): ``value ± window`` or
``low..high``, possibly one-sided. Where a report needs one number (the generator's
condition, a table's target column, a plot's legend) it uses the one the loop aims at,
`agent.campaign.plan.anchors`; every "in the window" test uses the range itself.
Materials that are not strained crystals (a `[space]` recipe) get no strain, switching or
structure sections: `crystal_gaps` says which are left out and why, for the report's notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.plan import anchors, loop_funnel, with_acquisition_model
from agent.campaign.runner import last_models, open_campaign, oracle_for
from agent.campaign.state import CampaignState
from agent.campaign.store import CampaignStore
from agent.campaign.transfer import SourceNotCached, load_transfer
from agent.core.errors import InnloopError, StateError, one_line
from agent.core.materials import Material
from agent.core.observations import Observations
from agent.core.space import DesignSpace
from agent.core.targets import TargetRange
from agent.design.funnel import design
from agent.design.trained import TrainedModels, training_data
from agent.models.transfer import TransferSource
from oracles import oracle_class
from oracles.base import MeasuresPool

__all__ = [
    "CrystalGaps",
    "ReportInputs",
    "ReportTargets",
    "Target",
    "candidate_sets",
    "crystal_gaps",
    "design_frame",
    "load_inputs",
    "report_targets",
]


@dataclass(frozen=True)
class Target:
    """A target: the ``range`` a measurement must fall in to count for it, the one number
    that stands for it (``value``: the written value, or the range's anchor) and the unit."""

    range: TargetRange
    value: float
    unit: str = ""

    @classmethod
    def around(cls, value: float, window: float, unit: str = "") -> Target:
        return cls(TargetRange.around(value, window), value, unit)

    @property
    def window(self) -> float | None:
        """Half-width of a two-sided target (the written window of ``value ± window``); None if one-sided."""
        if self.range.window is not None:
            return self.range.window
        return None if self.range.one_sided else 0.5 * (self.range.hi - self.range.lo)

    @property
    def written_as_value(self) -> bool:
        return self.range.value is not None

    @property
    def label(self) -> str:
        """``1 eV`` for ``value ± window`` (as reports always said), ``≥ 0.8 %`` for a range."""
        if self.written_as_value:
            return f"{self.value:g} {self.unit}".rstrip()
        return self.range.label(self.unit)

    @property
    def key(self) -> float | str:
        """What a table's ``target`` column holds: the value, or the range's label (no unit)."""
        return self.value if self.written_as_value else self.range.label()

    def contains(self, y: np.ndarray) -> np.ndarray:
        return self.range.contains(y)


@dataclass(frozen=True)
class CrystalGaps:
    """Why sections that need a strained crystal are left out (empty: they are not):
    ``strain`` for the strain figures and the switching pairs (a reference cell, plain
    parameters), ``structures`` for the CIF/POSCAR files (a structure builder)."""

    strain: str = ""
    structures: str = ""


def crystal_gaps(material: Material) -> CrystalGaps:
    if material.build is None:
        why = f"the designs of {material.name!r} are not crystals (it has no structure builder)"
        return CrystalGaps(why, why)
    if material.reference_cell is None:
        return CrystalGaps(f"{material.name!r} declares no unstrained reference cell, so its designs have no strains")
    if not material.space.plain:
        return CrystalGaps(f"{material.name!r} has integer or categorical parameters, which have no strain")
    return CrystalGaps()


@dataclass
class ReportInputs:
    """The campaign's state and store, its material, last models and the bundled data (if any).

    ``models``: the last committed iteration's (``models_iteration``) with the acquisition's
    model fitted on every observation when the campaign scores with one.
    """

    store: CampaignStore
    state: CampaignState
    config: CampaignConfig
    material: Material
    models: TrainedModels | None
    models_iteration: int | None
    pool_oracle: bool
    data: Observations | None
    notes: list[str] = field(default_factory=list)


def load_inputs(state_dir: str | Path, name: str) -> ReportInputs:
    """Open campaign ``name`` read-only (it must exist) and load its last committed models."""
    store = CampaignStore(state_dir, name)
    if not store.exists():
        raise StateError(f"no campaign {name!r} under {Path(state_dir)} (no {store.root / 'config.json'})")
    raw, _ = store.load_config()
    config = config_from_dict(raw, source=str(store.root / "config.json"))
    store, state = open_campaign(config, state_dir)
    material = config.design_material()
    models, at = last_models(store, state)
    notes: list[str] = []
    gp = models is not None and config.models.acquisition == "gp"
    source = _cached_source(config, state_dir, notes) if gp and config.transfer is not None else None
    try:
        models = with_acquisition_model(state, models, source)  # the campaign's own GP
    except Exception as exc:  # the ensemble's word beats no report
        notes.append(f"the acquisition GP could not be fitted ({type(exc).__name__}); ensemble used instead")
    pool = issubclass(oracle_class(config.oracle.name), MeasuresPool)
    data = training_data(material) if material.dataset is not None else None
    return ReportInputs(store, state, config, material, models, at, pool, data, notes)


def _cached_source(config: CampaignConfig, state_dir: str | Path, notes: list[str]) -> TransferSource | None:
    """The ``[transfer]`` source for the GP's prior mean, its model from the cache only: a
    report never trains it (minutes, on a machine or cache the campaign did not run on)."""
    try:
        return load_transfer(config, state_dir, read_only=True)
    except SourceNotCached as exc:
        notes.append(f"{exc}: the acquisition GP was fitted without the source's prior mean, unlike the campaign's")
    except InnloopError as exc:
        why = one_line(exc, kind=False)
        notes.append(f"the transfer source could not be read ({why}): the acquisition GP was fitted without it")
    return None


@dataclass(frozen=True)
class ReportTargets:
    """The campaign's targets (the first ``campaign``) plus switching targets added for the
    report; ``switch``: the indices of the switching pair, None with the reason in ``skipped``."""

    targets: list[Target]
    campaign: int
    switch: tuple[int, int] | None
    skipped: str = ""


def report_targets(inputs: ReportInputs, switch: tuple[float, float] | None) -> ReportTargets:
    """The campaign's targets plus the two switching targets, when switching applies.

    Without ``switch``: 0 -> 1.0 eV (the metal–insulator switch) when the material's data
    span both, else the campaign's lowest and highest two-sided target. A switching target
    that is a campaign target keeps its window; any other gets ±0.1. No switching for a
    material whose designs are not strained crystals, or without two two-sided targets.
    """
    unit = inputs.material.target_unit
    camp = inputs.config.targets
    targets = [Target(t.range, a, unit) for t, a in zip(camp, anchors(inputs.state))]
    n = len(targets)
    gap = crystal_gaps(inputs.material).strain
    if gap:
        return ReportTargets(targets, n, None, f"{gap}, so there are no switching pairs")
    if switch is None:
        y = inputs.data.y if inputs.data is not None else None
        if y is not None and float(y.min()) <= 0.0 and float(y.max()) >= 1.0:
            switch = (0.0, 1.0)
        else:
            values = sorted({t.value for t in targets if t.window is not None})
            if len(values) < 2:
                have = f"the campaign has {len(values)}"
                return ReportTargets(
                    targets, n, None, f"switching needs two two-sided targets (value ± window, low..high); {have}"
                )
            switch = (values[0], values[-1])
    if switch[0] == switch[1]:
        raise InnloopError(f"switching needs two different targets, got {switch[0]:g} twice")
    index = []
    for value in switch:
        found = [i for i, t in enumerate(targets) if t.window is not None and abs(t.value - value) < 1e-9]
        if not found:
            targets.append(Target.around(float(value), 0.1, unit))
            found = [len(targets) - 1]
        index.append(found[0])
    return ReportTargets(targets, n, (index[0], index[1]))


def design_frame(space: DesignSpace, X: np.ndarray) -> pd.DataFrame:
    """Physical designs ``(n, d)`` as the table people read: category names, whole integers."""
    return space.to_frame(np.asarray(X, dtype=np.float64).reshape(-1, space.dim))


def candidate_sets(inputs: ReportInputs, targets: list[Target], samples: int, seed: int = 0) -> list[pd.DataFrame]:
    """Per target, candidate designs (physical columns, ``pred``, ``pred_std``, ``source``).

    Empty frames where the campaign has no models yet or the generator never saw the target.
    """
    space = inputs.material.space
    empty = design_frame(space, np.zeros((0, space.dim))).assign(pred=np.zeros(0), pred_std=np.zeros(0))
    models = inputs.models
    if models is None:
        inputs.notes.append("the campaign has no trained models yet: no candidates")
        return [empty.assign(source="") for _ in targets]
    if inputs.pool_oracle:
        return _pool_sets(inputs, models, targets)
    out = []
    lo, hi = (float(v) for v in models.surrogate.y_range)
    funnel = replace(loop_funnel(inputs.state), n_samples=samples, uniform=0)
    for i, t in enumerate(targets):
        gen = models.generator
        if gen is None or not (lo <= t.value <= hi) or not (gen.target_range[0] <= t.value <= gen.target_range[1]):
            inputs.notes.append(f"target {t.label}: outside what the models learned; no candidates")
            out.append(empty.assign(source=""))
            continue
        try:
            frame = design(space, gen, models.surrogate, t.value, funnel, seed=seed + i).frame(space)
        except InnloopError as exc:
            inputs.notes.append(f"target {t.label}: no candidates ({exc})")
            frame = empty
        frame = frame[t.contains(frame["pred"].to_numpy(dtype=np.float64))]
        out.append(frame.reset_index(drop=True).assign(source="generated"))
    return out


def _pool_sets(inputs: ReportInputs, models: TrainedModels, targets: list[Target]) -> list[pd.DataFrame]:
    """Every pool row the surrogate puts in each window (pairing is cheap; figures subsample)."""
    space = inputs.material.space
    oracle = oracle_for(inputs.config)
    if not isinstance(oracle, MeasuresPool):
        raise StateError(f"oracle {oracle.name!r} lists no designs to choose from (no pool)")
    pool = oracle.pool()
    X = space.from_frame(pool, source=f"{oracle.name} pool")
    mean, std = models.surrogate.predict(space.to_unit(X))
    out = []
    for t in targets:
        rows = np.flatnonzero(t.contains(mean))
        frame = design_frame(space, X[rows])
        frame["pred"], frame["pred_std"] = mean[rows], std[rows]
        out.append(frame.assign(source="pool"))
    return out
