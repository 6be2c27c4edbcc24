"""The campaign file's run sections: where the sampler actors run (``[ray]``), how
infrastructure failures are retried (``[retry]``), whether a person approves each batch
(``[approval]``) and whom the campaign tells when it needs someone or ends (``[notify]``).

They say how a campaign runs, not what it designs, and `RetrySpec.updated` is also how
command-line flags and report options override the file, so they live apart from
`agent.campaign.config`, which reads the file and re-exports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.campaign.config_errors import NO_VALUE, Spec, error_lines
from agent.core.errors import ConfigError

__all__ = ["ApprovalSpec", "NotifySpec", "RaySpec", "RetrySpec"]

Event = Literal["approval", "finished", "stopped"]  # what a campaign tells people about (`agent.campaign.notify`)
EVENTS: tuple[Event, ...] = ("approval", "finished", "stopped")


class RaySpec(Spec):
    """Where the oracle-facing actors run."""

    address: str | None = None  # None: start a local Ray; else join that cluster
    actors: int = Field(default=2, ge=1)
    cpus_per_actor: float = Field(default=0.25, gt=0, le=1)  # actors wait on oracles; never reserve whole CPUs
    enabled: bool = True


class RetrySpec(Spec):
    """Resubmission after infrastructure failures (physics failures are results, not retried)."""

    max_attempts: int = Field(default=3, ge=1)  # submissions of one design
    backoff_s: float = Field(default=1.0, ge=0)  # first wait, doubled each retry
    poll_interval_s: float = Field(default=0.5, gt=0)
    job_timeout_s: float | None = Field(default=None, gt=0)  # still running after this: cancelled, TIMEOUT
    max_backoff_s: float = Field(default=60.0, gt=0)  # cap on every backoff wait
    # every oracle call failing (peer down) for this long stops the run; the jobs stay in flight
    outage_s: float = Field(default=3600.0, gt=0)
    # stop the campaign when more than this share of the last `failure_window` results
    # (attempts, failures of every kind) failed: a broken cluster should not burn the budget
    max_failure_rate: float | None = Field(default=0.5, gt=0, le=1)
    failure_window: int = Field(default=40, ge=5)

    def updated(self, **changes: float | int | None) -> RetrySpec:
        """These rules with ``changes`` (``None`` values left out), checked as a file's values
        are: a command-line flag or report option that would break a rule is one `ConfigError`."""
        data = self.model_dump() | {k: v for k, v in changes.items() if v is not None}
        try:
            return RetrySpec.model_validate(data, strict=False)
        except ValidationError as exc:
            raise ConfigError(
                "; ".join(line.strip().removeprefix("- ") for line in error_lines(exc, RetrySpec))
            ) from None


class ApprovalSpec(Spec):
    """A person approves each batch before it goes to the oracle (`agent.campaign.approval`).

    Unanswered after ``timeout_s`` (counted from the first time it was asked, across
    restarts): ``on_timeout = "stop"`` ends the campaign, ``"approve"`` sends the batch.
    """

    required: bool = False
    timeout_s: float = Field(default=86400.0, gt=0)
    on_timeout: Literal["stop", "approve"] = "stop"


class NotifySpec(Spec):
    """A webhook told (JSON POST) when a campaign waits for approval, finishes or stops.

    The URL usually carries a secret, and the campaign file is copied into its state folder,
    so it comes from a file (``url_file``, relative to the campaign file) or an environment
    variable (``url_env``), never the file itself. Neither: no notifications.
    """

    url: str | None = None  # refused: only here to say where the URL goes instead
    url_file: str | None = None
    url_env: str | None = None
    events: list[Event] = Field(default_factory=lambda: list(EVENTS))
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _no_url(cls, url: str | None) -> str | None:
        if url is not None:  # the value itself is never echoed: it is the secret
            words = "a webhook URL is a secret: give url_file (a file holding it) or url_env instead"
            raise PydanticCustomError("innloop_many", "a secret", {"problems": [((), words, NO_VALUE)]})
        return url

    @field_validator("url_file")
    @classmethod
    def _exists(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is None:
            return None
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        found = (base / Path(path).expanduser()).resolve()
        if not found.is_file():
            raise ValueError(f"no such file: {found}")
        return str(found)

    @model_validator(mode="after")
    def _one_source(self) -> NotifySpec:
        if self.url_file is not None and self.url_env is not None:
            raise ValueError("give url_file or url_env, not both")
        return self
