"""The shipped experiment example end to end: TOML only, a lab server, Prefect and Ray.

`agent/configs/experiment.toml` as a user runs it (README): its recipe space declared in
the file, measured through the `http` oracle against the reference lab server serving
the recipe emulator (`python -m oracles.lab_server --oracle recipe`), the campaign as a
Prefect flow run with Ray sampler actors. Sized down (epochs, hits) to fit the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oracles.testing.lab import lab_jobs, start_lab, stop_lab

EXPERIMENT = Path(__file__).resolve().parents[2] / "agent" / "configs" / "experiment.toml"


@pytest.mark.slow
def test_the_experiment_runs_through_http_prefect_and_ray(
    prefect_api: None, local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.campaign import campaign_flow

    token = "experiment-token-123"
    proc, url = start_lab(tmp_path / "lab", token, oracle="recipe")
    try:
        text = EXPERIMENT.read_text(encoding="utf-8").replace("http://127.0.0.1:8765", url)
        for old, new in [
            ("hits = 10", "hits = 4"),
            ("surrogate_epochs = 200", "surrogate_epochs = 60"),
            ("generator_epochs = 120", "generator_epochs = 40"),
            ("samples_per_target = 2000", "samples_per_target = 500"),
            ("members = 5", "members = 3"),
            ("oracle_calls = 200", "oracle_calls = 120"),
        ]:
            assert old in text, old
            text = text.replace(old, new)
        config = tmp_path / "experiment.toml"
        config.write_text(text, encoding="utf-8")
        monkeypatch.setenv("INNLOOP_HTTP_TOKEN", token)
        out = campaign_flow(config=str(config), state_dir=str(tmp_path / "state"), use_ray=True, report=False)
        assert out["oracle_calls"] == lab_jobs(url, token)  # every call reached the lab once
    finally:
        stop_lab(proc)
    folder = tmp_path / "state" / "recipe-experiment"
    ledger = [json.loads(line) for line in (folder / "ledger.jsonl").open()]
    assert len(ledger) == out["oracle_calls"] >= 30
    designs = [rec["result"]["handle"]["design"] for rec in ledger]
    assert all(d["catalyst"] in ("Pd(PPh3)4", "Pd(dppf)Cl2", "XPhos-Pd-G3", "NiCl2(dppp)") for d in designs)
    assert all(isinstance(d["base_equiv"], int) and 1 <= d["base_equiv"] <= 5 for d in designs)
    assert all(d["loading"] + 8 * d["concentration"] <= 12 + 1e-9 for d in designs)  # the declared budget
    yields = [rec["result"]["values"]["yield"] for rec in ledger if rec["result"]["values"]]
    assert sum(y >= 0.9 for y in yields) >= 4, sorted(yields)[-8:]
