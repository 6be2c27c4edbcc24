"""The campaign as a Prefect 3 flow: one flow run per campaign, one task run per stage.

The science stays in `agent.campaign.loop.step`; this layer only makes each stage a Prefect task
(retries only for the stages that are safe to repeat), publishes artifacts after every
iteration (a markdown summary with the progress plot, under the keys
``<campaign>-progress`` and ``<campaign>-hits``), publishes the campaign report
(`agent.report`) at the end (``<campaign>-report``, markdown, and ``<campaign>-report-html``,
a link to the HTML file; a failing report is logged, never fails the run), and chooses
where sampling runs (Ray actors, or in process). ``innloop serve`` exposes it as a deployment.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_UI_URL

from agent.campaign.config import load_config
from agent.campaign.monitor import current as current_monitor
from agent.campaign.runner import make_campaign_oracle, run_campaign
from agent.campaign.state import FAILURE_STOP, CampaignState, hit_table
from agent.campaign.store import CampaignStore
from agent.core.errors import CampaignStopped
from agent.core.paths import default_state_dir
from flows.approval import PrefectGate
from flows.manual import published, tell_flow
from flows.report import progress_markdown, progress_png
from flows.samplers import make_sampler
from oracles import oracle_class, prepare_process
from oracles.manual import ManualOracle

__all__ = ["artifact_key", "campaign_flow", "serve"]

# pure stages: a retry repeats them without side effects
_RETRYABLE = {"sample": 1, "refine": 1, "choose": 1}


def artifact_key(campaign: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{campaign}-{what}".lower()).strip("-")


def _run_stage(name: str, fn: Any) -> Any:
    """A task per stage; results stay in memory (never pickled to Prefect's result storage)."""
    stage: Any = task(
        fn,
        name=name,
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=_RETRYABLE.get(name, 0),
        retry_delay_seconds=1,
    )
    return stage()


def _publish(state: CampaignState, store: CampaignStore) -> None:
    png = progress_png(state, store.root / "progress.png")
    create_markdown_artifact(
        progress_markdown(state, png),
        key=artifact_key(state.config.name, "progress"),
        description=f"{state.config.name}: iteration {state.iteration - 1}",
    )


def report_markdown(result: Any) -> str:
    """Markdown artifact: the switching summary, the five smallest pairs and the key figures."""
    from agent.report import switching_line  # the report's stack: only once a report was built

    s = result.summary
    line = switching_line(s, arrow="→")
    lines = [
        f"# {s['campaign']}: report",
        "",
        f"Report: `{result.html}` (figures and tables beside it).",
        "",
        line[:1].upper() + line[1:] + ".",
        "",
        "| rank | distance | change | confirmed |",
        "|---|---|---|---|",
    ]
    for _, row in result.switching.head(5).iterrows():
        c = row.get("confirmed")
        mark = "-" if c is None or c is pd.NA else ("yes" if c else "no")
        change = str(row["change"]).replace("|", "/")
        lines.append(f"| {int(row['rank'])} | {float(row['distance']):.3f} | {change} | {mark} |")
    for name, title in (("campaign_hits", "Hits against oracle calls"), ("switching_umap", "Switching candidates")):
        path = result.figures.get(name)
        if path is not None and Path(path).exists():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            lines += ["", f"## {title}", "", f"![{title}](data:image/png;base64,{data})"]
    return "\n".join(lines)


def publish_report(name: str, state_dir: str, logger: Any) -> Path | None:
    """Build the report and publish it as artifacts; log, never raise: the campaign's results stand."""
    try:
        from agent.report import build_report  # the report's stack (UMAP, matplotlib) only when it is wanted

        result = build_report(state_dir, name, log=logger.info)
        create_markdown_artifact(
            report_markdown(result), key=artifact_key(name, "report"), description=f"{name}: campaign report"
        )
        create_link_artifact(
            result.html.resolve().as_uri(),
            link_text=f"{name} report (HTML)",
            key=artifact_key(name, "report-html"),
            description="the self-contained HTML report, on the machine that ran the campaign",
        )
        return result.html
    except Exception as exc:
        logger.error(f"the report of {name} failed, the campaign's results are unaffected: {type(exc).__name__}: {exc}")
        return None


@flow(name="innloop-campaign", log_prints=True, persist_result=False)
def campaign_flow(
    config: str | None = None,
    state_dir: str | None = None,
    ray_address: str | None = None,
    use_ray: bool = True,
    report: bool = True,
    max_iterations: int | None = None,
    approval_poll_s: int = 10,
) -> dict[str, Any]:
    """Start or resume the campaign in ``config`` (TOML path; ``None``: the shipped default).

    With ``[approval] required`` each batch waits, the run Paused, for the Resume form in the
    Prefect UI (`flows.approval`), which it looks for every ``approval_poll_s`` seconds.

    With ``report`` the campaign's report (`agent.report`) is written at the end and
    published as artifacts; a report that fails is logged and never fails the run.
    ``max_iterations`` pauses the run after that many iterations (no report then).
    """
    cfg = load_config(config)
    prepare_process(cfg.oracle.name)  # before the sampler loads Ray
    text = Path(config).read_text() if config else None
    logger = get_run_logger()
    t0 = time.perf_counter()
    sampler = make_sampler(cfg.ray, ray_address, use_ray=use_ray)
    seconds = {"ray": time.perf_counter() - t0} if use_ray and cfg.ray.enabled else {}
    t0 = time.perf_counter()
    where = state_dir or default_state_dir()
    oracle = None
    if issubclass(oracle_class(cfg.oracle.name), ManualOracle):  # its sheet as an artifact too
        oracle = make_campaign_oracle(
            cfg, CampaignStore(where, cfg.name), published(artifact_key(cfg.name, "to-measure"))
        )
    gate = None
    if cfg.approval.required:
        gate = PrefectGate(CampaignStore(where, cfg.name), artifact_key(cfg.name, "approval"), approval_poll_s)
    try:
        run = run_campaign(
            cfg,
            where,
            source_text=text,
            sampler=sampler,
            log=logger.info,
            run_stage=_run_stage,
            on_iteration=_publish,
            max_iterations=max_iterations,
            gate=gate,
            link=run_link(),
            oracle=oracle,
        )
    finally:
        sampler.close()
    seconds["campaign"] = time.perf_counter() - t0
    hits = hit_table(run.state)
    lines = [f"# {cfg.name}: {run.reason}", "", f"{run.state.calls} oracle calls, {run.state.iteration} iterations", ""]
    for t, h in zip(cfg.targets, hits):
        lines.append(f"- target {t.range.label()}: {len(h)} diverse hits (wanted {t.hits})")
    create_markdown_artifact("\n".join(lines), key=artifact_key(cfg.name, "hits"), description="campaign outcome")
    if report and not run.paused:  # a paused run's campaign is not over: its report waits for the end
        current_monitor().stage(run.state, "report")
        t0 = time.perf_counter()
        publish_report(cfg.name, state_dir or str(default_state_dir()), logger)
        seconds["report"] = time.perf_counter() - t0
    if run.reason.startswith(FAILURE_STOP):
        raise CampaignStopped(f"{cfg.name}: {run.reason}")  # the flow run shows as Failed, with the report
    return {
        "campaign": cfg.name,
        "reason": run.reason,
        "iterations": run.state.iteration,
        "oracle_calls": run.state.calls,
        "hits": [len(h) for h in hits],
        "state": str(run.store.root),
        "seconds": seconds,
    }


def run_link() -> str | None:
    """This flow run's page in the Prefect UI (its id alone when no UI address is known)."""
    from prefect.runtime import flow_run  # the run's context, read where it is wanted

    run_id = flow_run.get_id()
    if run_id is None:
        return None
    ui = PREFECT_UI_URL.value()
    return f"{ui}/runs/flow-run/{run_id}" if ui else f"prefect flow run {run_id}"


def serve(name: str = "innloop-campaign", config: str | None = None, state_dir: str | None = None) -> None:
    """Expose `campaign_flow` as a deployment, and beside it `flows.manual.tell_flow` (a person's
    answers to a manual oracle's jobs, typed into its Run form); needs a Prefect server (README)."""
    from prefect import serve as serve_all  # Prefect's runner: only when serving

    params = {"config": str(Path(config).resolve()) if config else None, "state_dir": state_dir}
    runs: Any = campaign_flow.to_deployment(name=name, parameters=params)  # sync here: a deployment
    answers: Any = tell_flow.to_deployment(name=name, parameters={"state_dir": state_dir})
    serve_all(runs, answers)
