"""The campaign through a real Prefect API with real Ray sampler actors.

Two iterations (the random seed batch and one learned batch) run as one flow run with a
task run per stage; the per-iteration artifacts are read back through the Prefect client.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CONFIG = """
name = "flow-test"
seed = 1
[[targets]]
value = 0.5
hits = 30
[[targets]]
value = 1.0
hits = 30
[initial]
random = 16
[loop]
batch_size = 5
samples_per_target = 300
[budget]
iterations = 2
[models]
members = 3
surrogate_epochs = 40
surrogate_warm_epochs = 10
generator_epochs = 20
generator_warm_epochs = 5
[ray]
actors = 2
cpus_per_actor = 0.25
[retry]
poll_interval_s = 0.01
"""

STAGES = {"retrain", "sample", "refine", "choose", "measure", "update", "checkpoint"}


@pytest.mark.slow
def test_two_iterations_through_prefect_and_ray(prefect_api: None, local_ray: None, tmp_path: Path) -> None:
    import ray
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from flows.campaign import artifact_key, campaign_flow

    config = tmp_path / "flow.toml"
    config.write_text(CONFIG)
    final = campaign_flow(  # the report's artifacts: tests/flows/test_report_flow.py
        config=str(config), state_dir=str(tmp_path / "state"), use_ray=True, report=False, return_state=True
    )
    assert final.is_completed(), final
    out = final.result()
    assert out["iterations"] == 2 and out["oracle_calls"] == 16 + 5
    assert ray.is_initialized()  # joined the running Ray; its actors are gone again

    with get_client(sync_client=True) as client:
        run_id = final.state_details.flow_run_id
        assert run_id is not None
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        names = [t.name.rsplit("-", 1)[0] for t in tasks]
        assert set(names) >= STAGES
        assert all(names.count(s) == 2 for s in STAGES), sorted(names)
        assert all(t.state is not None and t.state.is_completed() for t in tasks)
        key = artifact_key("flow-test", "progress")
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        assert len(arts) == 2  # one version per iteration
        latest = max(arts, key=lambda a: a.created.timestamp() if a.created else 0.0)
        text = str(latest.data)
        assert "| oracle calls |" in text and "| 21 |" in text
        assert "data:image/png;base64," in text
        assert "| 0.5 | ±0.1 |" in text and "| 1 | ±0.1 |" in text
        hits = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key("flow-test", "hits")]))
        )
        assert len(hits) == 1 and "iteration budget reached" in str(hits[0].data)
    png = tmp_path / "state" / "flow-test" / "progress.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_ray_actors_sample_what_the_local_sampler_samples(local_ray: None) -> None:
    import os

    import ray
    import torch

    from agent.design.sampling import LocalSampler
    from flows.ray_sampler import RaySampler
    from generators import make_generator
    from generators.base import TrainConfig

    rng = np.random.default_rng(0)
    U = rng.random((200, 3))
    y = U.sum(1)
    gen = make_generator("cinn", 3)
    gen.fit(torch.tensor(U, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), config=TrainConfig(epochs=5))
    jobs = [(1.0, 50, 7), (1.5, 40, 8), (9.0, 10, 1)]  # the last target is outside what it learned
    before = ray.available_resources().get("CPU", 0.0)
    sampler = RaySampler(actors=2, cpus_per_actor=0.25)
    try:
        pids = sampler.pids()  # both actors are placed once they answered
        assert os.getpid() not in pids and len(set(pids)) == 2
        assert ray.available_resources().get("CPU", 0.0) == pytest.approx(before - 0.5)
        remote = sampler.sample(gen, jobs)
        again = sampler.sample(gen, jobs)  # weights cached in the actors: same answers
    finally:
        sampler.close()
    local = LocalSampler().sample(gen, jobs)
    assert [r.shape for r in remote] == [(50, 3), (40, 3), (0, 3)]
    for a, b, c in zip(remote, local, again):
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(a, c, atol=0)


@pytest.mark.slow
def test_stuck_actors_are_replaced_before_the_second_try(local_ray: None) -> None:
    import ray
    import torch

    from agent.design.sampling import LocalSampler
    from flows.ray_sampler import RaySampler
    from generators import make_generator
    from generators.base import TrainConfig

    rng = np.random.default_rng(1)
    U = rng.random((100, 3))
    gen = make_generator("cinn", 3)
    gen.fit(
        torch.tensor(U, dtype=torch.float32), torch.tensor(U.sum(1), dtype=torch.float32), config=TrainConfig(epochs=2)
    )
    jobs = [(1.0, 30, 7), (1.5, 20, 8)]
    sampler = RaySampler(actors=2, cpus_per_actor=0.25)
    try:
        sampler.sample(gen, jobs)  # the weights are in both actors
        stuck = sampler.pids()
        busy = [a.sample.remote((1.0, 3_000_000, 1)) for a in sampler.actors]  # about 100 s each: stuck
        sampler.timeout_s = 15.0  # long enough for fresh actors to start and answer on a busy machine
        remote = sampler.sample(gen, jobs)
        fresh = sampler.pids()
        del busy
    finally:
        sampler.close()
    assert (sampler.recoveries, sampler.fallbacks) == (1, 0), "the second try ran on fresh actors"
    assert not set(stuck) & set(fresh)
    for a, b in zip(remote, LocalSampler().sample(gen, jobs)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert ray.is_initialized()


FAILING = """
name = "flow-failing"
seed = 2
[[targets]]
value = 1.0
hits = 20
[oracle.settings]
failure_rate = 0.9
[initial]
random = 12
[loop]
batch_size = 4
samples_per_target = 200
[budget]
oracle_calls = 200
[models]
members = 2
surrogate_epochs = 20
surrogate_warm_epochs = 5
generator_epochs = 10
generator_warm_epochs = 5
[retry]
max_attempts = 2
backoff_s = 0.0
poll_interval_s = 0.01
max_failure_rate = 0.6
failure_window = 10
"""


@pytest.mark.slow
def test_a_campaign_stopped_by_oracle_failures_is_a_failed_flow_run(prefect_api: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from agent.core.errors import CampaignStopped
    from flows.campaign import artifact_key, campaign_flow

    config = tmp_path / "failing.toml"
    config.write_text(FAILING)
    final = campaign_flow(config=str(config), state_dir=str(tmp_path / "state"), use_ray=False, return_state=True)
    assert final.is_failed(), final
    with pytest.raises(CampaignStopped, match=r"oracle failure rate .* above the limit 60%"):
        final.result()
    with get_client(sync_client=True) as client:
        key = artifact_key("flow-failing", "hits")
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        assert len(arts) == 1 and "stopped: oracle failure rate" in str(arts[0].data)
