"""Where innloop keeps its runtime data: the state folder, resolved once, absolute.

Every command and every job process must agree on one folder; a relative path resolved
again in another working folder (a job started by a scheduler) would point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "default_state_dir", "resolve_state_dir"]

CACHE_ENV = "INNLOOP_CACHE_DIR"  # one cache for every state folder: report maps, transfer source models


def default_state_dir() -> Path:
    """``$INNLOOP_STATE_DIR`` if set, else ``./state`` (campaigns and model caches live there),
    as an absolute path: a relative one is taken against the current folder now, once, so
    that job processes started in other folders are handed the same place."""
    return resolve_state_dir(os.environ.get("INNLOOP_STATE_DIR") or "state")


def resolve_state_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The state folder a user gave (``--state``), absolute against the current folder, else
    `default_state_dir`: what every command resolves once, where the user's value enters."""
    if given is None or not str(given):
        return default_state_dir()
    return Path(os.path.abspath(Path(given).expanduser()))


def cache_dir(state_dir: str | os.PathLike[str]) -> Path:
    """The cache folder: ``$INNLOOP_CACHE_DIR`` or ``<state_dir>/cache``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env) if env else Path(state_dir) / "cache"
