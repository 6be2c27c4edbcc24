"""``innloop run`` as a person meets it: the first run on a fresh machine, the console, stopping.

Every test here starts the real command in a subprocess: a fresh ``HOME`` and
``PREFECT_HOME`` for the first-run tests, a pseudo-terminal for the live view, a pipe
for the plain lines, and SIGINT/SIGTERM sent to a run with jobs at the oracle, after
which ``innloop run`` resumes and the oracle's own job files are counted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.campaign.store import CampaignStore
from agent.testing.backends import MOCK_ITERATIONS, mock_case, mock_config
from agent.testing.kills import ENV, NAME, outcome, run_campaign_process, write_config

ROOT = Path(__file__).parents[3]
INNLOOP = str(Path(sys.executable).parent / "innloop")  # the console script the README's command runs
ITERATION_LINE = re.compile(r"^iteration \d+: \d+ oracle calls \(\+\d+, \d+ failed\), hits .+ elapsed")
LOG_RECORD = re.compile(r"\d\d:\d\d:\d\d[.,]\d{3}\s*\|?\s*(INFO|WARNING|ERROR|DEBUG)|\b(INFO|WARNING) \w+\.py:\d+ --")
BAR = re.compile(r"[━╸╺]|\d+%\|")  # the live view's hit bars, or a tqdm bar
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


def _fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The machine's environment with a new, empty home and Prefect home; no innloop state folder."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "INNLOOP_", "RAY_"))}
    return env | {"HOME": str(home), "PREFECT_HOME": str(home / ".prefect")} | ENV | extra


def _table_rows(lines: list[str]) -> list[str]:
    return [ln for ln in lines if re.match(r"^\s*(\d+(\.\d+)? ± \d+(\.\d+)?)?\s+\d+\s+-?\d", ln)]


@pytest.mark.slow
def test_readme_run_command_works_first_time_in_a_fresh_home(tmp_path: Path) -> None:
    """``innloop run`` from a new folder, fresh HOME and PREFECT_HOME, output piped: exit 0, hits.

    The temporary Prefect server creates its database here; the default state folder is
    the relative ``state/``. Piped output is one plain line per iteration, then the table.
    """
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [INNLOOP, "run"], cwd=work, env=_fresh_env(tmp_path), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stdout.splitlines()
    status = CampaignStore(work / "state", "mos2-default")
    iterations = status.last_completed() + 1
    assert [ln for ln in lines if ln.startswith("iteration ")] == lines[:iterations], done.stdout
    assert all(ITERATION_LINE.match(ln) for ln in lines[:iterations]), done.stdout
    summary = lines[iterations]
    assert summary.startswith("mos2-default: every target has its diverse hits;"), summary
    assert "diverse hits 10/10 at 0.5 eV" in summary or re.search(r"diverse hits 1\d/10 at 0.5 eV", summary)
    header = lines[iterations + 1]
    for column in ("target (eV)", "a (Å)", "alpha (deg)", "efield (V/Å)", "gap (eV)"):
        assert column in header, header
    rows = _table_rows(lines[iterations + 2 :])
    assert len(rows) >= 20, done.stdout
    assert all(not LOG_RECORD.search(ln) for ln in lines), "a log record reached standard output"

    env = _fresh_env(tmp_path)
    status = json.loads(_innloop(["status", "mos2-default", "--json"], work, env).stdout)
    assert status["done"] and status["in_flight"] == 0 and status["oracle"] == "mock"
    assert status["oracle_calls"] == sum(status["results"].values()) <= 150
    assert [t["hits"] >= t["wanted"] for t in status["targets"]] == [True, True]
    for t in status["targets"]:
        assert all(abs(d["gap"] - t["value"]) <= t["window"] for d in t["designs"])
    # the flow ends with the campaign report: every figure of the shipped default campaign
    from PIL import Image

    from agent.report import SIZES

    report = work / "state" / "mos2-default" / "report"
    assert (report / "report.html").stat().st_size > 100_000  # the figures are embedded
    for name, size in SIZES.items():
        with Image.open(report / f"{name}.png") as img:
            assert img.size == size, name
    # hits spread: each target's in more than one of the families its models believe in,
    # in the status, the report's summary and its families table beside the diversity figure
    assert all(t["families"] is not None and t["families"] > 1 for t in status["targets"]), status["targets"]
    assert all(s["covered"] > 1 for s in json.loads((report / "summary.json").read_text())["families"])
    html = (report / "report.html").read_text()
    assert html.index('id="figure-diversity"') < html.index('id="table-families"')
    again = _innloop(["run", "-q", "--no-prefect", "--no-ray"], work, env)  # finished: nothing is redone
    assert again.returncode == 0 and f"{status['oracle_calls']} oracle calls" in again.stdout
    assert again.stdout.splitlines()[0].startswith("mos2-default: every target has its diverse hits")
    assert (
        json.loads(_innloop(["status", "mos2-default", "--json"], work, env).stdout)["oracle_calls"]
        == (status["oracle_calls"])
    )


def _innloop(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INNLOOP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_unreachable_prefect_api_is_one_line_and_exit_2(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = _fresh_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    done = subprocess.run([INNLOOP, "run"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert err[0].startswith("innloop: error: the Prefect API at http://127.0.0.1:9/api (PREFECT_API_URL) does not")
    assert "prefect server start" in err[0] and "--no-prefect" in err[0]
    assert done.stdout == "" and not (work / "state").exists()


@pytest.fixture(scope="module")
def prefect_url() -> Iterator[str]:
    """One real Prefect API (Prefect's test harness: a server process) for this module's runs."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield str(PREFECT_API_URL.value())


def _read_pty(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` on a 100x30 pseudo-terminal (stdout and stderr); ``(exit code, everything written)``."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_terminal_shows_one_live_view_and_never_mixes_it_with_log_records(tmp_path: Path, prefect_url: str) -> None:
    """Under a pseudo-terminal, through Prefect: the view redraws; no line holds a bar and a log record."""
    config = write_config(tmp_path / "cfg", mock_config())
    env = _fresh_env(tmp_path, COLUMNS="100", LINES="30", TERM="xterm-256color", PREFECT_API_URL=prefect_url)
    cmd = [INNLOOP, "run", str(config), "--state", str(tmp_path / "state"), "--iterations", "3"]
    code, text = _read_pty(cmd, env, tmp_path, 600)
    assert code == 0, text[-3000:]
    lines = [ln for ln in re.split(r"[\r\n]+", ANSI.sub("", text)) if ln.strip()]
    assert any(re.search(r"crash  iteration \d+ · (retrain|sample|refine|choose|measure)", ln) for ln in lines)
    assert any("· 0 failed" in ln for ln in lines), "the oracle row of the live view never appeared"
    mixed = [ln for ln in lines if BAR.search(ln) and LOG_RECORD.search(ln)]
    assert not mixed, mixed[:3]
    assert not [ln for ln in lines if LOG_RECORD.search(ln)], "Prefect's or Ray's log records reached the console"
    assert "it/s]" not in text and "Traceback" not in text
    assert any(ln.startswith(f"{NAME}: paused after 3 iteration(s)") for ln in lines), lines[-30:]


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True
    )


def _wait_for_jobs_in_flight(state: Path, proc: subprocess.Popen[str], timeout: float = 600) -> None:
    """Until iteration 0 is committed and a later batch is at the oracle."""
    store = CampaignStore(state, NAME)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if store.exists() and store.last_completed() >= 0 and (store.root / "inflight.json").exists():
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the run never had jobs in flight after iteration 0: {proc.communicate()[1][-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prefect", "ray", "signum"),
    [(False, False, signal.SIGINT), (True, False, signal.SIGINT), (True, True, signal.SIGTERM)],
    ids=["no-prefect-sigint", "prefect-sigint", "prefect-ray-sigterm"],
)
def test_a_signal_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, prefect_url: str, prefect: bool, ray: bool, signum: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM with jobs at the oracle: one line, 130/143, no traceback; nothing lost or paid twice."""
    config = write_config(tmp_path / "cfg", mock_config(ray=ray))
    state = tmp_path / "state"
    with mock_case(tmp_path) as case:
        env = _fresh_env(tmp_path, **case.env) | {"INNLOOP_MOCK_LATENCY_S": "1.5", "PREFECT_API_URL": prefect_url}
        cmd = [INNLOOP, "run", str(config), "--state", str(state)] + ([] if prefect else ["--no-prefect"])
        proc = _start(cmd, env)
        _wait_for_jobs_in_flight(state, proc)
        time.sleep(0.3)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], err[-3000:]
        assert "Traceback" not in out + err, err[-3000:]
        last = err.strip().splitlines()[-1]
        what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        assert re.match(rf"innloop: stopped by {what}; kept \d+ results in the ledger \(iterations 0-\d+ ", last), last
        in_flight = int(re.search(r"and (\d+) jobs in flight", last).group(1))  # type: ignore[union-attr]
        assert in_flight > 0 and f"`innloop run {config}" in last, last
        before = outcome(state, case)

        resumed = run_campaign_process(config, state, "none", case.env)  # innloop run … --no-prefect -q
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        # -q on a resumed campaign that trains: the final table only, no bars, no messages
        assert resumed.stdout.startswith(f"{NAME}: iteration budget reached"), resumed.stdout[:500]
        assert "%|" not in resumed.stderr + resumed.stdout and "resuming" not in resumed.stderr + resumed.stdout
        after = outcome(state, case)
        accepted = case.accepted()
        assert not after.problems and after.last == MOCK_ITERATIONS - 1
        assert after.designs[: len(before.designs)] == before.designs, "the resume changed what the ledger held"
        assert len({d for _, d in accepted}) == len(accepted), "a design was submitted to the oracle twice"
        assert {i for i, _ in accepted} == set(after.ids), "a result is missing from the ledger or unknown"
