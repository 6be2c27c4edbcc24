"""The report as a reader sees it: headless Chromium loads the HTML and decodes every image.

The page's inline script writes ``name=WIDTHxHEIGHT`` of every ``<img>`` (its decoded,
natural size) into ``#image-check`` on load; ``--dump-dom`` after a virtual-time budget
gives the DOM after that script ran. A broken image decodes to 0x0.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.report import SIZES
from tests.chromium import FLAGS, chromium

pytestmark = pytest.mark.slow


def _decoded(html: Path, profile: Path) -> dict[str, tuple[int, int]]:
    browser = chromium()
    done = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="image-check"[^>]*>([^<]*)</pre>', done.stdout)
    assert found, f"no image check in the DOM: {done.stdout[-2000:]}"
    return {k: (int(w), int(h)) for k, w, h in re.findall(r"(\w+)=(\d+)x(\d+)", found.group(1))}


def test_every_figure_renders_in_chromium(table_report: Any, tmp_path: Path) -> None:
    decoded = _decoded(table_report.result.html, tmp_path / "profile")
    assert decoded == SIZES  # every figure present, decoded, at its drawn size


def test_a_broken_image_is_detected(table_report: Any, tmp_path: Path) -> None:
    html = table_report.result.html.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'(data-name="data_umap"[^>]*src="data:image/png;base64,)[^"]{0,200}', r"\1AAAA", html))
    assert _decoded(broken, tmp_path / "profile")["data_umap"] == (0, 0)
