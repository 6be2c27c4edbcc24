"""The http oracle against the reference lab server over real loopback HTTP."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.core.errors import DesignError
from oracles import make_oracle
from oracles.base import ErrorClass, Handle, JobStatus, OracleError, Result
from oracles.http import HttpOracle
from oracles.lab_server import Faults, create_app
from oracles.mock import MockOracle
from oracles.testing.lab import free_port
from tests.oracles.helpers import submit_then_sigkill, wait_terminal
from tests.oracles.lab import kill, start_process, stats, thread_server

TOKEN = secrets.token_hex(16)
D1 = [3.16, 3.16, 12.3, 90.0, 90.0, 120.0, 0.0]
D2 = [3.3, 3.0, 12.0, 95.0, 88.0, 118.0, 0.5]


@dataclass
class Lab:
    url: str
    mock: MockOracle
    faults: Faults
    workdir: Path
    jobs_dir: Path

    def client(self, retries: int = 2, **settings: Any) -> HttpOracle:
        return HttpOracle(url=self.url, token=TOKEN, workdir=self.workdir, retries=retries, backoff_s=0.01, **settings)

    def jobs(self) -> int:
        return stats(self.url, TOKEN)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """Start a lab server (mock inside) in a thread: ``lab(latency_s=..., mock_latency_s=...)``."""
    with ExitStack() as stack:

        def start(latency_s: float = 0.0, mock_latency_s: float = 0.0, batch: bool = True) -> Lab:
            """``batch=False``: a lab from before the batch read (its route removed)."""
            mock = MockOracle(workdir=tmp_path / "mock", latency_s=mock_latency_s)
            faults = Faults()
            app = create_app(mock, TOKEN, latency_s=latency_s, state_dir=tmp_path / "lab", faults=faults)
            if not batch:
                app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/v1/jobs/query"]
            url = stack.enter_context(thread_server(app))
            return Lab(url, mock, faults, tmp_path / "client", tmp_path / "lab" / "jobs")

        yield start


def test_submit_poll_results_through_the_protocol(lab: Callable[..., Lab]) -> None:
    server = lab(latency_s=1.0)
    oracle = make_oracle("http", url=server.url, token=TOKEN, workdir=server.workdir)
    assert isinstance(oracle, HttpOracle) and oracle.health()["oracle"] == "mock"
    handles = oracle.submit([D1, D2])
    assert oracle.poll(handles) == [JobStatus.RUNNING] * 2, "the lab's own latency"
    assert wait_terminal(oracle.poll, handles) == [JobStatus.COMPLETED] * 2
    results = oracle.results(handles)
    gaps = server.mock.gap([D1, D2])
    assert [r.values for r in results] == [{"gap": pytest.approx(float(g), rel=1e-6)} for g in gaps]
    h = handles[0]
    assert (h.oracle, h.workdir, h.native_id) == ("http", server.url, h.job_id)
    assert results[0].provenance["wrapped_oracle"] == "mock" and results[0].provenance["server"] == server.url
    assert server.jobs() == 2 and server.mock.submissions() == 2
    (slow,) = oracle.submit([D1])
    oracle.cancel([slow])
    ghost = Handle("http", "lab-0000", h.design, workdir=server.url)
    lost = oracle.results([ghost])[0]
    assert (lost.status, lost.error_class) == (JobStatus.ABANDONED, ErrorClass.INFRASTRUCTURE)
    assert oracle.poll([slow]) == [JobStatus.CANCELLED]
    with pytest.raises(OracleError, match="belongs to lab server 'http://elsewhere'"):
        oracle.poll([Handle("http", h.job_id, h.design, workdir="http://elsewhere")])
    text = json.dumps([r.to_json() for r in results]) + repr(oracle) + (server.workdir / "journal.json").read_text()
    assert TOKEN not in text, "the token never leaves the Authorization header"


def test_authentication_is_required(lab: Callable[..., Lab], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = lab()
    body = {"design": dict(zip("abcdefg", D1)), "idempotency_key": "k" * 16}
    assert httpx.post(f"{server.url}/v1/jobs", json=body).status_code == 401
    assert httpx.post(f"{server.url}/v1/jobs/query", json={"job_ids": ["lab-0"]}).status_code == 401
    for path in ("/v1/health", "/v1/stats", "/v1/jobs/lab-0"):
        assert httpx.get(server.url + path, headers={"Authorization": "Bearer nope"}).status_code == 401
    wrong = "wrong-" + secrets.token_hex(8)
    client = HttpOracle(url=server.url, token=wrong, workdir=tmp_path / "c", retries=3, backoff_s=1.0)
    start = time.monotonic()
    with pytest.raises(OracleError, match="refused authentication") as err:
        client.submit([D1])
    assert time.monotonic() - start < 1.0, "a refused token is not retried"
    assert wrong not in str(err.value) and TOKEN not in str(err.value)
    assert server.jobs() == 0
    monkeypatch.delenv("INNLOOP_HTTP_URL", raising=False)
    monkeypatch.delenv("INNLOOP_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("INNLOOP_HTTP_TOKEN_FILE", raising=False)
    with pytest.raises(OracleError, match="INNLOOP_HTTP_URL"):
        HttpOracle(token=TOKEN, workdir=tmp_path)
    with pytest.raises(OracleError, match="INNLOOP_HTTP_TOKEN"):
        HttpOracle(url=server.url, workdir=tmp_path)
    (tmp_path / "token").write_text(TOKEN + "\n")
    monkeypatch.setenv("INNLOOP_HTTP_URL", server.url)
    monkeypatch.setenv("INNLOOP_HTTP_TOKEN_FILE", str(tmp_path / "token"))
    assert HttpOracle(workdir=tmp_path).health()["ok"] is True
    with pytest.raises(OracleError, match="cannot read the token file"):
        HttpOracle(token_file=tmp_path / "missing", workdir=tmp_path)


def test_same_key_same_job_and_deliberate_remeasurement(lab: Callable[..., Lab]) -> None:
    server = lab()
    oracle = server.client()
    first = oracle.submit([D1], keys=["campaign-7/batch-1/0"])
    again = oracle.submit([D1], keys=["campaign-7/batch-1/0"])
    assert first[0].job_id == again[0].job_id
    assert server.jobs() == 1 and server.mock.submissions() == 1, "a repeated key starts nothing"
    with pytest.raises(OracleError, match="another design"):
        oracle.submit([D2], keys=["campaign-7/batch-1/0"])
    a, b = oracle.submit([D1]), oracle.submit([D1])
    assert a[0].job_id != b[0].job_id, "a second submission of a design is a new measurement"
    assert server.jobs() == 3 and server.mock.submissions() == 3


def test_lost_reply_is_resent_with_the_same_key(lab: Callable[..., Lab]) -> None:
    """The job is created but its reply never arrives: a retry, or a restarted client, gets it back."""
    server = lab()
    server.faults.lose_reply = 1
    handles = server.client(retries=2).submit([D1, D2])
    assert len({h.job_id for h in handles}) == 2
    assert server.jobs() == 2 and server.mock.submissions() == 2, "the retry re-sent the same key"
    server.faults.lose_reply = 1
    with pytest.raises(OracleError, match=r"journal\.json"):
        server.client(retries=0).submit([D1])
    assert server.jobs() == 3, "the job exists at the lab, but the client never heard of it"
    (h,) = server.client().submit([D1])  # a new process: same journal, same key
    assert server.jobs() == 3 and server.mock.submissions() == 3, "no second job"
    assert wait_terminal(server.client().poll, [h]) == [JobStatus.COMPLETED]
    server.client().submit([D1])
    assert server.jobs() == 4, "after the reply arrived, a new submission is a new job"


def test_server_errors_are_retried_then_reported(lab: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch) -> None:
    server = lab()
    oracle = server.client(retries=2)
    server.faults.error_500 = 2
    handles = oracle.submit([D1])
    assert server.jobs() == 1
    server.faults.error_500 = 100
    with pytest.raises(OracleError, match=r"at http://127\.0\.0\.1:\d+ unreachable or failing after 3 .*HTTP 500"):
        oracle.submit([D2])
    with pytest.raises(OracleError, match="HTTP 500"):
        oracle.poll(handles)
    server.faults.error_500 = 0
    assert oracle.poll(handles) == [JobStatus.COMPLETED]

    def broken(_handles: object) -> None:
        raise RuntimeError("detector offline")

    monkeypatch.setattr(server.mock, "results", broken)
    with pytest.raises(OracleError, match="detector offline"):
        oracle.results(handles)
    monkeypatch.undo()
    server.faults.garbage = 1
    (bad,) = oracle.results(handles)
    assert (bad.status, bad.error_class, bad.values) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE, None)
    assert "malformed reply" in (bad.message or "")
    assert oracle.results(handles)[0].ok


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    oracle = HttpOracle(url=url, token=TOKEN, workdir=tmp_path, retries=2, backoff_s=0.01)
    start = time.monotonic()
    with pytest.raises(OracleError, match=f"lab server at {url} unreachable .*3 attempt") as err:
        oracle.submit([D1])
    assert time.monotonic() - start < 5 and TOKEN not in str(err.value)
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert [len(d["pending"]) for d in journal["designs"].values()] == [1], "the key is kept for the resend"
    with pytest.raises(OracleError, match="unreachable"):
        oracle.poll([Handle("http", "lab-1", dict(zip(oracle.space.names, D1)), workdir=url)])


def test_malformed_designs_are_refused_before_any_request(lab: Callable[..., Lab]) -> None:
    server = lab()
    oracle = server.client()
    with pytest.raises(DesignError, match="outside"):
        oracle.submit([D1, [9.0, 3.16, 12.3, 90, 90, 120, 0]])
    with pytest.raises(DesignError, match="shape"):
        oracle.submit([[3.16, 3.16]])
    with pytest.raises(OracleError, match="need 2 non-empty keys"):
        oracle.submit([D1, D2], keys=["only-one"])
    assert server.jobs() == 0 and not (server.workdir / "journal.json").exists()


def test_server_restart_mid_job_keeps_every_job(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "lab"
    proc = start_process(state, port, TOKEN, {"latency_s": 2.0})
    url = f"http://127.0.0.1:{port}"
    oracle = HttpOracle(url=url, token=TOKEN, workdir=tmp_path / "client", retries=1, backoff_s=0.01)
    try:
        handles = oracle.submit([D1, D2])
        assert oracle.poll(handles) == [JobStatus.RUNNING] * 2
        kill(proc)
        with pytest.raises(OracleError, match="unreachable"):
            oracle.poll(handles)
        proc = start_process(state, port, TOKEN, {"latency_s": 2.0})
        assert wait_terminal(oracle.poll, handles) == [JobStatus.COMPLETED] * 2
        assert all(r.ok for r in oracle.results(handles))
        assert stats(url, TOKEN) == 2
    finally:
        kill(proc)
    assert MockOracle(workdir=state / "mock").submissions() == 2, "the restarted server submitted nothing new"


def test_killed_client_reattaches_without_resubmission(
    lab: Callable[..., Lab], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = lab(latency_s=0.5)
    monkeypatch.setenv("INNLOOP_HTTP_TOKEN", TOKEN)  # the token reaches the child by environment only
    setup = "from oracles.http import HttpOracle\n"
    setup += f"o = HttpOracle(url={server.url!r}, workdir={str(server.workdir)!r})\n"
    handles = submit_then_sigkill(setup, [D1, D2], tmp_path / "handles.json")
    assert TOKEN not in (tmp_path / "handles.json").read_text()
    fresh = server.client()
    assert wait_terminal(fresh.poll, handles) == [JobStatus.COMPLETED] * 2
    assert server.jobs() == 2 and server.mock.submissions() == 2, "re-attaching submitted nothing"


# -- adopt: a run killed between submit returning and saving the handles ----------------------------
def test_adopt_finds_the_jobs_of_a_submit_whose_process_died(lab: Callable[..., Lab]) -> None:
    server = lab()
    since = time.time()
    handles = server.client().submit([D1, D2])  # returned; then the process died before saving them
    D3 = [3.2, 3.1, 12.1, 92.0, 89.0, 119.0, 0.2]
    reborn = server.client()  # a new process: only the journal is left
    found = reborn.adopt([D2, D3, D1], since)
    assert [h.job_id if h else None for h in found] == [handles[1].job_id, None, handles[0].job_id]
    assert server.jobs() == 2 and server.mock.submissions() == 2, "adopting started no job"
    assert reborn.adopt([D1, D2], time.time()) == [None, None], "nothing was submitted since"
    assert [h.job_id for h in reborn.adopt([D1], since) if h] == [handles[0].job_id], "adopting twice is harmless"
    (again,) = reborn.submit([D1])
    assert again.job_id != handles[0].job_id and server.jobs() == 3, "a later submit is a new measurement"


def test_adopt_after_lost_replies_completes_the_submit_without_doubles(lab: Callable[..., Lab]) -> None:
    server = lab()
    server.faults.lose_reply = 2  # the first job's reply is lost, and then the one adopt starts
    since = time.time()
    with pytest.raises(OracleError, match="journal"):
        server.client(retries=0).submit([D1, D2])
    assert server.jobs() == 1, "D1's job exists, D2 was never sent"
    found = server.client(retries=2).adopt([D1, D2], since)
    assert all(found) and server.jobs() == 2 and server.mock.submissions() == 2, "D2 started once, D1 not again"
    again = server.client().adopt([D1, D2], since)
    assert [h.job_id for h in again if h] == [h.job_id for h in found if h] and server.jobs() == 2
    assert wait_terminal(server.client().poll, [h for h in found if h]) == [JobStatus.COMPLETED] * 2
    server.client().submit([D2])
    assert server.jobs() == 3, "adopted keys are released: a later submit is a new job"


def test_the_journal_keeps_only_what_a_later_adopt_can_need(lab: Callable[..., Lab]) -> None:
    server = lab()
    oracle = server.client()
    server.faults.error_500 = 3  # the first submit fails: its key stays pending
    with pytest.raises(OracleError):
        oracle.submit([D1])
    oracle.submit([D2])
    oracle.submit([D2])
    journal = json.loads((server.workdir / "journal.json").read_text())
    entries = list(journal["designs"].values())
    assert sorted(len(e["pending"]) for e in entries) == [0, 1], "D1's pending key and D2's latest claim"
    assert sorted(len(e["claims"]) for e in entries) == [0, 1], "claims of earlier submits are dropped"
    assert server.jobs() == 2


def test_collect_adopts_instead_of_resubmitting_after_a_crash(lab: Callable[..., Lab], tmp_path: Path) -> None:
    from agent.campaign.collect import Job, collect
    from agent.campaign.config import RetrySpec
    from agent.campaign.store import CampaignStore

    server = lab()
    store = CampaignStore(tmp_path / "state", "c")
    store.create({}, "fp", "")
    rows = [dict(zip(server.mock.space.names, d)) for d in (D1, D2)]
    since = time.time()
    store.write_inflight(
        {"iteration": 0, "phase": "submitting", "time": since, "jobs": [Job(r, "x").to_json() for r in rows]}
    )
    handles = server.client().submit(rows)  # the killed run got this far
    jobs = [Job.from_json(j) for j in (store.read_inflight() or {})["jobs"]]
    retry = RetrySpec(backoff_s=0.0, poll_interval_s=0.01)
    new, left = collect(server.client(), store, jobs, 0, retry, since=since, sleep=lambda _s: None)
    assert left == [] and sorted(r.result.handle.job_id for r in new) == sorted(h.job_id for h in handles)
    assert server.jobs() == 2 and server.mock.submissions() == 2, "no second job for either design"


# -- batch reads ---------------------------------------------------------------------------------
def _spy(oracle: HttpOracle, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record ``METHOD path`` of every request the client sends."""
    sent: list[str] = []
    request = oracle._client.request

    def spy(method: str, url: str, **kw: Any) -> httpx.Response:
        sent.append(f"{method} {url.removeprefix(oracle.url)}")
        return request(method, url, **kw)

    monkeypatch.setattr(oracle._client, "request", spy)
    return sent


