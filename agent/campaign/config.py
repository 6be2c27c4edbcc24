"""The campaign configuration: one TOML file, checked in full before anything runs.

A campaign spends hours of oracle time, so every mistake in its file is found at load
time and all of them are reported together as one `ConfigError`: one line per mistake
with its dotted location, what is wrong and the value found.

Checks that involve several fields run inside the field or section they concern, so
they are reported alongside the other mistakes: distinct target values, and targets
inside the material's data range (on ``targets``); at least one budget (on ``budget``).
A check that needs another field is skipped while that field is itself wrong -- the
target range needs a valid ``material`` -- and appears once that mistake is fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent.campaign.config_errors import NO_VALUE, Spec, error_lines, problems_of
from agent.campaign.constraints import LimitSpec, limit_names, limit_problems
from agent.campaign.run_config import ApprovalSpec, NotifySpec, RaySpec, RetrySpec
from agent.campaign.section_config import (
    BudgetSpec,
    InitialSpec,
    LoopSpec,
    ModelSpec,
    OracleSpec,
    known_name,
)
from agent.campaign.space_config import SpaceSpec, TargetSpec, material_in, target_problems
from agent.campaign.store import CAMPAIGN_NAME
from agent.campaign.transfer_config import TransferSpec
from agent.core.errors import ConfigError, DataError
from agent.core.materials import Material, available_materials, get_material

__all__ = [
    "DEFAULT_CONFIG",
    "ApprovalSpec",
    "BudgetSpec",
    "CampaignConfig",
    "InitialSpec",
    "LimitSpec",
    "LoopSpec",
    "ModelSpec",
    "NotifySpec",
    "OracleSpec",
    "RaySpec",
    "RetrySpec",
    "SpaceSpec",
    "TargetSpec",
    "TransferSpec",
    "config_from_dict",
    "load_config",
]

DEFAULT_CONFIG = "default.toml"  # shipped in agent/configs/


class CampaignConfig(Spec):
    """One campaign. Field order matters: ``material`` is validated before ``targets``."""

    name: str
    material: str | None = None  # a registered material; "mos2" unless the file declares [space]
    space: SpaceSpec | None = None  # a design space declared here instead of a registered material
    seed: int = 0
    targets: list[TargetSpec] = Field(min_length=1)
    # [[constraints]]: bounds on other measured values a hit must satisfy (agent.campaign.constraints)
    constraints: list[LimitSpec] = Field(default_factory=list)
    oracle: OracleSpec = Field(default_factory=OracleSpec)
    initial: InitialSpec = Field(default_factory=InitialSpec)
    loop: LoopSpec = Field(default_factory=LoopSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    models: ModelSpec = Field(default_factory=ModelSpec)
    transfer: TransferSpec | None = None  # [transfer]: prior knowledge from another material (transfer_config)
    ray: RaySpec = Field(default_factory=RaySpec)
    _source: str = PrivateAttr(default="<dict>")  # where it was read from, for error messages
    retry: RetrySpec = Field(default_factory=RetrySpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)  # [approval]: a person approves each batch
    notify: NotifySpec = Field(default_factory=NotifySpec)  # [notify]: a webhook told when people are needed

    @field_validator("name")
    @classmethod
    def _folder_safe(cls, name: str) -> str:
        if not CAMPAIGN_NAME.fullmatch(name):  # the store's rule: the name is a folder
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'")
        return name

    @field_validator("material")
    @classmethod
    def _registered(cls, name: str | None) -> str | None:
        if name is None:
            return None
        found = known_name(name, available_materials(), "material")
        try:
            get_material(found)  # a plugin material that fails to load is named here, not later
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return found

    @model_validator(mode="before")
    @classmethod
    def _default_material(cls, data: Any) -> Any:
        """No ``material`` and no ``[space]``: the bundled MoS2 application."""
        if isinstance(data, dict) and data.get("material") is None and data.get("space") is None:
            return {**data, "material": "mos2"}
        return data

    @field_validator("space")
    @classmethod
    def _space_or_material(cls, space: SpaceSpec | None, info: ValidationInfo) -> SpaceSpec | None:
        if space is not None and info.data.get("material") is not None:
            raise ValueError("a campaign declares its own [space] or names a registered material, not both")
        return space

    def design_material(self) -> Material:
        """What this campaign designs: its ``[space]``, or the registered material it names."""
        return self.space.material() if self.space is not None else get_material(self.material or "mos2")

    @field_validator("targets")
    @classmethod
    def _targets_fit(cls, targets: list[TargetSpec], info: ValidationInfo) -> list[TargetSpec]:
        """Distinct targets the property can reach (`agent.campaign.config_errors`: one line a problem)."""
        problems: list[tuple[tuple[int | str, ...], str, Any]] = []
        first: dict[tuple[float | None, ...], int] = {}
        for i, t in enumerate(targets):
            key = (t.value,) if t.value is not None else (t.low, t.high)
            if key in first:
                where, what = ("value", "value") if t.value is not None else ("low", "range")
                problems.append(((i, where), f"same {what} as targets.{first[key]}", key[0]))
            first.setdefault(key, i)
        problems += target_problems(targets, material_in(info.data))
        if problems:
            problems.sort(key=lambda problem: problem[0])
            raise PydanticCustomError("innloop_many", "several target problems", {"problems": problems})
        return targets

    @field_validator("constraints", mode="wrap")
    @classmethod
    def _constraints_fit(cls, raw: Any, check: ValidatorFunctionWrapHandler, info: ValidationInfo) -> list[LimitSpec]:
        """A second property: not the target, not a design parameter, each limited once. Checked
        on the raw entries, with each entry's own mistakes (an after-validator would not run while
        any entry is wrong: a limit on the target would show up only once the rest was fixed)."""
        problems = limit_problems(limit_names(raw), material_in(info.data))
        try:
            limits: list[LimitSpec] = check(raw)
        except ValidationError as exc:
            problems += problems_of(exc, CampaignConfig, ("constraints",))
        else:
            if not problems:
                return limits
        problems.sort(key=lambda problem: [(isinstance(part, str), part) for part in problem[0]])  # entry by entry
        raise PydanticCustomError("innloop_many", "several constraint problems", {"problems": problems})

    @field_validator("transfer")
    @classmethod
    def _transfer_fits(cls, transfer: TransferSpec | None, info: ValidationInfo) -> TransferSpec | None:
        """A source whose parameters differ from the campaign's cannot share its unit box."""
        material = material_in(info.data)
        if transfer is not None and material is not None and (why := transfer.difference(material)):
            raise ValueError(why)
        return transfer

    @field_validator("initial")
    @classmethod
    def _initial_files_fit(cls, initial: InitialSpec, info: ValidationInfo) -> InitialSpec:
        """Read the prior data and designs now: a bad file must fail before a campaign folder exists."""
        from agent.core.materials import read_designs, read_observations  # lazy: pandas, the material's data

        material = material_in(info.data)  # None while the material or space is itself a mistake
        if material is None:
            return initial
        problems: list[tuple[tuple[int | str, ...], str, Any]] = []
        checks: dict[str, Callable[[str], object]] = {
            # a prior design measured twice with different values: which one should the models learn?
            "data": lambda path: read_observations(path, material).deduplicate("exact"),
            "designs": lambda path: read_designs(path, material),
        }
        for key, check in checks.items():
            path = getattr(initial, key)
            if path is not None:
                try:
                    check(path)
                except DataError as exc:
                    problems.append(((key,), str(exc), NO_VALUE))
        if problems:
            raise PydanticCustomError("innloop_many", "bad initial files", {"problems": problems})
        return initial

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; `config_from_dict` reads it back to an equal config. Keys a
        file leaves unset and older versions did not have (``space``, a target's
        ``low``/``high``, an empty ``constraints``, the loop's ``mode``, ``max_in_flight``
        and ``refill`` at their defaults) are left out, so a campaign started before keeps its fingerprint."""
        data = self.model_dump(mode="json")
        data["targets"] = [t.to_dict() for t in self.targets]
        if self.constraints:  # unconstrained campaigns keep the fingerprint they had before constraints
            data["constraints"] = [c.to_dict() for c in self.constraints]
        else:
            del data["constraints"]
        if self.transfer is None:  # campaigns without [transfer] keep the fingerprint they had before it
            del data["transfer"]
        if self.approval == ApprovalSpec():  # as [transfer]: files without them keep their full fingerprint
            del data["approval"]
        if self.notify == NotifySpec():
            del data["notify"]
        for key, unset in (("mode", "batch"), ("max_in_flight", None), ("refill", None)):
            if data["loop"][key] == unset:  # batch-mode campaigns keep the fingerprint they had before async mode
                del data["loop"][key]
        if self.space is None:
            del data["space"]
        else:
            del data["material"]
        return data

    def __eq__(self, other: object) -> bool:  # where a config was read from is not part of it
        return isinstance(other, CampaignConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.fingerprint(exclude=()))

    @property
    def source(self) -> str:
        """The file (quoted) or ``<dict>`` this config was validated from."""
        return self._source

    def fingerprint(self, exclude: Iterable[str] = ("budget", "approval", "notify")) -> str:
        """Short sha256 of the canonical JSON without ``exclude``: a resumed campaign must match
        the one that started it, except for the budget, which may be extended, and for who is
        asked and told ([approval], [notify]), which may change while it runs."""
        data = self.to_dict()
        skip = {exclude} if isinstance(exclude, str) else set(exclude)
        if unknown := skip - set(type(self).model_fields):
            raise ValueError(f"cannot exclude unknown sections {sorted(unknown)}; sections: {sorted(data)}")
        text = json.dumps({k: v for k, v in data.items() if k not in skip}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- loading ---------------------------------------------------------------------------
def config_from_dict(
    data: dict[str, Any], source: str = "<dict>", *, base_dir: str | os.PathLike[str] | None = None
) -> CampaignConfig:
    """Validate parsed data; relative paths (``initial.data``/``designs``, the oracle's path
    settings) resolve against ``base_dir`` (default: the working folder). Raises one
    `ConfigError` naming ``source`` and listing every mistake."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        config = CampaignConfig.model_validate(data, context={"base_dir": base})
    except ValidationError as exc:
        lines = error_lines(exc, CampaignConfig)
    else:
        config._source = source
        return config
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    raise ConfigError(f"invalid configuration {source} ({count}):\n" + "\n".join(lines))


def _load_file(path: Path) -> CampaignConfig:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    return config_from_dict(data, source=repr(str(path)), base_dir=path.parent)


def load_config(path: str | os.PathLike[str] | None = None) -> CampaignConfig:
    """Read and validate a TOML campaign file; ``None`` loads the shipped default."""
    if path is None:
        with resources.as_file(resources.files("agent") / "configs" / DEFAULT_CONFIG) as shipped:
            return _load_file(Path(shipped))
    return _load_file(Path(path))
