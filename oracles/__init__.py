"""Oracles: whatever measures a design (DFT on a cluster, local DFT, a robot, a mock).

One protocol (`oracles.base`: submit -> poll -> results, JSON handles) with back ends
chosen by name through `make_oracle`; the loop talks to the protocol only. Back ends are
imported when first asked for, so a missing optional dependency of one never breaks
another. Oracles sit beside the models, not above them: no back end imports torch or
`agent.models` (the mock's network is evaluated with numpy, `oracles.emulator`), so a
process that only measures never pays for them; `tests/oracles/test_imports.py` checks.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.core.errors import UnknownNameError
from oracles.base import ErrorClass, Handle, JobStatus, Oracle, OracleError, Result

__all__ = [
    "ErrorClass",
    "Handle",
    "JobStatus",
    "Oracle",
    "OracleError",
    "Result",
    "available_oracles",
    "make_oracle",
    "oracle_class",
]

# name -> "module:Class"; third-party back ends can be added with `register_oracle`
_REGISTRY: dict[str, str] = {
    "mock": "oracles.mock:MockOracle",
    "table": "oracles.table:TableOracle",
    "gpaw": "oracles.gpaw:GpawOracle",
    "vasp": "oracles.vasp:VaspOracle",
    "http": "oracles.http:HttpOracle",
}


def register_oracle(name: str, target: str) -> None:
    """Register a back end as ``"package.module:Class"`` (imported on first use)."""
    if ":" not in target:
        raise ValueError(f"oracle target must look like 'module:Class', got {target!r}")
    _REGISTRY[name] = target


def available_oracles() -> list[str]:
    return sorted(_REGISTRY)


def oracle_class(name: str) -> type:
    """The class registered under ``name`` (imported now)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown oracle {name!r}; available: {available_oracles()}") from None
    module, cls = target.split(":")
    found: type = getattr(importlib.import_module(module), cls)
    return found


def make_oracle(name: str, **settings: Any) -> Oracle:
    """Build the oracle registered under ``name`` with its settings (config or environment)."""
    oracle: Oracle = oracle_class(name)(**settings)
    return oracle
