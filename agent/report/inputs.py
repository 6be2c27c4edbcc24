"""What a report reads: the campaign from disk, its last models, and candidate designs per target.

Everything comes from ``state/<campaign>/`` through `agent.campaign.runner.open_campaign`, which
re-hashes every committed iteration first, so a report never draws from damaged files.
Candidates are what the campaign would propose now: the last committed generator's
samples through the loop's own candidate funnel (`agent.campaign.plan.loop_funnel`, run by
`agent.design.funnel.design`) on the last committed surrogate, those predicted in the
target's window; or, for an oracle that measures a listed pool only (``table``), the pool
rows the surrogate puts in the window. The models come with the acquisition's model the
campaign scores with (`agent.campaign.plan.with_acquisition_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.plan import loop_funnel, with_acquisition_model
from agent.campaign.runner import last_models, open_campaign, oracle_for
from agent.campaign.state import CampaignState
from agent.campaign.store import CampaignStore
from agent.core.errors import InnloopError, StateError
from agent.core.materials import Material, get_material
from agent.core.observations import Observations
from agent.design.funnel import design
from agent.design.trained import TrainedModels, training_data
from oracles import oracle_class
from oracles.base import MeasuresPool

__all__ = ["ReportInputs", "Target", "candidate_sets", "load_inputs", "report_targets"]


@dataclass(frozen=True)
class Target:
    """A target value and the window a design must fall in to count for it."""

    value: float
    window: float

    @property
    def label(self) -> str:
        return f"{self.value:g} eV"


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
    material = get_material(config.material)
    models, at = last_models(store, state)
    notes: list[str] = []
    try:
        models = with_acquisition_model(state, models)
    except Exception as exc:  # the ensemble's word beats no report
        notes.append(f"the acquisition GP could not be fitted ({type(exc).__name__}); ensemble used instead")
    pool = issubclass(oracle_class(config.oracle.name), MeasuresPool)
    data = training_data(material) if material.dataset is not None else None
    return ReportInputs(store, state, config, material, models, at, pool, data, notes)


def report_targets(inputs: ReportInputs, switch: tuple[float, float] | None) -> tuple[list[Target], tuple[int, int]]:
    """The campaign's targets plus the two switching targets; indices of the switching pair in the list.

    Without ``switch``: 0 -> 1.0 eV (the metal–insulator switch) when the material's data
    span both, else the campaign's lowest and highest target. A switching target that is
    a campaign target keeps its window; any other gets ±0.1.
    """
    targets = [Target(t.value, t.window) for t in inputs.config.targets]
    if switch is None:
        y = inputs.data.y if inputs.data is not None else None
        if y is not None and float(y.min()) <= 0.0 and float(y.max()) >= 1.0:
            switch = (0.0, 1.0)
        else:
            values = sorted(t.value for t in targets)
            switch = (values[0], values[-1])
    if switch[0] == switch[1]:
        raise InnloopError(f"switching needs two different targets, got {switch[0]:g} twice")
    index = []
    for value in switch:
        found = [i for i, t in enumerate(targets) if abs(t.value - value) < 1e-9]
        if not found:
            targets.append(Target(float(value), 0.1))
            found = [len(targets) - 1]
        index.append(found[0])
    return targets, (index[0], index[1])


def candidate_sets(inputs: ReportInputs, targets: list[Target], samples: int, seed: int = 0) -> list[pd.DataFrame]:
    """Per target, candidate designs (physical columns, ``pred``, ``pred_std``, ``source``).

    Empty frames where the campaign has no models yet or the generator never saw the target.
    """
    space = inputs.material.space
    empty = pd.DataFrame({**{n: pd.Series(dtype=float) for n in space.names}, "pred": [], "pred_std": []})
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
        frame = frame[(frame["pred"] - t.value).abs() <= t.window + 1e-12]
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
        rows = np.flatnonzero(np.abs(mean - t.value) <= t.window + 1e-12)
        frame = space.to_frame(X[rows]) if len(rows) else pd.DataFrame(columns=space.names, dtype=float)
        frame["pred"], frame["pred_std"] = mean[rows], std[rows]
        out.append(frame.assign(source="pool"))
    return out
