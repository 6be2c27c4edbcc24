"""Headless Chromium as the tests run it: one binary lookup and one set of flags.

Flags keep it quiet and self-contained on a CI machine: no sandbox (root in a
container), no GPU, no network traffic of its own, no first-run or sync screens. Each
caller gives its own ``--user-data-dir`` so runs never share a profile.
"""

from __future__ import annotations

import shutil

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    """The Chromium binary; a failed assertion (not a skip) when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: scripts/install_chromium.sh installs it (CI runs it)"
    return found
