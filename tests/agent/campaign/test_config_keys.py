"""Every key of a campaign file changes what a campaign does.

The schema (`agent.campaign.config`) refuses unknown keys, so a key it accepts must also be read
somewhere. Most of the tests that show it are here (tiny campaigns on the mock oracle,
`LocalSampler`, a few epochs); `test_config_audit.py` maps every key to its test.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from agent.campaign.config import CampaignConfig, RaySpec, config_from_dict
from agent.campaign.loop import Context, gather, step
from agent.campaign.plan import PlanInputs, choose, refine, retrain, sample, with_acquisition_model
from agent.campaign.runner import make_campaign_oracle, open_campaign, run_campaign
from agent.campaign.state import CampaignState, missing_hits, observed
from agent.campaign.store import CampaignStore
from agent.core.materials import base as materials_base
from agent.core.materials import get_material, load_dataset
from agent.design.trained import TrainedModels
from oracles.mock import MockOracle
from oracles.table import TableOracle

BASE: dict[str, Any] = {
    "name": "keys",
    "seed": 2,
    "targets": [{"value": 0.5, "window": 0.1, "hits": 20}, {"value": 1.0, "window": 0.1, "hits": 20}],
    "initial": {"random": 16},
    "loop": {"batch_size": 6, "exploration": 0.0, "samples_per_target": 60},
    "budget": {"oracle_calls": 500},
    "models": {
        "members": 2,
        "surrogate_epochs": 40,
        "surrogate_warm_epochs": 2,
        "generator_epochs": 3,
        "generator_warm_epochs": 1,
        "acquisition": "ensemble",
    },
    "ray": {"enabled": False},
    "retry": {"poll_interval_s": 0.001, "backoff_s": 0.0},
}


def _merge(into: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def config(**update: Any) -> CampaignConfig:
    """BASE with sections (or top-level keys) updated; nested dicts merge."""
    return config_from_dict(_merge(copy.deepcopy(BASE), update))


def _mock(folder: Path, **kw: Any) -> MockOracle:
    settings: dict[str, Any] = {"latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0, "seed": 0}
    return MockOracle(workdir=folder / "oracle", **(settings | kw))


def _fresh(cfg: CampaignConfig, folder: Path) -> tuple[CampaignState, Context]:
    store, state = open_campaign(cfg, folder / "state")
    return state, Context(oracle=_mock(folder), store=store)


def _first_batch(cfg: CampaignConfig, folder: Path) -> np.ndarray:
    state, ctx = _fresh(cfg, folder)
    given = gather(state, ctx)  # the loop's own reading of what planning needs (initial designs included)
    cands = refine(state, None, sample(state, None, given), given)
    return choose(state, None, cands, given)[0].physical(state)


def _with(state: CampaignState, **update: Any) -> CampaignState:
    """The same state under a config with sections updated."""
    data = _merge(state.config.to_dict(), update)
    return dataclasses.replace(state, config=config_from_dict(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[CampaignState, TrainedModels, Context]:
    """After the seed iteration: the state, the next iteration's models and the context."""
    torch.set_num_threads(1)  # as a campaign runs; module fixtures run before conftest's autouse one
    state, ctx = _fresh(config(), tmp_path_factory.mktemp("keys"))
    state, _ = step(state, ctx, None)
    models = retrain(state, gather(state, ctx))
    assert models is not None
    return state, models, ctx


def _batch(trained: tuple[CampaignState, TrainedModels, Context], **update: Any) -> Any:
    state, models, ctx = trained
    state = _with(state, **update)
    given = gather(state, ctx)
    cands = refine(state, models, sample(state, models, given), given)
    return choose(state, models, cands, given)[0]


# -- top level ---------------------------------------------------------------------------
def test_name_is_the_campaign_folder(tmp_path: Path) -> None:
    store, _ = open_campaign(config(name="other-name"), tmp_path)
    assert store.root == tmp_path / "other-name" and (store.root / "config.json").is_file()


