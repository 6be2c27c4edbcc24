"""Secrets stay secret, state never runs code, and names never become paths or commands.

A campaign folder is meant to be copied, archived and shared; so is its config. The lab
server's token therefore comes from the environment or a file and must never reach
``state/`` (config copy, ledger, handles, logs) or the terminal, and nothing innloop reads
back from ``state/`` may execute code (weights are read with ``weights_only``).
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agent.campaign.config import config_from_dict
from agent.core.errors import ConfigError
from oracles.lab_server import create_app
from oracles.mock import MockOracle
from tests.oracles.lab import thread_server

ROOT = Path(__file__).parents[2]
TOKEN = "lab-" + secrets.token_hex(20)

CAMPAIGN = """
name = "{name}"
seed = 2
[[targets]]
value = 1.0
hits = 50
[oracle]
name = "http"
[oracle.settings]
url = "{url}"
backoff_s = 0.01
retries = 1
{extra}
[initial]
random = 8
[loop]
batch_size = 3
samples_per_target = 200
[budget]
iterations = {iterations}
[models]
members = 2
surrogate_epochs = 20
surrogate_warm_epochs = 5
generator_epochs = 10
generator_warm_epochs = 3
[ray]
enabled = false
[retry]
poll_interval_s = 0.01
backoff_s = 0.01
outage_s = {outage_s}
"""


def _innloop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNLOOP_HTTP_")}
    return env | {"INNLOOP_TORCH_THREADS": "1"} | extra


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle`` (also inside binary files)."""
    raw = needle.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and raw in p.read_bytes()]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The reference lab server (mock inside) on loopback; yields (url, its state folder)."""
    root = tmp_path_factory.mktemp("lab")
    app = create_app(MockOracle(workdir=root / "mock"), TOKEN, state_dir=root)
    with thread_server(app) as url:
        yield url, root


# -- secrets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["token", "password", "api_key", "client_secret"])
def test_a_secret_written_in_the_campaign_file_is_refused_and_not_echoed(key: str) -> None:
    value = secrets.token_hex(12)
    data = {"name": "c", "targets": [{"value": 1.0}], "oracle": {"name": "http", "settings": {key: value}}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, source="'c.toml'")
    text = str(err.value)
    assert f"oracle.settings.{key}: a secret must not be written in a campaign file" in text
    assert f"`{key}_file`" in text and value not in text


def test_cli_refuses_a_literal_token_before_creating_anything(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    text = CAMPAIGN.format(name="lit", url="http://127.0.0.1:9", extra=f'token = "{TOKEN}"', iterations=1, outage_s=5)
    config.write_text(text)
    done = _innloop("run", str(config), "--state", str(tmp_path / "state"), "--no-prefect", "-q", env=_env())
    assert done.returncode == 2 and "oracle.settings.token: a secret must not be written" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["environment", "token_file"])
def test_http_campaign_keeps_the_token_out_of_state_and_output(lab: tuple[str, Path], tmp_path: Path, how: str) -> None:
    url, lab_root = lab
    token_file = tmp_path / "secret" / "lab.token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    extra = f'token_file = "{token_file}"' if how == "token_file" else ""
    env = _env(INNLOOP_HTTP_TOKEN=TOKEN) if how == "environment" else _env()
    config = tmp_path / "c.toml"
    config.write_text(CAMPAIGN.format(name=f"sec-{how}", url=url, extra=extra, iterations=2, outage_s=30))
    state = tmp_path / "state"
    done = _innloop("run", str(config), "--state", str(state), "--no-prefect", env=env)  # not quiet: logs too
    assert done.returncode == 0, done.stderr[-3000:]
    status = _innloop("status", f"sec-{how}", "--state", str(state), "--json", env=env)
    assert status.returncode == 0 and '"oracle_calls": 11' in status.stdout  # 8 seeds + one batch of 3
    assert _files_holding(state, TOKEN) == [], "the token was written into the campaign's state"
    assert TOKEN not in done.stdout + done.stderr + status.stdout + status.stderr
    assert _files_holding(lab_root, TOKEN) == [], "the lab server stored the token"


@pytest.mark.slow
def test_wrong_token_stops_at_once_without_echoing_either_token(lab: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = lab
    wrong = "wrong-" + secrets.token_hex(8)
    config = tmp_path / "c.toml"
    config.write_text(CAMPAIGN.format(name="wrong", url=url, extra="", iterations=1, outage_s=30))
    state = tmp_path / "state"
    done = _innloop("run", str(config), "--state", str(state), "--no-prefect", env=_env(INNLOOP_HTTP_TOKEN=wrong))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "refused authentication (HTTP 401)" in done.stderr
    for secret in (wrong, TOKEN):
        assert secret not in done.stdout + done.stderr
        assert _files_holding(state, secret) == []


@pytest.mark.slow
def test_unreachable_lab_stops_with_exit_3_and_keeps_the_jobs(tmp_path: Path) -> None:
    """A lab that is down is not bad input: exit 3, the designs stay in flight for the next run."""
    from oracles.testing.lab import free_port

    config = tmp_path / "c.toml"
    url = f"http://127.0.0.1:{free_port()}"
    config.write_text(CAMPAIGN.format(name="down", url=url, extra="", iterations=1, outage_s=0.5))
    state = tmp_path / "state"
    done = _innloop("run", str(config), "--state", str(state), "--no-prefect", "-q", env=_env(INNLOOP_HTTP_TOKEN=TOKEN))
    assert done.returncode == 3, done.stderr[-3000:]
    assert "innloop: stopped: oracle 'http' unreachable" in done.stderr
    inflight = (state / "down" / "inflight.json").read_text()
    assert inflight.count('"design"') == 8 and TOKEN not in inflight


# -- nothing read back from state executes code ------------------------------------------------
class _Payload:
    """Unpickling this would create ``marker``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _mock_campaign(tmp_path: Path, iterations: int) -> Path:
    config = tmp_path / "m.toml"
    text = CAMPAIGN.replace('name = "http"', 'name = "mock"').format(
        name="evil", url="", extra="", iterations=iterations, outage_s=30
    )
    text = text.replace('url = ""\nbackoff_s = 0.01\nretries = 1\n', "")
    config.write_text(text)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["surrogate.pt", "generator.pt"])
def test_a_pickle_planted_in_state_is_refused_not_run(tmp_path: Path, victim: str) -> None:
    """Weights of the iteration a killed run left behind carry no checksum yet; they are
    still read with ``weights_only``, so a planted pickle is an error, never executed code."""
    state, marker = tmp_path / "state", tmp_path / "pwned"
    first = _innloop("run", str(_mock_campaign(tmp_path, 2)), "--state", str(state), "--no-prefect", "-q", env=_env())
    assert first.returncode == 0, first.stderr[-3000:]
    iterations = state / "evil" / "iterations"
    folder = iterations / "0002"  # the next iteration: no manifest vouches for its files yet
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "anything", "state_dict": _Payload(marker)}, folder / victim, pickle_module=pickle)
    if victim == "generator.pt":  # the surrogate must load for the generator to be read
        (folder / "surrogate.pt").write_bytes((iterations / "0001" / "surrogate.pt").read_bytes())
    again = _innloop("run", str(_mock_campaign(tmp_path, 3)), "--state", str(state), "--no-prefect", "-q", env=_env())
    assert not marker.exists(), "unpickling state ran code"
    assert again.returncode == 2, again.stdout + again.stderr[-3000:]
    assert victim in again.stderr and "Traceback" not in again.stderr
