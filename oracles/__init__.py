"""Oracles: whatever measures a design (DFT on a cluster, local DFT, a robot, a mock).

One protocol (`oracles.base`: submit -> poll -> results, JSON handles) with back ends
chosen by name through `make_oracle`; the loop talks to the protocol only. Back ends are
imported when first asked for, so a missing optional dependency of one never breaks
another. Oracles sit beside the models, not above them: no back end imports torch or
`agent.models` (the mock's network is evaluated with numpy, `oracles.emulator`), so a
process that only measures never pays for them; `tests/oracles/test_imports.py` checks.

Other installed packages add back ends through ``innloop.oracles`` entry points
(``name = "package.module:Class"``, `agent.core.plugins`): listed beside the built-ins
from their metadata alone, imported like them only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.core.errors import ConfigError, UnknownNameError
from agent.core.plugins import EntryPoint, PluginGroup
from oracles.base import ErrorClass, Handle, JobStatus, Oracle, OracleError, Result

__all__ = [
    "PLUGINS",
    "ErrorClass",
    "Handle",
    "JobStatus",
    "Oracle",
    "OracleError",
    "Result",
    "available_oracles",
    "make_oracle",
    "oracle_class",
    "prepare_process",
    "register_oracle",
]

# name -> "module:Class"; third-party back ends can be added with `register_oracle`
_REGISTRY: dict[str, str] = {
    "mock": "oracles.mock:MockOracle",
    "table": "oracles.table:TableOracle",
    "gpaw": "oracles.gpaw:GpawOracle",
    "vasp": "oracles.vasp:VaspOracle",
    "http": "oracles.http:HttpOracle",
    "manual": "oracles.manual:ManualOracle",
    "sila2": "oracles.sila2:Sila2Oracle",
}


def _oracle_plugin(obj: object, ep: EntryPoint) -> type:
    """A plugin's oracle class: a class with the protocol's calls (checked now, not mid-campaign)."""
    if not isinstance(obj, type):
        raise ConfigError(f"expected an oracle class, got {type(obj).__name__}")
    missing = [m for m in ("submit", "poll", "results", "cancel") if not callable(getattr(obj, m, None))]
    if missing:
        raise ConfigError(f"{obj.__name__} is not an oracle: it has no {', '.join(missing)}")
    return obj


# Back ends that other installed packages declare (entry points ``innloop.oracles``).
PLUGINS: PluginGroup[type] = PluginGroup("innloop.oracles", "oracle", _oracle_plugin, lambda: list(_REGISTRY))


def register_oracle(name: str, target: str) -> None:
    """Register a back end as ``"package.module:Class"`` (imported on first use); a name
    already registered is refused, so a built-in back end is never silently replaced."""
    if ":" not in target:
        raise ValueError(f"oracle target must look like 'module:Class', got {target!r}")
    if name in _REGISTRY:
        raise ConfigError(f"an oracle named {name!r} is already registered ({_REGISTRY[name]})")
    _REGISTRY[name] = target


def available_oracles() -> list[str]:
    """Names of every back end, built in, registered and plugins (a broken or clashing
    plugin's name too: asking for it says what is wrong), sorted; nothing is imported."""
    return sorted(set(_REGISTRY) | set(PLUGINS.names()))


def oracle_class(name: str) -> type:
    """The class registered under ``name`` (imported now); `ConfigError` for a plugin
    that is broken or takes a name already taken."""
    try:
        return PLUGINS.get(name)
    except KeyError:
        pass
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown oracle {name!r}; available: {available_oracles()}") from None
    module, cls = target.split(":")
    found: type = getattr(importlib.import_module(module), cls)
    return found


def prepare_process(name: str) -> None:
    """Set up this process for the back end ``name`` before other libraries load: the ``sila2``
    oracle needs protobuf's pure-Python implementation chosen before Ray imports protobuf.
    Commands and flows call it right after reading a campaign's configuration."""
    if name == "sila2":
        from oracles.sila2 import use_pure_python_protobuf  # light: the SiLA 2 stack loads on first use

        use_pure_python_protobuf()


def make_oracle(name: str, **settings: Any) -> Oracle:
    """Build the oracle registered under ``name`` with its settings (config or environment)."""
    oracle: Oracle = oracle_class(name)(**settings)
    return oracle
