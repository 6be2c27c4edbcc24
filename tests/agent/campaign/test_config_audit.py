"""Every key of a campaign file is read: each maps to the test that fails when it is ignored.

The schema (`agent.campaign.config`) refuses unknown keys, so a key it accepts must also be
read somewhere. `AUDIT` names, per key, the tests that show it (most in
`test_config_keys.py`); `test_every_key_is_audited` fails when the schema gains a key nobody
has shown to matter, or when a named test no longer exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from agent.campaign.config import CampaignConfig

ROOT = Path(__file__).resolve().parents[3]
KEYS = "tests/agent/campaign/test_config_keys.py"
STATE = "tests/agent/campaign/test_state.py"
COLLECT = "tests/agent/campaign/test_collect.py"
REFILL = "tests/agent/campaign/test_refill.py"
FAILURE_RATE = f"{STATE}::test_failure_rate_stops_only_over_a_full_window_above_the_limit"
SPACE = "tests/agent/campaign/test_space_campaign.py"
DECLARES = f"{SPACE}::test_the_space_section_declares_the_material"
SYMMETRIES = f"{SPACE}::test_declared_symmetries_reach_the_acquisition_gp"
RANGES = f"{SPACE}::test_range_targets_count_hits_in_the_range"
FAMILIES = "tests/agent/campaign/test_families_config.py"
LIMITED = "tests/agent/campaign/test_constraints_campaign.py"
TRANSFER = "tests/agent/campaign/test_transfer.py"
APPROVAL = "tests/agent/campaign/test_approval.py"
# key -> the test proving it is read ("file::test", more than one when a rule is tested apart)
AUDIT: dict[str, str] = {
    "name": f"{KEYS}::test_name_is_the_campaign_folder",
    "material": f"{KEYS}::test_material_gives_the_space_and_property",
    "seed": f"{KEYS}::test_seed_decides_the_random_batch",
    "targets.value": f"{KEYS}::test_targets_decide_the_hits",
    "targets.window": f"{KEYS}::test_targets_decide_the_hits",
    "targets.hits": f"{KEYS}::test_targets_decide_the_hits",
    "targets.low": RANGES,
    "targets.high": RANGES,
    "targets.families": f"{FAMILIES}::test_enough_hits_in_too_few_families_keeps_the_campaign_going"
    f" (hits from families: {FAMILIES}::test_families_without_hits_asks_one_hit_per_family)",
    # [[constraints]]: limits on other measured values a hit must meet
    "constraints.property": f"{LIMITED}::test_no_infeasible_measurement_is_ever_a_hit",
    "constraints.max": f"{LIMITED}::test_no_infeasible_measurement_is_ever_a_hit",
    "constraints.min": "tests/agent/campaign/test_constraints.py::test_min_and_max_both_bound_a_hit",
    # [transfer]: prior knowledge from another material
    "transfer.source": f"{TRANSFER}::test_a_dataset_source_is_the_bundled_data_in_the_shared_unit_box",
    "transfer.ledger": f"{TRANSFER}::test_a_ledger_source_informs_a_campaign_that_resumes_identically",
    **{
        f"space.{key}": DECLARES
        for key in (
            "name",
            "property.name",
            "property.unit",
            "property.floor",
            "property.ceiling",
            "parameters.name",
            "parameters.type",
            "parameters.lower",
            "parameters.upper",
            "parameters.unit",
            "parameters.log",
            "parameters.values",
            "constraints.name",
            "constraints.coefficients",
            "constraints.bound",
        )
    },
    "space.symmetries.name": SYMMETRIES,
    "space.symmetries.swap": SYMMETRIES,
    "space.symmetries.mirror": SYMMETRIES,
    "oracle.name": f"{KEYS}::test_oracle_name_and_settings_make_the_oracle",
    "oracle.settings": f"{KEYS}::test_oracle_name_and_settings_make_the_oracle",
    "initial.random": f"{KEYS}::test_initial_random_is_the_first_batch_size",
    "initial.data": f"{KEYS}::test_initial_data_is_learned_from",
    "initial.designs": f"{KEYS}::test_initial_designs_are_measured_first",
    "loop.batch_size": f"{KEYS}::test_loop_batch_size",
    "loop.exploration": f"{KEYS}::test_loop_exploration_share",
    "loop.min_distance": f"{KEYS}::test_loop_min_distance_spaces_the_batch",
    "loop.samples_per_target": f"{KEYS}::test_loop_samples_per_target",
    "loop.mode": f"{REFILL}::test_async_keeps_jobs_in_flight_between_refills_within_the_cap",
    "loop.max_in_flight": f"{REFILL}::test_async_keeps_jobs_in_flight_between_refills_within_the_cap"
    f" (batch mode: {REFILL}::test_max_in_flight_caps_a_batch_too)",
    "loop.refill": f"{REFILL}::test_a_refill_waits_for_its_results_and_scores_their_forecasts",
    "loop.max_sigma": "tests/agent/campaign/test_loop_max_sigma.py"
    "::test_the_cap_changes_the_batch_and_every_hit_is_under_it",
    "budget.oracle_calls": f"{KEYS}::test_budget_oracle_calls_caps_the_batch"
    f" (stop rule: {STATE}::test_oracle_call_budget)",
    "budget.iterations": f"{STATE}::test_iteration_budget",
    "budget.wall_time_s": f"{KEYS}::test_budget_wall_time_stops_a_run_waiting_on_the_oracle"
    f" (stop rule: {STATE}::test_wall_time_budget)",
    "models.generator": f"{KEYS}::test_models_generator_kind",
    "models.members": f"{KEYS}::test_models_members",
    "models.surrogate_epochs": f"{KEYS}::test_models_epochs_cold_and_warm",
    "models.surrogate_warm_epochs": f"{KEYS}::test_models_epochs_cold_and_warm",
    "models.generator_epochs": f"{KEYS}::test_models_epochs_cold_and_warm",
    "models.generator_warm_epochs": f"{KEYS}::test_models_epochs_cold_and_warm",
    "models.acquisition": f"{KEYS}::test_models_acquisition_model",
    "models.gp_max_points": f"{KEYS}::test_models_gp_max_points",
    "ray.address": f"{KEYS}::test_ray_settings_make_the_sampler",
    "ray.actors": f"{KEYS}::test_ray_settings_make_the_sampler",
    "ray.cpus_per_actor": f"{KEYS}::test_ray_settings_make_the_sampler",
    "ray.enabled": f"{KEYS}::test_ray_settings_make_the_sampler",
    # the loop hands `config.retry` to collect() (test_config_keys.py::test_retry_section_reaches_collect); each
    # field's effect is tested on collect() itself
    "retry.max_attempts": f"{COLLECT}::test_max_attempts_caps_resubmission",
    "retry.backoff_s": f"{COLLECT}::test_backoff_between_attempts",
    "retry.poll_interval_s": f"{KEYS}::test_retry_poll_interval_between_polls"
    f" (backoff floor: {COLLECT}::test_oracle_errors_are_waited_out_and_nothing_is_lost)",
    "retry.job_timeout_s": f"{COLLECT}::test_job_timeout_cancels_and_records_timeout",
    "retry.max_backoff_s": f"{COLLECT}::test_max_backoff_caps_resubmission_waits",
    "retry.outage_s": f"{COLLECT}::test_outage_limit_raises_oracle_unavailable_with_jobs_kept",
    "retry.max_failure_rate": FAILURE_RATE,
    "retry.failure_window": FAILURE_RATE,
    # [approval] and [notify]: people in the loop
    "approval.required": f"{APPROVAL}::test_innloop_approve_drops_a_design_before_anything_is_sent",
    "approval.timeout_s": f"{APPROVAL}::test_a_stopped_run_asks_the_same_question_and_times_out",
    "approval.on_timeout": f"{APPROVAL}::test_a_stopped_run_asks_the_same_question_and_times_out"
    f" (approve: {APPROVAL}::test_on_timeout_approve_and_the_notify_settings)",
    "notify.url": f"{APPROVAL}::test_on_timeout_approve_and_the_notify_settings",
    "notify.url_file": f"{APPROVAL}::test_a_stopped_run_asks_the_same_question_and_times_out",
    "notify.url_env": f"{APPROVAL}::test_dropped_designs_are_never_proposed_again",
    "notify.events": f"{APPROVAL}::test_on_timeout_approve_and_the_notify_settings",
    "notify.timeout_s": f"{APPROVAL}::test_on_timeout_approve_and_the_notify_settings",
}


def _schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        inner = getattr(kind, "__args__", (kind,))  # list[TargetSpec] -> TargetSpec
        spec = next((k for k in inner if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if spec is not None:
            keys += _schema_keys(spec, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_key_is_audited() -> None:
    assert sorted(_schema_keys(CampaignConfig)) == sorted(AUDIT)
    for key, proof in AUDIT.items():
        refs = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", proof)
        assert refs, f"{key}: {proof!r} names no test"
        for path, name in refs:
            text = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", text, flags=re.M), f"{key}: no test {name} in {path}"