def test_material_gives_the_space_and_property(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mos2 = get_material("mos2")  # first: registers the built-in materials for good
    monkeypatch.setattr(materials_base, "_REGISTRY", dict(materials_base._REGISTRY))
    toy = dataclasses.replace(mos2, name="toy_keys", target="band_gap", dataset=None)
    materials_base.register_material(toy)
    _, state = open_campaign(config(material="toy_keys"), tmp_path)
    assert state.target_name == "band_gap" and state.space is toy.space
    _, state = open_campaign(config(name="keys2"), tmp_path)
    assert state.target_name == "gap"


def test_seed_decides_the_random_batch(tmp_path: Path) -> None:
    a = _first_batch(config(seed=5), tmp_path / "a")
    again = _first_batch(config(seed=5), tmp_path / "b")
    other = _first_batch(config(seed=6), tmp_path / "c")
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other)


def test_targets_decide_the_hits(tmp_path: Path) -> None:
    from agent.campaign.ledger import LedgerRecord
    from oracles.base import Handle, JobStatus, Result

    space = get_material("mos2").space
    gaps = [0.50, 0.56, 1.0]
    records = []
    for seq, (u, gap) in enumerate(zip([0.1, 0.5, 0.9], gaps)):
        design = dict(zip(space.names, map(float, space.from_unit(np.full((1, space.dim), u))[0])))
        result = Result(Handle("mock", f"j{seq}", design, submitted_at=1.0), JobStatus.COMPLETED, values={"gap": gap})
        records.append(LedgerRecord(seq, 0, 1.0, result, "t"))

    def missing(**target: Any) -> list[int]:
        cfg = config(targets=[{"value": 0.5, "window": 0.1, "hits": 3} | target])
        return missing_hits(CampaignState(cfg, space, "gap", records=tuple(records)))

    assert missing() == [1]  # 0.50 and 0.56 are hits of 0.5 ± 0.1
    assert missing(value=1.0) == [2]
    assert missing(window=0.05) == [2]
    assert missing(hits=2) == [0]


def test_oracle_name_and_settings_make_the_oracle(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path, "keys")
    mock = make_campaign_oracle(config(oracle={"name": "mock", "settings": {"latency_s": 0.25}}), store)
    assert isinstance(mock, MockOracle) and mock.latency_s == 0.25
    assert make_campaign_oracle(config(), store).latency_s == 0.0  # type: ignore[attr-defined]
    table = make_campaign_oracle(config(oracle={"name": "table", "settings": {"tolerance": 0.01}}), store)
    assert isinstance(table, TableOracle) and table.tolerance == 0.01


# -- initial -----------------------------------------------------------------------------
@pytest.mark.parametrize("random", [5, 11])
def test_initial_random_is_the_first_batch_size(tmp_path: Path, random: int) -> None:
    assert len(_first_batch(config(initial={"random": random}), tmp_path)) == random


def test_initial_data_is_learned_from(tmp_path: Path) -> None:
    data = load_dataset("mos2")
    frame = data.space.to_frame(data.X[:5])
    frame["gap"] = data.y[:5]
    frame.to_csv(tmp_path / "prior.csv", index=False)
    _, state = open_campaign(config(initial={"data": str(tmp_path / "prior.csv")}), tmp_path / "with")
    _, y = observed(state)
    np.testing.assert_allclose(y, data.y[:5])
    assert len(observed(open_campaign(config(), tmp_path / "without")[1])[1]) == 0


def test_initial_designs_are_measured_first(tmp_path: Path) -> None:
    data = load_dataset("mos2")
    data.space.to_frame(data.X[:3]).to_csv(tmp_path / "designs.csv", index=False)
    X = _first_batch(config(initial={"designs": str(tmp_path / "designs.csv"), "random": 4}), tmp_path)
    assert len(X) == 3 + 4
    np.testing.assert_allclose(X[:3], data.X[:3])


# -- loop --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [3, 7])
def test_loop_batch_size(trained: tuple[CampaignState, TrainedModels, Context], size: int) -> None:
    assert len(_batch(trained, loop={"batch_size": size}).U) == size


