"""Telling people: a webhook hears when a campaign needs someone, finishes, or stops.

A campaign runs for days unattended; the person who must approve a batch, or fix the
cluster that made it stop, should not have to watch it. ``[notify]`` names a webhook (its
URL from a file or an environment variable: URLs of chat and paging services carry their
secret) and the events wanted:

- ``approval``: a batch waits for approval (`agent.campaign.approval`);
- ``finished``: the campaign is over: every target has its hits, or a budget ran out;
- ``stopped``: it stopped before that: its oracle's failure rate, an oracle unreachable
  or refusing, a person's stop at approval.

Each is one JSON POST: ``{"event", "campaign", "reason", "link", "key", "time"}``, ``link``
being the Prefect run's page when a flow runs the campaign. An event is sent once: its key
goes to ``notified.jsonl`` in the campaign's folder after the receiver accepted it, so a run
killed while it waits for approval, and resumed into the same wait, does not page again.
A receiver that is down is tried three times and logged; it never stops a campaign.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.campaign.run_config import NotifySpec
from agent.core.errors import ConfigError

__all__ = ["SENT", "Notify", "Webhook", "quiet", "webhook_for"]

SENT = "notified.jsonl"  # keys of the events a receiver accepted

Notify = Callable[[str, str, str], None]  # (event, key, reason)


def quiet(_event: str, _key: str, _reason: str) -> None:
    """No ``[notify]``: nobody to tell."""


@dataclass
class Webhook:
    """POSTs each wanted event once (by key) to ``url``; the keys sent are kept in ``folder``."""

    url: str = field(repr=False)  # a secret: never in a repr, a log or an error
    folder: Path
    campaign: str
    events: tuple[str, ...]
    link: str | None = None
    timeout_s: float = 10.0
    log: Callable[[str], None] = lambda _m: None
    tries: int = 3

    def __call__(self, event: str, key: str, reason: str) -> None:
        if event not in self.events or key in self.sent():
            return
        body = {"event": event, "campaign": self.campaign, "reason": reason, "link": self.link, "key": key}
        data = json.dumps(body | {"time": time.time()}).encode()
        for attempt in range(1, self.tries + 1):
            request = urllib.request.Request(self.url, data, {"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                    reply.read()
                break
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if attempt == self.tries:  # the error's type and status only: its text may quote the URL
                    why = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
                    self.log(f"could not notify about {event} ({key}): {why}; the campaign goes on")
                    return
                time.sleep(attempt)
        self._mark(key, event)

    def sent(self) -> set[str]:
        path = self.folder / SENT
        if not path.exists():
            return set()
        keys = set()
        for line in path.read_text().splitlines():
            try:
                keys.add(str(json.loads(line)["key"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: that event is sent again, never lost
        return keys

    def _mark(self, key: str, event: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / SENT, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "event": event, "time": time.time()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def webhook_for(spec: NotifySpec, folder: Path, campaign: str, link: str | None, log: Callable[[str], None]) -> Notify:
    """The campaign's notifier: a `Webhook` when ``[notify]`` names a URL, else `quiet`."""
    if spec.url_file is not None:
        try:
            url = Path(spec.url_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[notify] url_file {spec.url_file}: cannot read it ({exc})") from None
        where = f"the file {spec.url_file}"
    elif spec.url_env is not None:
        url = os.environ.get(spec.url_env, "").strip()
        where = f"${spec.url_env}"
    else:
        return quiet
    if not url.startswith(("http://", "https://")) or any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"[notify]: {where} holds no http(s) URL on one line")  # the value itself is a secret
    return Webhook(url, folder, campaign, tuple(spec.events), link, spec.timeout_s, log)
