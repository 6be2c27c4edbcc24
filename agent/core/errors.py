"""One exception family, so the CLI can turn any bad input into one clear message."""

from __future__ import annotations


class InnloopError(Exception):
    """Base of every error innloop raises on purpose; the CLI prints it and exits ``exit_code``."""

    exit_code = 2  # bad input: fix the config, data or state named in the message


class ConfigError(InnloopError, ValueError):
    """A configuration value (bounds, sizes, names) is unusable."""


class DataError(InnloopError, ValueError):
    """A data table is malformed: missing columns, non-finite values, out of bounds."""


class DesignError(InnloopError, ValueError):
    """A design point is malformed or physically impossible (e.g. a degenerate cell)."""


class TargetError(InnloopError, ValueError):
    """A design target lies outside what the training data supports."""


class UnknownNameError(InnloopError, LookupError):
    """A registry (materials, generators, oracles) has nothing under the given name."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsError(InnloopError):
    """A weight file is missing, corrupt, or belongs to another model."""


class StateError(InnloopError):
    """A campaign's saved state (ledger, checkpoint, in-flight jobs) is unreadable or foreign."""


class CampaignStopped(InnloopError):
    """A campaign stopped for a reason that needs a person (e.g. the oracle keeps failing).

    Everything measured is saved; ``innloop run`` continues once the cause is fixed.
    """

    exit_code = 3  # nothing wrong with the input: run again once the cause is fixed


def one_line(exc: BaseException, limit: int = 300, *, kind: bool = True) -> str:
    """An exception's text on one line of at most ``limit`` characters, for a message that
    quotes it (torch's and pandas' span many lines); ``kind`` prefixes the class name."""
    text = " ".join(str(exc).split())
    if kind:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
