"""`flows.server.ensure_api`: a Prefect API that answers, or one line saying what to do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.server import PrefectUnavailable, ensure_api


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[int]]]:
    """A loopback HTTP server answering ``/api/health`` with the status in ``codes[0]``."""
    codes = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(codes[0] if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api", codes
    server.shutdown()
    server.server_close()


def test_a_configured_api_that_answers_is_used(health_server: Any) -> None:
    url, _ = health_server
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert ensure_api() == url


def test_a_configured_api_that_is_down_or_broken_is_one_message(health_server: Any) -> None:
    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(PrefectUnavailable, match=r"http://127.0.0.1:9/api \(PREFECT_API_URL\) does not answer") as exc,
    ):
        ensure_api()
    assert "prefect server start" in str(exc.value) and "--no-prefect" in str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)
    url, codes = health_server
    codes[0] = 503
    with temporary_settings(updates={PREFECT_API_URL: url}), pytest.raises(PrefectUnavailable, match="answered 503"):
        ensure_api()


def test_a_temporary_server_that_cannot_start_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.server.api.server import SubprocessASGIServer

    asked: list[int | None] = []

    def start(self: Any, timeout: int | None = None) -> None:
        asked.append(timeout)
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.\nstdout: ...")

    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(PrefectUnavailable) as exc:
        ensure_api()
    message = str(exc.value)
    assert message.startswith("a temporary Prefect server could not start within 300 s (Timed out while")
    assert "\n" not in message and "PREFECT_API_URL" in message
    assert asked == [300]  # patient: the first start creates Prefect's database
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(PrefectUnavailable, match="within 45 s"):
        ensure_api()
    assert asked[-1] == 45
