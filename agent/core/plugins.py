"""Plugins: materials, oracles and generators that other installed packages provide.

A package adds to innloop's registries by declaring entry points in the groups
``innloop.materials``, ``innloop.oracles`` and ``innloop.generators``; this module is the
one place that reads them, so every registry treats plugins alike:

- Names are known without importing anything (the entry points' metadata), so listing a
  registry stays cheap and a broken plugin costs nothing until it is asked for.
- A plugin is imported the first time its name is looked up (or when `PluginGroup.load_all`
  is asked, as ``innloop doctor`` does), once per process. One that fails to import, or
  whose object is not what its group expects, becomes a problem: looking up that name
  raises a `ConfigError` naming the entry point, its distribution and the reason, and every
  other plugin still loads.
- A name is never silently shadowed: two plugins of one name, or a plugin named like a
  built-in, make that name's lookup a `ConfigError` naming both sources; the other names work.

Tests change what is installed by monkeypatching `importlib.metadata.entry_points` and
calling `reset`.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from agent.core.errors import ConfigError, one_line

__all__ = ["EntryPoint", "PluginGroup", "describe", "distribution", "reset"]

T = TypeVar("T")
EntryPoint = importlib.metadata.EntryPoint

_GROUPS: list[PluginGroup[Any]] = []  # every group made in this process, for `reset`


def distribution(ep: EntryPoint) -> str:
    """``name version`` of the installed distribution that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def describe(ep: EntryPoint) -> str:
    """``name = module:attr (distribution version)``: how an error names an entry point."""
    return f"{ep.name} = {ep.value} ({distribution(ep)})"


class PluginGroup(Generic[T]):
    """The plugins of one entry-point group, each checked by ``convert`` when loaded.

    ``kind`` names the registry in messages ("material"). ``convert(obj, ep)`` turns what
    an entry point loads into the registry's object, raising any exception for one that
    is not usable (the exception's text becomes the plugin's problem). ``builtins()``
    gives the registry's own names, which no plugin may take.
    """

    def __init__(
        self,
        group: str,
        kind: str,
        convert: Callable[[object, EntryPoint], T],
        builtins: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.group = group
        self.kind = kind
        self._convert = convert
        self._builtins = builtins
        self._lock = threading.RLock()  # samplers and pollers may look names up from threads
        self._found: dict[str, list[EntryPoint]] | None = None
        self._loaded: dict[str, T] = {}
        self._problems: dict[str, str] = {}
        self._loading: set[str] = set()
        _GROUPS.append(self)

    def reset(self) -> None:
        """Forget what was found and loaded: the next lookup reads the entry points again."""
        with self._lock:
            self._found = None
            self._loaded.clear()
            self._problems.clear()

    # -- discovery (no imports) ------------------------------------------------------
    def _entry_points(self) -> dict[str, list[EntryPoint]]:
        with self._lock:
            if self._found is None:
                found: dict[str, list[EntryPoint]] = {}
                for ep in importlib.metadata.entry_points(group=self.group):
                    found.setdefault(ep.name, []).append(ep)
                self._found = found
            return self._found

    def names(self) -> list[str]:
        """Every name a plugin declares in this group, sorted (nothing is imported)."""
        return sorted(self._entry_points())

    def entry_points(self, name: str) -> list[EntryPoint]:
        """The entry points called ``name`` (several: a clash; none: no plugin has it)."""
        return list(self._entry_points().get(name, []))

    def sources(self, name: str) -> list[str]:
        """How each entry point called ``name`` is named in messages."""
        return [describe(ep) for ep in self.entry_points(name)]

    # -- loading ---------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The plugin called ``name``, loaded now if it was not yet.

        Raises `ConfigError` for a clash (with a built-in or another plugin) or a broken
        plugin, `KeyError` when no plugin has the name (the registry words its own
        "unknown" message).
        """
        eps = self._entry_points().get(name)
        if not eps:
            raise KeyError(name)
        with self._lock:
            if name in self._loaded:  # a plugin that registered itself while loading is no clash
                return self._loaded[name]
        clash = self.clash(name)
        if clash is not None:
            raise ConfigError(clash)
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name in self._problems:
                raise ConfigError(self._problems[name])
            if name in self._loading:  # the plugin's own module looked itself up while importing
                raise ConfigError(f"{self.kind} plugin {describe(eps[0])} asks for itself while it is being loaded")
            self._loading.add(name)
            try:
                value = self._load(eps[0])
            finally:
                self._loading.discard(name)
            if isinstance(value, str):
                self._problems[name] = value
                raise ConfigError(value)
            self._loaded[name] = value
            return value

    def _load(self, ep: EntryPoint) -> T | str:
        """The converted object, or the one-line problem that stops it loading."""
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's import can fail in any way; it must not break the rest
            return f"{self.kind} plugin {describe(ep)} failed to import: {one_line(exc)}"
        try:
            return self._convert(obj, ep)
        except Exception as exc:  # likewise for a plugin's factory or a wrong kind of object
            return f"{self.kind} plugin {describe(ep)} is not usable: {one_line(exc, kind=False)}"

    def clash(self, name: str) -> str | None:
        """Why ``name`` is ambiguous (two plugins, or a plugin and a built-in), else ``None``."""
        eps = self.entry_points(name)
        builtin = bool(eps) and name in set(self._builtins())
        if not builtin and len(eps) < 2:  # the usual case, decided without reading any metadata
            return None
        sources = [describe(ep) for ep in eps]
        if builtin:
            return (
                f"{self.kind} {name!r} is defined twice: by innloop itself (built in, or registered in this "
                f"process) and by the plugin {'; '.join(sources)}; uninstall the plugin or rename its entry point"
            )
        return (
            f"{self.kind} {name!r} is defined by {len(sources)} plugins: {'; '.join(sources)}; "
            "uninstall all but one of them or rename their entry points"
        )

    def load_all(self) -> tuple[dict[str, T], dict[str, str]]:
        """Load every plugin of the group: ``(loaded {name: object}, problems {name: one line})``.

        A clash is a problem of its name; nothing raises.
        """
        loaded: dict[str, T] = {}
        problems: dict[str, str] = {}
        for name in self.names():
            try:
                loaded[name] = self.get(name)
            except ConfigError as exc:
                problems[name] = str(exc)
        return loaded, problems


def reset() -> None:
    """Forget every group's entry points and loaded plugins (tests that change what is installed)."""
    for group in _GROUPS:
        group.reset()
