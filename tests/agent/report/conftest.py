"""Two small campaigns (mock oracle with a generator, table oracle with a pool) and their reports.

Built once per test session: a campaign of four short iterations takes a few seconds, a
report a few more (the first one in a session also fits a UMAP of a data sample that no
shipped cache entry holds: umap-learn's import and numba's compilation, about 10 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# before anything imports numba: its thread count cannot change once its threads have started
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

COMMON = """
seed = 1
[[targets]]
value = 0.5
window = 0.1
hits = 30
[[targets]]
value = 1.0
hits = 30
[initial]
random = 20
[loop]
batch_size = 6
samples_per_target = 300
[budget]
iterations = 4
[models]
members = 3
surrogate_epochs = 40
surrogate_warm_epochs = 10
generator_epochs = 20
generator_warm_epochs = 5
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
"""

MOCK = 'name = "rep-mock"\n' + COMMON + '[oracle]\nname = "mock"\n[oracle.settings]\nfailure_rate = 0.15\n'
TABLE = 'name = "rep-table"\n' + COMMON + '[oracle]\nname = "table"\n'


@dataclass
class Built:
    state: Path
    name: str
    result: object  # agent.report.ReportResult


def _campaign(root: Path, text: str) -> str:
    from agent.campaign.config import load_config
    from agent.campaign.runner import run_campaign

    path = root / "campaign.toml"
    path.write_text(text)
    cfg = load_config(str(path))
    run_campaign(cfg, root / "state", source_text=text)
    return cfg.name


def _build(root: Path, text: str) -> Built:
    from agent.report import ReportOptions, build_report

    name = _campaign(root, text)
    result = build_report(root / "state", name, ReportOptions(samples=300, umap_points=600))
    return Built(root / "state", name, result)


@pytest.fixture(scope="session")
def mock_report(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory.mktemp("report-mock"), MOCK)


@pytest.fixture(scope="session")
def table_report(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory.mktemp("report-table"), TABLE)