def test_loop_exploration_share(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    assert _batch(trained, loop={"exploration": 0.0}).reason.count("explore") == 0
    assert _batch(trained, loop={"exploration": 0.5}).reason.count("explore") == 3


def _min_pairwise(U: np.ndarray) -> float:
    d = np.linalg.norm(U[:, None] - U[None], axis=-1)
    return float(d[np.triu_indices(len(U), 1)].min())


def test_loop_min_distance_spaces_the_batch(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    close = _batch(trained, loop={"min_distance": 0.0})
    spaced = _batch(trained, loop={"min_distance": 0.9})
    assert _min_pairwise(close.U) < 0.9 <= _min_pairwise(spaced.U)


@pytest.mark.parametrize("n", [13, 40])
def test_loop_samples_per_target(trained: tuple[CampaignState, TrainedModels, Context], n: int) -> None:
    state, models, ctx = trained
    state = _with(state, loop={"samples_per_target": n})
    given = gather(state, ctx)
    samples = sample(state, models, given)
    assert [len(s) for s in samples if len(s)] and all(len(s) in (0, n) for s in samples)
    cands = refine(state, models, samples, given)
    assert cands.counts["candidates"] + cands.counts["invalid"] == sum(len(s) for s in samples) + n  # + n uniform


# -- budget ------------------------------------------------------------------------------
def test_budget_oracle_calls_caps_the_batch(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    state = trained[0]
    assert len(_batch(trained, budget={"oracle_calls": state.calls + 2}).U) == 2


def test_budget_wall_time_stops_a_run_waiting_on_the_oracle(tmp_path: Path) -> None:
    cfg = config(initial={"random": 3}, budget={"oracle_calls": None, "wall_time_s": 0.3})
    t0 = time.perf_counter()
    run = run_campaign(cfg, tmp_path / "state", oracle=_mock(tmp_path, latency_s=30.0))
    assert run.reason.startswith("wall-time budget reached; 3 jobs still at the oracle"), run.reason
    assert time.perf_counter() - t0 < 15


# -- models ------------------------------------------------------------------------------
def test_models_generator_kind(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    state, models, ctx = trained
    assert models.generator is not None and models.generator.name == "cinn"
    other = retrain(_with(state, models={"generator": "mdn"}), gather(state, ctx))
    assert other is not None and other.generator is not None and other.generator.name == "mdn"


@pytest.mark.parametrize("members", [2, 3])
def test_models_members(trained: tuple[CampaignState, TrainedModels, Context], members: int) -> None:
    state, _, ctx = trained
    models = retrain(_with(state, models={"members": members}), gather(state, ctx))
    assert models is not None
    assert models.surrogate.signed(torch.rand(4, state.space.dim)).shape == (members, 4)


def test_models_epochs_cold_and_warm(
    trained: tuple[CampaignState, TrainedModels, Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.campaign.plan
    from agent.models.surrogate import SurrogateEnsemble

    state = trained[0]
    ran: dict[str, list[int]] = {"surrogate": [], "generator": []}
    fit_surrogate = SurrogateEnsemble.fit

    def spy_surrogate(self: SurrogateEnsemble, *a: Any, **kw: Any) -> Any:
        summary = fit_surrogate(self, *a, **kw)
        ran["surrogate"].append(summary.epochs)
        return summary

    make = agent.campaign.plan.make_generator

    def spy_make(*a: Any, **kw: Any) -> Any:
        gen = make(*a, **kw)
        fit = gen.fit

        def spy_fit(*fa: Any, **fkw: Any) -> Any:
            report = fit(*fa, **fkw)
            ran["generator"].append(report.epochs)
            return report

        gen.fit = spy_fit  # type: ignore[method-assign]
        return gen

    monkeypatch.setattr(SurrogateEnsemble, "fit", spy_surrogate)
    monkeypatch.setattr(agent.campaign.plan, "make_generator", spy_make)
    epochs = {"surrogate_epochs": 3, "surrogate_warm_epochs": 2, "generator_epochs": 4, "generator_warm_epochs": 1}
    state = _with(state, models=epochs)
    cold = retrain(state, PlanInputs())
    retrain(state, PlanInputs(previous=cold))  # warm start from the cold models
    assert ran == {"surrogate": [3, 2], "generator": [4, 1]}


def test_models_acquisition_model(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    state, models, _ = trained
    assert models.acquisition is None and models.scorer is models.surrogate  # "ensemble"
    gp = with_acquisition_model(_with(state, models={"acquisition": "gp"}), TrainedModels(models.surrogate, None))
    assert gp is not None and gp.acquisition is not None and gp.scorer is gp.acquisition


def test_models_gp_max_points(trained: tuple[CampaignState, TrainedModels, Context]) -> None:
    state, models, _ = trained
    n = len(observed(state)[1])

    def rows(cap: int) -> int:
        gp = with_acquisition_model(
            _with(state, models={"acquisition": "gp", "gp_max_points": cap}), TrainedModels(models.surrogate, None)
        )
        assert gp is not None and gp.acquisition is not None
        return int(gp.acquisition.train_inputs[0].shape[-2])  # type: ignore[index]

    assert n > 10 and rows(10) <= 10 and rows(500) == n


# -- ray ---------------------------------------------------------------------------------
class _RecordingSampler:
    made: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, *args: Any) -> None:
        _RecordingSampler.made.append(args)

    def close(self) -> None:
        pass


def test_ray_settings_make_the_sampler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.campaign.runner
    import flows.ray_sampler
    from agent.cli.main import main
    from agent.design.sampling import LocalSampler
    from flows.samplers import make_sampler

    monkeypatch.setattr(flows.ray_sampler, "RaySampler", _RecordingSampler)
    _RecordingSampler.made.clear()
    ray: dict[str, Any] = {"address": "ray://head:10001", "actors": 3, "cpus_per_actor": 0.5}
    # the Prefect flow's sampler
    assert isinstance(make_sampler(RaySpec(enabled=False, **ray), None, use_ray=True), LocalSampler)
    assert isinstance(make_sampler(RaySpec(**ray), None, use_ray=True), _RecordingSampler)
    assert _RecordingSampler.made == [("ray://head:10001", 3, 0.5)]
    # `innloop run --no-prefect`
    seen: list[Any] = []

    class Stop(Exception):
        pass

    def fake_run(_cfg: Any, _state_dir: Any, *, sampler: Any, **_kw: Any) -> Any:
        seen.append(sampler)
        raise Stop

    monkeypatch.setattr(agent.campaign.runner, "run_campaign", fake_run)
    for enabled in (True, False):
        path = tmp_path / f"ray-{enabled}.toml"
        text = 'name = "r"\n[[targets]]\nvalue = 1.0\n[ray]\n'
        text += f'enabled = {str(enabled).lower()}\naddress = "ray://head:10001"\nactors = 3\ncpus_per_actor = 0.5\n'
        path.write_text(text)
        with pytest.raises(Stop):
            main(["run", str(path), "--no-prefect", "--state", str(tmp_path / "s")])
    assert isinstance(seen[0], _RecordingSampler) and isinstance(seen[1], LocalSampler)
    assert _RecordingSampler.made[-1] == ("ray://head:10001", 3, 0.5)


# -- retry -------------------------------------------------------------------------------
def test_retry_section_reaches_collect(
    trained: tuple[CampaignState, TrainedModels, Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.campaign.loop
    from agent.campaign.collect import Job

    state, _, ctx = trained
    state = _with(state, retry={"max_attempts": 7, "job_timeout_s": 12.5, "outage_s": 99.0})
    got: list[Any] = []

    def fake_collect(_oracle: Any, _store: Any, _jobs: Any, _it: int, retry: Any, **_kw: Any) -> Any:
        got.append(retry)
        return [], []

    monkeypatch.setattr(agent.campaign.loop, "collect", fake_collect)
    agent.campaign.loop.measure(state, [Job({"a": 1.0}, "t")], ctx)
    assert got == [state.config.retry]


def test_retry_poll_interval_between_polls(tmp_path: Path) -> None:
    from agent.campaign.collect import Job, collect
    from agent.campaign.config import RetrySpec

    store = CampaignStore(tmp_path / "state", "c")
    store.create({}, "fp", "")
    data = load_dataset("mos2")
    design = dict(zip(data.space.names, map(float, data.X[0])))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.05)

    oracle = _mock(tmp_path, latency_s=0.12)
    new, _ = collect(oracle, store, [Job(design, "t")], 0, RetrySpec(poll_interval_s=0.037), sleep=sleep)
    assert len(new) == 1 and waits and set(waits) == {0.037}
