"""A robot or laboratory behind HTTP: the client side of a minimal REST protocol.

Protocol (JSON bodies; ``Authorization: Bearer <token>`` on every call; status strings
are the `JobStatus` values; `oracles.lab_server` is the reference server):

- ``POST /v1/jobs`` ``{"design": {name: number}, "idempotency_key": str}`` ->
  ``{"job_id", "status"}``; 201 for a new job, 200 with the SAME job when the key was
  seen before (409 if that key was used for another design, 422 for a bad design).
- ``GET /v1/jobs/{job_id}`` -> ``{"job_id", "status", "values", "error_class",
  "message", "provenance"}``; 404 for a job the server does not know.
- ``POST /v1/jobs/query`` ``{"job_ids": [...]}`` (at most 1,000) -> ``{"jobs": [...]}``,
  one entry per id in order: the record ``GET /v1/jobs/{job_id}`` gives, or, for an id it
  cannot give, ``{"job_id", "status_code", "detail"}`` (404: unknown job). One request per
  500 jobs instead of one per job: what keeps polling 10,000 jobs in flight cheap. A server
  without it (404/405 for the route: an older lab) is read job by job.
- ``POST /v1/jobs/{job_id}/cancel``; ``GET /v1/health``.

Idempotency keys make a lost reply harmless. Unless the caller passes ``keys``, a key is
``sha256(namespace, design, n)`` (``namespace`` random per work folder, ``n`` numbering
the keys it minted), recorded with the time it was claimed in ``WORKDIR/journal.json``,
atomically and BEFORE any request. A key is pending until its reply came back: a submit
that raised leaves its keys pending and submitting the same designs again re-sends them,
so the server hands back the jobs it has instead of starting second ones; once released,
a new submission of a design is a deliberate re-measurement with a new key. ``adopt
(designs, since)`` re-sends, per design, the newest key claimed at or after ``since``: a
campaign killed after ``submit`` returned but before it saved the handles finds its jobs
(a key the server never got starts its job then, completing the interrupted submit). The
journal keeps pending keys and the latest submit's claims only (adopt a submit's jobs
before submitting again). One submitting process per work folder. The journal is
`oracles.http_journal.KeyJournal`.

Failures: connection errors, timeouts, 5xx and 429 are retried with exponential backoff,
then raise `OracleError` naming the URL; this holds for ``poll``/``results`` too, because
reporting a last-known RUNNING would hide an outage from the loop, which should decide
itself whether to wait. 401/403 raise at once (authentication refused), other 4xx raise
with the server's message. A job the server does not know (404) is ABANDONED and a record
that is not the documented JSON is FAILED, both infrastructure and for that job only:
never a crash, never an invented value (a batch reply that is not JSON at all is read
again job by job). The token never enters handles, provenance, reprs or messages (handles
carry the base URL in ``workdir``). Use https for anything but loopback.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agent.core.materials import Material, as_material
from agent.core.paths import default_state_dir
from oracles.base import (
    ErrorClass,
    Handle,
    JobStatus,
    OracleError,
    OracleRefused,
    Result,
    absolute_path,
    check_own,
    designs_to_rows,
    resolve_path_settings,
    site_setting,
    site_text,
)
from oracles.http_journal import KeyJournal, idempotency_key

__all__ = ["HttpOracle", "KeyJournal", "idempotency_key"]

_RETRY_STATUS = {429, 500, 502, 503, 504}
QUERY_CHUNK = 500  # job ids per batch read; the reference server takes up to 1,000


class HttpOracle:
    """Client of a lab server. Settings fall back to ``INNLOOP_HTTP_*`` environment variables."""

    name = "http"

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
        workdir: str | Path | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        backoff_s: float | None = None,
        verify: bool | str | None = None,
        material: str | Material = "mos2",
    ) -> None:
        url = site_text(url or None, "INNLOOP_HTTP_URL")
        if not url:
            raise OracleError("http oracle: no lab server url; set `url` or the environment variable INNLOOP_HTTP_URL")
        if not url.startswith(("http://", "https://")):
            raise OracleError(f"http oracle: url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._token = _read_token(token, token_file)
        self.timeout_s = site_setting(timeout_s, "INNLOOP_HTTP_TIMEOUT_S", 30.0)
        self.retries = int(site_setting(retries, "INNLOOP_HTTP_RETRIES", 3))
        self.backoff_s = site_setting(backoff_s, "INNLOOP_HTTP_BACKOFF_S", 0.5)
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0:
            raise OracleError("http oracle: timeout_s must be > 0, retries and backoff_s >= 0")
        self.space = as_material(material).space
        self.workdir = absolute_path(workdir) if workdir is not None else default_state_dir() / "oracles" / "http"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keys = KeyJournal(self.workdir)
        self.journal = self.keys.path
        self._client = httpx.Client(timeout=self.timeout_s, verify=_tls(verify))
        self._batch_reads = True  # until the server shows it has no batch route

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``workdir``, ``token_file`` and a CA bundle given as ``verify`` absolute
        against ``base`` (a campaign file's folder)."""
        keys = ["workdir", "token_file"]
        verify = settings.get("verify")
        if isinstance(verify, str) and verify.lower() not in _BOOL_WORDS:
            keys.append("verify")
        return resolve_path_settings(settings, keys, base)

    def __repr__(self) -> str:
        return f"HttpOracle(url={self.url!r}, workdir={str(self.workdir)!r}, token=<hidden>)"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpOracle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the protocol ------------------------------------------------------------------
    def submit(self, designs: Any, keys: Sequence[str] | None = None) -> list[Handle]:
        """One job per design; ``keys`` (one per design) override the journal's keys."""
        rows = designs_to_rows(self.space, designs)
        if keys is not None:
            keys = [str(k) for k in keys]
            if len(keys) != len(rows) or not all(keys):
                raise OracleError(f"http oracle: {len(rows)} designs need {len(rows)} non-empty keys, got {keys}")
            return [self._create(row, key) for row, key in zip(rows, keys, strict=True)]
        keys = self.keys.claim(rows)
        try:
            handles = [self._create(row, key) for row, key in zip(rows, keys, strict=True)]
        except OracleError as exc:
            raise OracleError(
                f"{exc}; nothing is lost: the idempotency keys stay in {self.journal} and submitting the same "
                "designs again re-sends them, so jobs the server already has are not started twice"
            ) from None
        self.keys.release(rows, keys)
        return handles

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        """Per design, the job of its newest key claimed at or after ``since`` (``None``: none was).

        Re-sending that key gets the job the server has, or starts the one it never
        received; either way the designs are not submitted twice after a crash.
        """
        rows = designs_to_rows(self.space, designs)
        keys = self.keys.newest_claims(rows, since)
        handles = [None if key is None else self._create(row, key) for row, key in zip(rows, keys, strict=True)]
        found = [(row, key) for row, key in zip(rows, keys, strict=True) if key is not None]
        if found:
            self.keys.release([r for r, _ in found], [k for _, k in found])
        return handles

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return [r.status for r in self.results(handles)]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        """One batch read per `QUERY_CHUNK` jobs; job by job from a server without the batch route."""
        self._check(handles)
        out: list[Result] = []
        for start in range(0, len(handles), QUERY_CHUNK):
            chunk = list(handles[start : start + QUERY_CHUNK])
            entries = self._query([h.job_id for h in chunk]) if self._batch_reads else None
            if entries is None:
                out += [self._result(h) for h in chunk]
            else:
                out += [self._entry(h, e) for h, e in zip(chunk, entries, strict=True)]
        return out

    def cancel(self, handles: Sequence[Handle]) -> None:
        self._check(handles)
        for h in handles:
            resp = self._request("POST", f"/v1/jobs/{quote(h.job_id, safe='')}/cancel")
            if resp.status_code != 404:  # a job the server never had needs no cancelling
                self._expect_ok(resp)

    def health(self) -> dict[str, Any]:
        """The server's health record: a cheap check of url, token and TLS settings."""
        resp = self._request("GET", "/v1/health")
        self._expect_ok(resp)
        body = self._json(resp)
        if not isinstance(body, dict):
            raise OracleError(f"lab server at {self.url} sent a malformed health reply")
        return body

    # -- requests ----------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """Send with retries on transient faults; raise on exhausted retries and refused auth."""
        url = self.url + path
        headers = {"Authorization": f"Bearer {self._token}"}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 30.0))
            try:
                resp = self._client.request(method, url, json=body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if "CERTIFICATE_VERIFY_FAILED" in problem:  # retrying cannot fix a certificate
                    raise OracleRefused(
                        f"lab server at {self.url}: TLS certificate refused ({exc}); see `verify`"
                    ) from None
                continue
            if resp.status_code in (401, 403):
                raise OracleRefused(
                    f"lab server at {self.url} refused authentication (HTTP {resp.status_code}); check the token "
                    "(`token`, `token_file`, INNLOOP_HTTP_TOKEN or INNLOOP_HTTP_TOKEN_FILE)"
                )
            if resp.status_code not in _RETRY_STATUS:
                return resp
            problem = f"HTTP {resp.status_code}: {self._detail(resp)}"
        raise OracleError(
            self._scrub(
                f"lab server at {self.url} unreachable or failing after {self.retries + 1} attempt(s) ({problem})"
            )
        )

    def _create(self, row: dict[str, float], key: str) -> Handle:
        resp = self._request("POST", "/v1/jobs", {"design": row, "idempotency_key": key})
        if resp.status_code == 409:
            raise OracleRefused(self._scrub(f"lab server at {self.url}: {self._detail(resp)}"))
        self._expect_ok(resp)
        body = self._json(resp)
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise OracleError(f"lab server at {self.url} answered a submission without a job_id: {resp.text[:200]!r}")
        return Handle(self.name, job_id, row, native_id=job_id, workdir=self.url, submitted_at=time.time())

    def _query(self, job_ids: list[str]) -> list[Any] | None:
        """The entries of one batch read; ``None``: read these job by job instead."""
        resp = self._request("POST", "/v1/jobs/query", {"job_ids": job_ids})
        if resp.status_code in (404, 405):  # an older lab without the route: never ask again
            self._batch_reads = False
            return None
        self._expect_ok(resp)
        try:
            body = resp.json()
        except ValueError:  # e.g. a proxy's error page: one job-by-job round, nothing failed for it
            return None
        entries = body.get("jobs") if isinstance(body, dict) else None
        return entries if isinstance(entries, list) and len(entries) == len(job_ids) else None

    def _result(self, h: Handle) -> Result:
        resp = self._request("GET", f"/v1/jobs/{quote(h.job_id, safe='')}")
        if resp.status_code == 404:
            return self._entry(h, {"job_id": h.job_id, "status_code": 404})
        self._expect_ok(resp)
        try:
            body = resp.json()
        except ValueError:
            body = f"no JSON: {resp.text[:100]!r}"  # a malformed record: FAILED, below
        return self._entry(h, body)

    def _entry(self, h: Handle, body: Any) -> Result:
        """A job's record, or its error entry (404: lost; 5xx: the server's fault, raised as GET would)."""
        log = f"{self.url}/v1/jobs/{h.job_id}"
        prov: dict[str, Any] = {"oracle": self.name, "server": self.url}
        code = body.get("status_code") if isinstance(body, dict) and body.get("job_id") == h.job_id else None
        if code == 404:
            msg = f"lab server at {self.url} does not know job {h.job_id}: lost by the back end"
            return Result.failure(
                h, ErrorClass.INFRASTRUCTURE, msg, status=JobStatus.ABANDONED, provenance=prov, log=log
            )
        if isinstance(code, int) and code >= 500:
            raise OracleError(self._scrub(f"lab server at {self.url} failed on job {h.job_id}: {body.get('detail')}"))
        try:
            if code is not None:
                raise ValueError(f"HTTP {code}: {body.get('detail')}")
            return self._parse(h, body, prov, log)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            msg = self._scrub(f"lab server at {self.url} sent a malformed reply for job {h.job_id}: {exc}")
            return Result.failure(h, ErrorClass.INFRASTRUCTURE, msg, provenance=prov, log=log)

    def _parse(self, h: Handle, body: Any, prov: dict[str, Any], log: str) -> Result:
        if not isinstance(body, dict) or body.get("job_id") != h.job_id:
            raise ValueError("not a record of this job")
        status = JobStatus(body["status"])
        error_class = None if body.get("error_class") is None else ErrorClass(body["error_class"])
        server_prov = body.get("provenance") or {}
        if not isinstance(server_prov, dict):
            raise ValueError("provenance is not an object")
        prov = self._scrub(server_prov) | prov
        message = None if body.get("message") is None else self._scrub(str(body["message"]))
        if status is not JobStatus.COMPLETED:
            if error_class is None and status in (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.ABANDONED):
                error_class = ErrorClass.INFRASTRUCTURE  # a failure the server did not classify: retryable
            return Result(h, status, error_class=error_class, message=message, provenance=prov, log=log)
        values = body.get("values")
        if not isinstance(values, dict) or not values:
            raise ValueError("a completed job without values")
        clean = {str(k): float(v) for k, v in values.items() if not isinstance(v, bool)}
        if len(clean) != len(values) or not all(math.isfinite(v) for v in clean.values()):
            raise ValueError(f"values must be finite numbers, got {values}")
        return Result(h, status, values=clean, message=message, provenance=prov, log=log)

    def _expect_ok(self, resp: httpx.Response) -> None:
        if not 200 <= resp.status_code < 300:
            raise OracleRefused(
                self._scrub(
                    f"lab server at {self.url} refused the request (HTTP {resp.status_code}): {self._detail(resp)}"
                )
            )

    def _json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise OracleError(f"lab server at {self.url} sent no JSON: {resp.text[:200]!r}") from None

    def _detail(self, resp: httpx.Response) -> str:
        """The server's own words: FastAPI's ``detail`` (a string or a list of errors), else the body."""
        try:
            detail = resp.json().get("detail")
        except (ValueError, AttributeError):
            return resp.text[:300] or resp.reason_phrase
        if isinstance(detail, list):
            return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:5])
        return str(detail)[:300]

    def _scrub(self, obj: Any) -> Any:
        """Drop the token from anything a server might echo back (strings or JSON objects)."""
        needle = json.dumps(self._token)[1:-1]
        text = json.dumps(obj)
        return json.loads(text.replace(needle, "<hidden>")) if needle in text else obj

    def _check(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
        for h in handles:
            if (h.workdir or "").rstrip("/") != self.url:
                raise OracleRefused(f"handle {h.job_id!r} belongs to lab server {h.workdir!r}, not {self.url!r}")


def _read_token(token: str | None, token_file: str | Path | None) -> str:
    """The explicit token, else the token file, else ``INNLOOP_HTTP_TOKEN``, else its file variable."""
    if token is None and token_file is None:
        token = os.environ.get("INNLOOP_HTTP_TOKEN")
        token_file = os.environ.get("INNLOOP_HTTP_TOKEN_FILE") if token is None else None
    if token is None and token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise OracleError(f"http oracle: cannot read the token file {token_file}: {exc.strerror}") from None
    if not token or any(c.isspace() for c in token):
        raise OracleError(
            "http oracle: no usable token (empty or containing whitespace); set `token` or `token_file`, or the "
            "environment variable INNLOOP_HTTP_TOKEN or INNLOOP_HTTP_TOKEN_FILE"
        )
    return token


_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}  # `verify` spelled as text


def _tls(verify: bool | str | None) -> bool | ssl.SSLContext:
    """``verify``: True (system CAs), False (no checking: testing only) or a CA bundle path."""
    if verify is None:
        verify = os.environ.get("INNLOOP_HTTP_VERIFY", "true")
    if isinstance(verify, str):  # config files and the environment spell booleans as text
        verify = _BOOL_WORDS.get(verify.lower(), verify)
    if isinstance(verify, bool):
        return verify
    if not Path(verify).is_file():
        raise OracleError(f"http oracle: CA bundle {verify!r} (verify / INNLOOP_HTTP_VERIFY) is not a file")
    return ssl.create_default_context(cafile=verify)
