"""Time `innloop report` on a 20-iteration campaign, and show its switching pairs.

One run: a campaign of 20 iterations with small models is built first (the table
oracle by default, which replays the bundled VASP data, so the switching pairs are
pool rows and the oracle confirms the top 20 for free; ``--oracle mock`` for a
generator campaign), then ``innloop report`` runs alone in a fresh process, exactly as a
user runs it: its wall time includes importing torch, pymatgen and umap-learn and
numba's first-call compilation. Printed: seconds per report stage (from the report's
``summary.json``), the process's wall time, and the five smallest verified 0 -> 1.0 eV
switches with how many of the top 20 the oracle confirms.

``python -m benchmarks.report [--oracle table|mock] [--iterations 20] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from agent.campaign.config import load_config
from agent.campaign.runner import run_campaign

CONFIG = """
name = "bench-report-{oracle}"
seed = 0
[[targets]]
value = 0.0
window = 0.1
hits = 1000
[[targets]]
value = 1.0
window = 0.1
hits = 1000
[oracle]
name = "{oracle}"
[initial]
random = 30
[loop]
batch_size = 10
samples_per_target = 500
[budget]
iterations = {iterations}
oracle_calls = 100000
[models]
members = 3
surrogate_epochs = 100
surrogate_warm_epochs = 30
generator_epochs = 40
generator_warm_epochs = 10
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
"""


def build_campaign(root: Path, oracle: str, iterations: int) -> tuple[str, float]:
    """Run the campaign in this process; return its name and seconds."""
    torch.set_num_threads(1)
    path = root / f"{oracle}.toml"
    text = CONFIG.format(oracle=oracle, iterations=iterations)
    path.write_text(text)
    cfg = load_config(str(path))
    t0 = time.perf_counter()
    run = run_campaign(cfg, root / "state", source_text=text)
    print(f"campaign {cfg.name}: {run.state.iteration} iterations, {run.state.calls} oracle calls, {run.reason}")
    return cfg.name, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--oracle", default="table", choices=["table", "mock"])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument(
        "--keep", help="build the campaign in this folder (reused when it exists) instead of a temporary one"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        name, campaign_s = build_campaign(root, args.oracle, args.iterations)
        env = os.environ | {"INNLOOP_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "agent.cli", "report", name, "--state", str(root / "state")]
        cmd += ["--samples", str(args.samples), "--switch", "0,1.0", "--confirm", "20", "-q"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        folder = root / "state" / name / "report"
        summary = json.loads((folder / "summary.json").read_text())
        rows = [(stage, s) for stage, s in summary["seconds"].items()]
        rows += [("in-process total", sum(summary["seconds"].values())), ("innloop report (wall, fresh process)", wall)]
        print(f"\ncampaign built in {campaign_s:.1f} s (not part of the report's time)\n")
        print(f"{'stage':<38} {'seconds':>8}")
        for stage, s in rows:
            print(f"{stage:<38} {s:8.2f}")
        pairs = pd.read_csv(folder / "switching_pairs.csv")
        print(
            f"\nswitching 0 -> 1.0 eV: candidates {summary['in_window']}, {summary['pairs']} pairs, "
            f"{summary['verified']} verified, {summary['confirmed']} of {summary['confirm_attempted']} confirmed"
        )
        cols = ["rank", "distance", "change", "pred_0", "measured_0", "pred_1", "measured_1", "confirmed"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 80):
            print(pairs[cols].head(5).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
