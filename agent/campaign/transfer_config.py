"""``[transfer]``: a source of prior knowledge from another material or fidelity, checked on load.

```toml
[transfer]
source = "mos2"            # a bundled dataset, or
# ledger = "state/other"   # another campaign's folder (its completed results)
```

The source informs the models (`agent.models.transfer`); it is never a measurement of
this campaign. Its designs are taken in *its own* unit box and used as points of this
campaign's unit box, so the two spaces must have the same parameters: the same names, and
for each the same kind (continuous, log-scaled, integer, or categorical with the same
categories). For the MX2 family that "shared unit box" is meaningful: every member's
bounds are the same fractions of its own unstrained cell, so a unit coordinate is the
same relative strain in each. Anything else is refused when the file is loaded, with one
line naming the difference; so is an unknown dataset or a ledger folder that is not a
campaign. This module stays free of torch (a config is read by ``innloop --help``'s
neighbours); loading the source and its model is `agent.campaign.transfer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from agent.campaign.config_errors import Spec
from agent.campaign.space_config import SpaceSpec
from agent.campaign.store import CampaignStore
from agent.core.errors import InnloopError
from agent.core.materials import Material, get_material
from agent.core.materials.datasets import available_datasets, dataset_material
from agent.core.parameters import Parameter
from agent.core.space import DesignSpace

__all__ = ["TransferSpec", "ledger_store", "space_difference"]


class TransferSpec(Spec):
    """Exactly one of ``source`` (a bundled dataset's name) and ``ledger`` (a campaign folder)."""

    source: str | None = None
    ledger: str | None = None  # relative to the config file's folder; stored absolute

    @field_validator("source")
    @classmethod
    def _bundled(cls, name: str | None) -> str | None:
        if name is not None and name not in available_datasets():
            raise ValueError(f"unknown dataset; bundled datasets: {', '.join(available_datasets())}")
        return name

    @field_validator("ledger")
    @classmethod
    def _campaign_folder(cls, ledger: str | None, info: ValidationInfo) -> str | None:
        if ledger is None:
            return None
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        path = (base / Path(ledger).expanduser()).resolve()
        if not ledger_store(path).exists():
            what = "no such folder" if not path.exists() else "not a campaign folder (no config.json)"
            raise ValueError(f"{what}: {path}")
        return str(path)

    @model_validator(mode="after")
    def _one_source(self) -> TransferSpec:
        if (self.source is None) == (self.ledger is None):
            raise ValueError("give exactly one of `source` (a bundled dataset) and `ledger` (a campaign folder)")
        return self

    @property
    def label(self) -> str:
        """How reports name the source: ``dataset mos2`` or ``ledger <folder>``."""
        return f"dataset {self.source}" if self.source is not None else f"ledger {self.ledger}"

    def material(self) -> Material:
        """What the source measured: the dataset's material, or the other campaign's space."""
        if self.source is not None:
            return dataset_material(self.source)
        raw, _ = ledger_store(Path(str(self.ledger))).load_config()
        return material_of(raw)

    def difference(self, target: Material) -> str | None:
        """Why the source cannot inform a campaign on ``target`` (`space_difference`), or None."""
        try:
            source = self.material()
        except InnloopError as exc:
            return f"the source cannot be read: {exc}"
        found = space_difference(source.space, target.space)
        return None if found is None else f"the source's design space differs from this campaign's: {found}"


def ledger_store(path: Path) -> CampaignStore:
    """The store of the campaign folder ``path`` (``<state>/<name>``)."""
    return CampaignStore(path.parent, path.name)


def material_of(raw: dict[str, Any]) -> Material:
    """The material a stored campaign config designs: its ``[space]`` or its registered material."""
    if raw.get("space") is not None:
        return SpaceSpec.model_validate(raw["space"]).material()
    return get_material(str(raw.get("material") or "mos2"))


def _kind(p: Parameter) -> str:
    if p.kind == "categorical":
        return f"categorical {list(p.values)}"
    return "continuous (log scale)" if p.log else p.kind


def space_difference(source: DesignSpace, target: DesignSpace) -> str | None:
    """How two spaces' parameters differ (names, count, kinds), in words; None when they match.

    The order of the parameters may differ: they are matched by name.
    """
    src = {p.name: p for p in source.parameters}
    tgt = {p.name: p for p in target.parameters}
    words: list[str] = []
    if only := [n for n in source.names if n not in tgt]:
        words.append(f"parameters only in the source: {only}")
    if only := [n for n in target.names if n not in src]:
        words.append(f"parameters only in this campaign: {only}")
    if source.dim != target.dim:
        words.append(f"{source.dim} parameters in the source, {target.dim} here")
    for name in target.names:
        if name in src and _kind(src[name]) != _kind(tgt[name]):
            words.append(f"{name!r} is {_kind(src[name])} in the source, {_kind(tgt[name])} here")
    return "; ".join(words) if words else None
