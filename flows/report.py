"""What a person following a campaign sees: a markdown summary and a progress plot per iteration.

Targets are ranges (``value ± window`` or ``low..high``) and designs hold real values
(category names, integers), so labels come from the range and the property's unit, and
design cells are written as they are, never as a relaxation.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from agent.campaign.state import CampaignState, diverse_hits, feasible_rows, hit_table, ledger_arrays
from agent.core.atomic import write_bytes

__all__ = ["hits_curve", "progress_markdown", "progress_png"]


def hits_curve(state: CampaignState) -> tuple[np.ndarray, list[np.ndarray]]:
    """Results ``(n,)`` (oracle calls, and measurements told from outside) and, per target,
    diverse hits found by then ``(n,)``."""
    U, y = ledger_arrays(state)
    calls = np.arange(1, len(y) + 1)
    ok = feasible_rows(state)  # a hit also meets the campaign's [[constraints]]
    curves = []
    for t in state.config.targets:
        hits = diverse_hits(U, y, t.range, state.config.loop.min_distance, ok)  # ascending ledger rows
        curves.append(np.searchsorted(hits, np.arange(len(calls)), side="right").astype(float))
    return calls, curves


def progress_png(state: CampaignState, path: Path) -> Path:
    """Diverse hits per target against oracle calls, written to ``path`` (PNG)."""
    import matplotlib  # matplotlib (a second) only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    calls, curves = hits_curve(state)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for t, c in zip(state.config.targets, curves):
        ax.step(calls, c, where="post", label=t.range.label())
        ax.axhline(t.hits, ls=":", lw=0.8, color="grey")
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("diverse hits")
    ax.set_title(f"{state.config.name}: iteration {state.iteration - 1}")
    ax.legend(title="target", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)

    return write_bytes(path, buf.getvalue())


def progress_markdown(state: CampaignState, png: Path | None = None) -> str:
    """Markdown: oracle calls, hits per target, surrogate error on the new batch, best candidates."""
    m = state.history[-1] if state.history else {}
    unit = state.config.design_material().target_unit
    mae = f"batch MAE ({unit})" if unit else "batch MAE"
    lines = [
        f"# {state.config.name} — iteration {m.get('iteration', '-')}",
        "",
        f"| oracle calls | results completed | {mae} | batch ±2σ coverage | failures |",
        "|---|---|---|---|---|",
        f"| {state.calls} | {m.get('completed', '-')} | {_num(m.get('batch_mae'))} | "
        f"{_num(m.get('batch_coverage_2sigma'))} | {m.get('failures') or 'none'} |",
        "",
        "| target | window | hits | wanted | new this iteration |",
        "|---|---|---|---|---|",
    ]
    new = m.get("new_hits") or [0] * len(state.config.targets)
    hits = hit_table(state)
    for t, h, k in zip(state.config.targets, hits, new):
        value, window = (f"{t.value:g}", f"±{t.window:g}") if t.value is not None else (t.range.label(), "-")
        lines.append(f"| {value} | {window} | {len(h)} | {t.hits} | {k} |")
    names = state.space.names
    lines += ["", "## Best hits", ""]
    if not any(hits):
        lines.append("None yet.")
    else:
        lines += ["Up to three per target, closest to it first.", ""]
        limited = [c.property for c in state.config.constraints]  # each hit's constrained values
        head = "| target | " + " | ".join(names) + f" | {state.target_name} |"
        lines.append(head + "".join(f" {n} |" for n in limited))
        lines.append("|---" * (len(names) + 2 + len(limited)) + "|")
    for t, h in zip(state.config.targets, hits):
        rng, label = t.range, t.range.label() if t.value is None else f"{t.value:g}"
        for row in sorted(h, key=lambda r: float(rng.distance(np.array(r[state.target_name]))))[:3]:
            vals = " | ".join(_cell(row[n]) for n in names)
            extra = "".join(f" {row[c.property]:.4g} |" for c in state.config.constraints)
            lines.append(f"| {label} | {vals} | {row[state.target_name]:.3f} |{extra}")
    if png is not None and png.exists():
        data = base64.b64encode(png.read_bytes()).decode()
        lines += [
            "",
            "## Progress",
            "",
            f"![diverse hits against oracle calls](data:image/png;base64,{data})",
            "",
            f"File: `{png}`",
        ]
    return "\n".join(lines)


def _cell(v: object) -> str:
    """A design value as written: a number to 4 digits, a category by its name."""
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _num(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-"
