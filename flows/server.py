"""Make sure a Prefect API answers before a campaign flow starts, or say in one line why not.

Without ``PREFECT_API_URL`` Prefect starts a temporary server the first time a flow runs,
and waits 20 s for it by default. On a fresh machine that server first creates and
migrates its database, which on two busy cores takes about that long: the very first
`innloop run` a person typed failed half the time with a 40-line traceback. So the
command line starts the temporary server itself, with a patient time limit, before the
flow runs (Prefect then reuses it), and turns a server that truly cannot start, or a
configured API that does not answer, into one `PrefectUnavailable` line with what to do.
"""

from __future__ import annotations

import os

import httpx

from agent.core.errors import InnloopError

__all__ = ["STARTUP_TIMEOUT_S", "PrefectUnavailable", "ensure_api"]

# the temporary server's first start creates its database: minutes, not seconds, on a busy machine
STARTUP_TIMEOUT_S = 300

_WHAT_TO_DO = (
    "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
    "or run without Prefect: `innloop run --no-prefect`"
)


class PrefectUnavailable(InnloopError):
    """No Prefect API can be reached or started; nothing of the campaign has run."""


def ensure_api(timeout_s: float | None = None) -> str:
    """The URL of a Prefect API that answers: the configured one, or a temporary one started now.

    ``timeout_s`` bounds the wait for a temporary server (default: the environment's
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when set, else `STARTUP_TIMEOUT_S`).
    """
    from prefect.server.api.server import SubprocessASGIServer  # heavy: only when a flow will run
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    url = (PREFECT_API_URL.value() or "").strip()  # the environment, a profile or a test harness
    if url:
        _check(url)
        return url

    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise PrefectUnavailable(f"PREFECT_API_URL is not set and temporary servers are disabled; {_WHAT_TO_DO}")
    limit = timeout_s or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT_S))
    server = SubprocessASGIServer()  # the one instance Prefect's own client asks for later
    try:
        server.start(timeout=int(limit))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PrefectUnavailable(
            f"a temporary Prefect server could not start within {limit:g} s ({first[:200]}); {_WHAT_TO_DO}"
        ) from None
    return server.api_url


def _check(url: str, timeout_s: float = 10.0) -> None:
    """Raise `PrefectUnavailable` unless ``url``'s health endpoint answers (200, or a refused key)."""
    health = url.rstrip("/") + "/health"
    key = os.environ.get("PREFECT_API_KEY", "")
    try:
        response = httpx.get(health, timeout=timeout_s, headers={"Authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError as exc:
        raise PrefectUnavailable(
            f"the Prefect API at {url} (PREFECT_API_URL) does not answer ({type(exc).__name__}: {exc}); {_WHAT_TO_DO}"
        ) from None
    if response.status_code not in (200, 401, 403):  # a refused key is Prefect's own error to report
        raise PrefectUnavailable(
            f"the Prefect API at {url} (PREFECT_API_URL) answered {response.status_code} to {health}; {_WHAT_TO_DO}"
        )
