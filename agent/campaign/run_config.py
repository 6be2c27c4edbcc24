"""The campaign file's run sections: where the sampler actors run (``[ray]``) and how
infrastructure failures are retried (``[retry]``).

They say how a campaign runs, not what it designs, and `RetrySpec.updated` is also how
command-line flags and report options override the file, so they live apart from
`agent.campaign.config`, which reads the file and re-exports them.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from agent.campaign.config_errors import Spec, error_lines
from agent.core.errors import ConfigError

__all__ = ["RaySpec", "RetrySpec"]


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
