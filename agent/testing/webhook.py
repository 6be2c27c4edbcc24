"""A webhook receiver on loopback: what ``[notify]`` posts to, kept in order (a test double).

``with Receiver() as r:`` serves ``r.url`` on 127.0.0.1 (a free port) in a thread and keeps
every JSON body POSTed to it in ``r.events``; ``fail`` first requests are answered 503, as a
receiver that is briefly down would, and each answer waits ``delay_s`` (a slow receiver).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, fail: int = 0, delay_s: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail, self.delay_s = fail, delay_s
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    if receiver.fail > 0:
                        receiver.fail -= 1
                        self.send_response(503)
                    else:
                        receiver.events.append(json.loads(body))
                        self.send_response(204)
                time.sleep(receiver.delay_s)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def kinds(self) -> list[str]:
        with self._lock:
            return [e["event"] for e in self.events]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
