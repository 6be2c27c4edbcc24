"""The campaign file's plain sections: ``[oracle]``, ``[initial]``, ``[loop]``, ``[budget]``
and ``[models]``.

Each checks only its own fields (a registered name, a file that exists, a bounded budget),
so they live apart from `agent.campaign.config`, which holds the checks that need several
sections at once (targets against the material, constraints, transfer) and re-exports
these classes.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.campaign.config_errors import NO_VALUE, Spec
from oracles import available_oracles, oracle_class
from oracles.base import ResolvesPaths

__all__ = ["SECRET_RE", "BudgetSpec", "InitialSpec", "LoopSpec", "ModelSpec", "OracleSpec", "known_name"]

# Oracle settings that hold a secret. The config is copied into state/ and shown in logs
# and Prefect artifacts, so secrets come from a file or the environment, never the file.
SECRET_RE = re.compile(r"(?i)(.*_)?(token|password|passwd|secret|api_key|apikey|credentials?)")


def known_name(name: str, known: Sequence[str], kind: str) -> str:
    """``name`` if registered, else a ValueError suggesting the closest registered name."""
    if name in known:
        return name
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {kind}{hint}; available: {', '.join(known) or 'none'}")


class OracleSpec(Spec):
    """The oracle by name; ``settings`` go to its constructor as they are (it checks them),
    except that relative paths among them are made absolute against the config file's folder."""

    name: str = "mock"
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(name, available_oracles(), "oracle")

    @field_validator("settings")
    @classmethod
    def _absolute_paths(cls, settings: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Path settings (``workdir``, ``token_file``, a table's ``path`` …: the oracle class's
        ``resolve_paths``) relative to the config file's folder, like ``initial.data``, and
        absolute from then on: the stored config, a resumed run and the oracle's job processes
        (which start in their own folders) must all mean the same files."""
        name = info.data.get("name")  # absent while the name is itself a mistake
        oracle = oracle_class(name) if isinstance(name, str) else None
        if not isinstance(oracle, ResolvesPaths):  # the capability is declared, or the oracle has no paths
            return settings
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        return dict(oracle.resolve_paths(settings, base))

    @model_validator(mode="after")
    def _known_settings(self) -> OracleSpec:
        """Setting names the oracle's constructor takes; a typo must fail here, not as a TypeError mid-run."""
        params = inspect.signature(oracle_class(self.name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return self  # takes anything: only the oracle itself can tell
        known = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        problems = []
        for key in self.settings:
            if SECRET_RE.fullmatch(key):
                words = (
                    "a secret must not be written in a campaign file (the file is copied into the campaign's "
                    f"state folder); give `{key}_file` or the oracle's environment variable instead"
                )
                problems.append((("settings", key), words, NO_VALUE))  # the value itself is never echoed
            elif key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                words = f"unknown setting of the {self.name} oracle{hint}; it takes: {', '.join(known) or 'none'}"
                problems.append((("settings", key), words, NO_VALUE))
        if problems:
            raise PydanticCustomError("innloop_many", "unknown oracle settings", {"problems": problems})
        return self


class InitialSpec(Spec):
    """What is measured or known before the loop starts."""

    random: int = Field(default=50, ge=0)  # random seed designs measured first
    data: str | None = None  # CSV of prior observations; relative to the config file's folder
    designs: str | None = None  # CSV of designs (no values) measured first, before the random ones

    @field_validator("data", "designs")
    @classmethod
    def _exists(cls, data: str | None, info: ValidationInfo) -> str | None:
        if data is None:
            return None
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        path = (base / Path(data).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"{'not a regular file' if path.exists() else 'no such file'}: {path}")
        return str(path)  # absolute, so the stored config means the same from any folder


class LoopSpec(Spec):
    """How each iteration proposes its batch, and how many jobs may be at the oracle at once.

    ``mode = "batch"``: each iteration measures its whole batch before the next is chosen.
    ``mode = "async"`` (`agent.campaign.refill`): up to ``max_in_flight`` jobs stay at the
    oracle; each iteration is one refill, begun once ``refill`` of them have come back.
    ``max_in_flight`` caps the jobs at the oracle in both modes (unset: a batch has no cap
    but its size; async keeps two batches' worth); ``refill`` defaults to a batch's worth,
    at most half of ``max_in_flight`` and at least one.
    """

    mode: Literal["batch", "async"] = "batch"
    batch_size: int = Field(default=10, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)
    refill: int | None = Field(default=None, ge=1)
    exploration: float = Field(default=0.1, ge=0, le=1)  # share of a batch chosen for information, not hits
    min_distance: float = Field(default=0.1, ge=0)  # unit-box distance below which designs are near-duplicates
    samples_per_target: int = Field(default=2000, ge=1)  # generator samples per target per iteration
    # optional cap on the deep ensemble's calibrated σ of a candidate chosen as a hit (exploration
    # is not capped); None: no cap. See `agent.campaign.plan.choose`.
    max_sigma: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _refill_fits(self) -> LoopSpec:
        if self.refill is not None and self.mode != "async":
            raise ValueError('refill applies to mode = "async" only (a batch waits for all its results)')
        if self.refill is not None and self.max_in_flight is not None and self.refill > self.max_in_flight:
            raise ValueError(f"refill ({self.refill}) cannot exceed max_in_flight ({self.max_in_flight})")
        return self

    @property
    def in_flight_cap(self) -> int | None:
        """The most jobs at the oracle at once (``None``: a batch-mode campaign's batch alone caps them)."""
        if self.max_in_flight is not None or self.mode == "batch":
            return self.max_in_flight
        return 2 * self.batch_size

    @property
    def refill_size(self) -> int:
        """Async mode: results that start the next refill."""
        if self.refill is not None:
            return self.refill
        cap = self.in_flight_cap or self.batch_size
        return max(1, min(self.batch_size, cap // 2))


class BudgetSpec(Spec):
    """When to stop besides collecting every target's hits; the first limit reached wins."""

    oracle_calls: int | None = Field(default=200, ge=1)
    iterations: int | None = Field(default=None, ge=1)
    wall_time_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> BudgetSpec:
        if self.oracle_calls is None and self.iterations is None and self.wall_time_s is None:
            raise ValueError("set at least one of oracle_calls, iterations, wall_time_s (targets may never be hit)")
        return self


class ModelSpec(Spec):
    """The generator and the surrogate ensemble; warm epochs are for refits on grown data."""

    generator: str = "cinn"
    members: int = Field(default=5, ge=2)  # an ensemble of one has no spread, so no uncertainty
    surrogate_epochs: int = Field(default=300, ge=1)
    surrogate_warm_epochs: int = Field(default=100, ge=1)
    generator_epochs: int = Field(default=200, ge=1)
    generator_warm_epochs: int = Field(default=60, ge=1)
    # the model the acquisition scores with: "gp" (exact GP invariant under the material's
    # symmetries, fitted on at most gp_max_points rows) or "ensemble" (the deep ensemble)
    acquisition: Literal["gp", "ensemble"] = "gp"
    gp_max_points: int = Field(default=500, ge=10)

    @field_validator("generator")
    @classmethod
    def _registered(cls, name: str) -> str:
        from generators import available_generators  # lazy: imports torch

        return known_name(name, available_generators(), "generator")
