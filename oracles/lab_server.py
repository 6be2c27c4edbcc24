"""A reference lab server: any oracle behind the HTTP protocol of `oracles.http`.

It is what a laboratory would run next to its robot, and what the tests run against
(wrapping the mock). It keeps every job as one JSON file under ``STATE_DIR/jobs``,
written atomically; the file name is derived from the idempotency key, so the file *is*
the key index and creating a job and indexing its key is one atomic step (no window in
which a repeated key could start a second job). The wrapped oracle's handle sits in the
job file, so a restarted server on the same state folder finds every job again. One
server process per state folder, which is why it may keep the job files it read or
wrote in memory: only it changes them.

``POST /v1/jobs/query {"job_ids": [...]}`` reads up to `MAX_QUERY` jobs in one request
(one call of the wrapped oracle's ``results`` for all of them): each entry is the record
``GET /v1/jobs/{id}`` gives, or ``{"job_id", "status_code", "detail"}`` for a job it
cannot give (404 unknown, 500 unreadable).

Every call needs ``Authorization: Bearer <token>`` (compared in constant time; 401
otherwise). ``latency_s`` is the lab's own queue: a job reports RUNNING until that long
after its creation, then whatever the wrapped oracle says (its own latency on top).
`Faults` injects failures for tests. ``GET /v1/stats`` -> ``{"jobs": n}`` counts jobs.

Run: ``INNLOOP_LAB_TOKEN=... python -m oracles.lab_server --oracle mock --port 8765``
(binds 127.0.0.1 unless ``--host`` says otherwise; give ``--ssl-certfile/--ssl-keyfile``
to serve https beyond loopback, since the token travels in every request).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

from agent.core.atomic import write_json
from agent.core.errors import InnloopError
from agent.core.paths import default_state_dir
from oracles import make_oracle
from oracles.base import Handle, Oracle, absolute_path, designs_to_rows

__all__ = ["MAX_QUERY", "Faults", "create_app", "main"]

MAX_QUERY = 1000  # job ids per batch read


@dataclass
class Faults:
    """Failure injection for tests; each counter is spent one request at a time.

    ``error_500``: the next n job requests (a batch read is one) answer 500 untouched.
    ``lose_reply``: the next n submissions create their job, then answer 500 (the reply is
    lost on the way). ``garbage``: the next n job reads answer 200 with a body that is not
    JSON; in a batch read, each job's entry is one read. ``garbage_batch``: the next n
    batch reads answer 200 with a body that is not JSON (a proxy's error page).
    """

    error_500: int = 0
    lose_reply: int = 0
    garbage: int = 0
    garbage_batch: int = 0

    def take(self, name: str, lock: threading.Lock) -> bool:
        with lock:
            left = int(getattr(self, name))
            if left > 0:
                setattr(self, name, left - 1)
            return left > 0


class SubmitBody(BaseModel):
    design: dict[str, float | str]  # numbers, and categories by name
    idempotency_key: str = Field(min_length=8, max_length=256)


class QueryBody(BaseModel):
    job_ids: list[str] = Field(max_length=MAX_QUERY)


def create_app(
    oracle: Oracle | None,
    token: str,
    latency_s: float = 0.0,
    state_dir: str | Path | None = None,
    faults: Faults | None = None,
) -> FastAPI:
    """The protocol's app around ``oracle`` (default: a mock keeping its jobs in ``STATE_DIR/mock``)."""
    if not token:
        raise InnloopError("lab server: refusing to run without a token")
    if latency_s < 0:
        raise InnloopError(f"lab server: latency_s must be >= 0, got {latency_s}")
    state = absolute_path(state_dir) if state_dir is not None else default_state_dir() / "lab"
    jobs = state / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    if oracle is None:
        from oracles.mock import MockOracle  # torch; only when the default is wanted

        oracle = MockOracle(workdir=state / "mock")
    wrapped: Oracle = oracle
    expected = f"Bearer {token}".encode()
    lock = threading.Lock()
    inject = faults or Faults()

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="innloop lab server", dependencies=[Depends(authorized)])
    app.state.faults = inject

    known: dict[str, dict[str, Any]] = {}  # job files read or written by this process

    def load(job_id: str) -> dict[str, Any]:
        if job_id in known:
            return known[job_id]
        if not job_id.startswith("lab-") or not job_id[4:].isalnum():
            raise HTTPException(404, f"no job {job_id!r}")
        path = jobs / f"{job_id}.json"
        try:
            job: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise HTTPException(500, f"job file of {job_id} is unreadable: {exc}") from None
        known[job_id] = job
        return job

    def save(job: dict[str, Any]) -> None:
        write_json(jobs / f"{job['job_id']}.json", job)
        known[job["job_id"]] = job

    def records(ids: list[str]) -> list[Any]:
        """The records of jobs (one ``results`` call for all the wrapped ones), errors as entries."""
        out: list[Any] = []
        ask: list[tuple[int, dict[str, Any]]] = []
        now = time.time()
        for job_id in ids:
            if inject.take("garbage", lock):
                out.append("<html>proxy error</html>")
                continue
            try:
                job = load(job_id)
            except HTTPException as exc:
                out.append({"job_id": job_id, "status_code": exc.status_code, "detail": exc.detail})
                continue
            record: dict[str, Any] = {"job_id": job_id, "values": None, "error_class": None, "message": None}
            record["provenance"] = {"lab_job_id": job_id, "wrapped_oracle": wrapped.name}
            if job.get("cancelled"):
                record |= {"status": "cancelled", "message": "cancelled"}
            elif now < job["created_at"] + latency_s:
                record["status"] = "running"
            else:
                ask.append((len(out), job))
            out.append(record)
        found = wrapped_call("report", wrapped.results, [Handle.from_json(j["wrapped"]) for _, j in ask]) if ask else []
        for (i, _), r in zip(ask, found, strict=True):
            out[i]["provenance"] |= dict(r.provenance) | {"wrapped_job_id": r.handle.job_id, "wrapped_log": r.log}
            out[i] |= {
                "status": r.status.value,
                "values": r.values,
                "error_class": None if r.error_class is None else r.error_class.value,
                "message": r.message,
            }
        return out

    def fault_500() -> None:
        if inject.take("error_500", lock):
            raise HTTPException(500, "injected fault")

    def wrapped_call(what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # the wrapped back end's fault becomes the server's 500
            raise HTTPException(500, f"wrapped oracle {wrapped.name!r} failed to {what}: {exc}") from None

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "oracle": wrapped.name}

    @app.get("/v1/stats")
    def stats() -> dict[str, int]:
        return {"jobs": sum(1 for _ in jobs.glob("lab-*.json"))}

    @app.post("/v1/jobs", status_code=201)
    def submit(body: SubmitBody, response: Response) -> dict[str, str]:
        fault_500()
        try:
            (row,) = designs_to_rows(wrapped.space, [body.design])
        except InnloopError as exc:
            raise HTTPException(422, f"design refused: {exc}") from None
        job_id = "lab-" + hashlib.sha256(body.idempotency_key.encode()).hexdigest()[:32]
        path = jobs / f"{job_id}.json"
        with lock:
            if job_id in known or path.exists():
                job = load(job_id)
                if _same(job["design"], row):
                    response.status_code = 200
                    return {"job_id": job_id, "status": "cancelled" if job.get("cancelled") else "running"}
                raise HTTPException(409, "idempotency key was already used for another design")
            (handle,) = wrapped_call("submit", wrapped.submit, [row])
            job = {"job_id": job_id, "design": row, "created_at": time.time(), "cancelled": False}
            job["wrapped"] = handle.to_json()
            save(job)
        if inject.take("lose_reply", lock):
            raise HTTPException(500, "injected fault: the job exists, its reply is lost")
        return {"job_id": job_id, "status": "running"}

    @app.post("/v1/jobs/query", response_model=None)
    def query(body: QueryBody) -> dict[str, Any] | Response:
        fault_500()
        if inject.take("garbage_batch", lock):
            return Response(b"<html>proxy error</html>", media_type="application/json")
        return {"jobs": records(body.job_ids)}

    @app.get("/v1/jobs/{job_id}", response_model=None)
    def get_job(job_id: str) -> dict[str, Any] | Response:
        fault_500()
        if inject.take("garbage", lock):
            return Response(b"<html>proxy error</html>", media_type="application/json")
        (record,) = records([job_id])  # the fault above was not taken, so none is taken in there
        if "status_code" in record:
            raise HTTPException(record["status_code"], record["detail"])
        return dict(record)

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, str]:
        fault_500()
        with lock:
            job = load(job_id)
            if not job.get("cancelled"):
                wrapped_call("cancel", wrapped.cancel, [Handle.from_json(job["wrapped"])])
                save(job | {"cancelled": True})
        return {"job_id": job_id, "status": "cancelled"}

    return app


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return sorted(a) == sorted(b) and all(
        a[k] == b[k] if isinstance(a[k], str) or isinstance(b[k], str) else abs(float(a[k]) - float(b[k])) <= 1e-10
        for k in a
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m oracles.lab_server``: serve an oracle with uvicorn until interrupted."""
    p = argparse.ArgumentParser(prog="python -m oracles.lab_server", description=__doc__.split("\n")[0])
    p.add_argument("--oracle", default="mock", help="oracle to wrap (any registered name)")
    p.add_argument("--oracle-settings", default="{}", help="JSON object of the oracle's settings")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--state-dir", default=None, help="jobs folder (default: $INNLOOP_STATE_DIR/lab)")
    p.add_argument("--latency-s", type=float, default=0.0, help="the lab's own queue time per job")
    p.add_argument("--token-file", default=None, help="file holding the token (else $INNLOOP_LAB_TOKEN)")
    p.add_argument("--ssl-certfile", default=None)
    p.add_argument("--ssl-keyfile", default=None)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    try:
        token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("INNLOOP_LAB_TOKEN")
    except OSError as exc:
        print(f"lab server: cannot read the token file {args.token_file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not token:
        print("lab server: no token; set INNLOOP_LAB_TOKEN or give --token-file", file=sys.stderr)
        return 2
    state = absolute_path(args.state_dir) if args.state_dir else default_state_dir() / "lab"
    try:
        settings = json.loads(args.oracle_settings)
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        if args.oracle in ("mock", "gpaw"):
            settings.setdefault("workdir", str(state / args.oracle))
        app = create_app(make_oracle(args.oracle, **settings), token, args.latency_s, state)
    except (InnloopError, ValueError, TypeError) as exc:
        print(f"lab server: {exc}", file=sys.stderr)
        return 2
    import uvicorn  # the server itself: only `main` runs one, importers of the app never need it

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