def test_batch_reads_chunk_and_report_per_job(lab: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch) -> None:
    server = lab()
    oracle = server.client()
    handles = oracle.submit([D1, D2, [3.2, 3.1, 12.1, 92.0, 89.0, 119.0, 0.2]])
    ghost = Handle("http", "lab-0000", handles[0].design, workdir=server.url)
    monkeypatch.setattr("oracles.http.QUERY_CHUNK", 2)
    sent = _spy(oracle, monkeypatch)
    assert oracle.poll([*handles, ghost]) == [JobStatus.COMPLETED] * 3 + [JobStatus.ABANDONED]
    assert sent == ["POST /v1/jobs/query"] * 2, "one request per chunk, none per job"
    results = oracle.results(handles)
    assert [r.values for r in results] == [
        {"gap": pytest.approx(float(g), rel=1e-6)} for g in server.mock.gap([list(h.design.values()) for h in handles])
    ]
    assert results[0].provenance["lab_job_id"] == handles[0].job_id
    server.faults.garbage = 1  # one entry of the batch is not a record: that job only is FAILED
    bad, good, _ = oracle.results(handles)
    assert (bad.status, bad.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE) and good.ok
    assert "malformed reply" in (bad.message or "")
    sent.clear()
    server.faults.garbage_batch = 1  # the whole reply is a proxy's page: read again job by job
    assert all(r.ok for r in oracle.results(handles))
    assert sent == [
        "POST /v1/jobs/query",
        "GET /v1/jobs/" + handles[0].job_id,
        "GET /v1/jobs/" + handles[1].job_id,
        "POST /v1/jobs/query",
    ]
    server.faults.error_500 = 1  # retried like any request
    assert all(r.ok for r in oracle.results(handles))
    server.faults.error_500 = 100
    with pytest.raises(OracleError, match="HTTP 500"):
        oracle.poll(handles)
    server.faults.error_500 = 0
    (server.jobs_dir / "lab-00ff.json").write_text("{not json")  # a job file the lab cannot read: its fault
    with pytest.raises(OracleError, match="failed on job lab-00ff"):
        oracle.poll([Handle("http", "lab-00ff", handles[0].design, workdir=server.url)])
    too_many = httpx.post(
        f"{server.url}/v1/jobs/query", json={"job_ids": ["lab-0"] * 1001}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert too_many.status_code == 422


def test_batch_reads_scrub_the_token(lab: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch) -> None:
    server = lab()
    oracle = server.client()
    handles = oracle.submit([D1])
    echo = f"node says Bearer {TOKEN}"

    def leaky(hs: list[Handle]) -> list[Result]:
        return [Result.failure(h, ErrorClass.PHYSICS, echo, provenance={"cmd": echo}) for h in hs]

    monkeypatch.setattr(server.mock, "results", leaky)
    (r,) = oracle.results(handles)
    assert r.error_class is ErrorClass.PHYSICS and TOKEN not in json.dumps(r.to_json())
    assert "<hidden>" in (r.message or "")


def test_an_older_lab_without_batch_reads_is_read_job_by_job(
    lab: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = lab(batch=False)
    oracle = server.client()
    handles = oracle.submit([D1, D2])
    sent = _spy(oracle, monkeypatch)
    assert oracle.poll(handles) == [JobStatus.COMPLETED] * 2
    assert all(r.ok for r in oracle.results(handles))
    ids = [h.job_id for h in handles]
    assert sent == ["POST /v1/jobs/query"] + [f"GET /v1/jobs/{i}" for i in ids * 2], "asked once, then per job"
