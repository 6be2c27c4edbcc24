"""Drawing: each report figure from its table, as PNG bytes of a fixed pixel size.

Figures are drawn with matplotlib's Agg backend at 100 dpi and saved without tight
bounding boxes, so every PNG has exactly the size listed in `SIZES` (tests check it).
An empty table still gives a figure, saying what is missing, so a report never has a
hole where a picture should be. Tables name targets by their ``target`` column (a value,
or a range's label); ``labels`` maps those to what a legend shows (with the unit).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SIZES", "draw"]

DPI = 100
SIZES: dict[str, tuple[int, int]] = {
    "data_distribution": (640, 400),
    "data_umap": (640, 480),
    "diversity": (960, 420),
    "design_rules": (960, 640),
    "switching_umap": (640, 480),
    "campaign_hits": (640, 400),
    "campaign_error": (640, 400),
    "campaign_calibration": (480, 480),
    "campaign_failures": (640, 400),
    "campaign_stages": (640, 400),
}
"""Figure name -> (width, height) in pixels."""

_SETS = {
    "data": ("#b0b0b0", "o", 6, 1.0),
    "candidates": ("tab:blue", "o", 7, 0.5),
    "campaign hit": ("tab:red", "x", 28, 1.0),
}


_FAMILY_HIT: dict[str, Any] = {"s": 36, "marker": "o", "edgecolors": "black", "linewidths": 0.8, "zorder": 3}
"""How a hit coloured by its family is drawn: a filled, outlined disc that stands out over the candidates."""


def _figure(name: str, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    import matplotlib  # matplotlib (a second to import) only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    w, h = SIZES[name]
    return plt.subplots(rows, cols, figsize=(w / DPI, h / DPI), dpi=DPI, squeeze=False)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt  # loaded by `_figure` already; kept out of the module's import

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _empty(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _targets(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def _label(key: Any, labels: Mapping[Any, str] | None) -> str:
    """What a legend calls the target ``key`` of a table's ``target`` column."""
    if labels and key in labels:
        return labels[key]
    return f"{key:g}" if isinstance(key, (int, float)) else str(key)


def data_distribution(t: pd.DataFrame, target_name: str, unit: str) -> bytes:
    fig, ax = _figure("data_distribution")
    a = ax[0, 0]
    width = (t["bin_hi"] - t["bin_lo"]).to_numpy()
    for col, label, color in (("data_count", "bundled data", "tab:grey"), ("campaign_count", "campaign", "tab:blue")):
        total = t[col].sum()
        if total:
            a.bar(
                t["bin_lo"], t[col] / (total * width), width=width, align="edge", alpha=0.55, color=color, label=label
            )
    a.set_xlabel(f"{target_name} ({unit})" if unit else target_name)
    a.set_ylabel("density")
    if t[["data_count", "campaign_count"]].to_numpy().sum():
        a.legend(fontsize=8)
    return _png(fig)


def umap_map(
    name: str, t: pd.DataFrame, title: str, colour: str | None = None, pairs: pd.DataFrame | None = None
) -> bytes:
    """Scatter of ``u1, u2``: coloured by ``colour`` (data map) or by ``set`` (switching map)."""
    fig, ax = _figure(name)
    a = ax[0, 0]
    if not len(t):
        _empty(a, "no designs to embed")
        return _png(fig)
    if colour is not None:
        sc = a.scatter(t["u1"], t["u2"], c=t[colour], s=4, cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=a, label=colour)
    else:
        for (label, part), c in zip(t.groupby("set", sort=False), ("#c8c8c8", "tab:blue", "tab:orange", "tab:green")):
            a.scatter(part["u1"], part["u2"], s=5 if label == "data" else 9, color=c, label=str(label), linewidths=0)
        if pairs is not None:
            for _, p in pairs.iterrows():
                a.plot([p["u1_0"], p["u1_1"]], [p["u2_0"], p["u2_1"]], color="black", lw=0.8)
        a.legend(fontsize=8, markerscale=2)
    a.set_title(title, fontsize=10)
    a.set_xlabel("UMAP 1")
    a.set_ylabel("UMAP 2")
    return _png(fig)


def _family_colours(family: pd.Series) -> list[Any]:
    """A colour per hit: its family's (tab10, tab20 past ten families), grey without one."""
    import matplotlib  # loaded by `_figure` already

    n = int(family.max()) + 1 if family.notna().any() else 0
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(int(f) % cmap.N) if pd.notna(f) else "#808080" for f in family]


def _family_legend(ax: Any, label: str, family: pd.Series) -> None:
    """Legend entries: the hits (``label``, unfilled), then ``family 0``, ``family 3`` … for
    the families that hold a hit, in their colours."""
    ax.scatter([], [], c="white", label=label, **_FAMILY_HIT)
    ids = sorted({int(f) for f in family.dropna()})
    for f, c in zip(ids, _family_colours(pd.Series(ids, dtype="Int64"))):
        ax.scatter([], [], c=[c], label=f"family {f}", **_FAMILY_HIT)


def diversity(t: pd.DataFrame, labels: Mapping[Any, str] | None = None) -> bytes:
    targets = _targets(t["target"]) if len(t) else []
    fig, ax = _figure("diversity", 1, max(1, len(targets)))
    if not targets:
        _empty(ax[0, 0], "no designs")
    for a, value in zip(ax[0], targets):
        part = t[t["target"] == value]
        for name, (c, m, s, alpha) in _SETS.items():
            sel = part[part["set"] == name]
            if not len(sel):
                continue
            label = f"{name} ({len(sel)})"
            fam = sel["family"] if "family" in sel.columns else pd.Series(pd.NA, index=sel.index)
            if name == "campaign hit" and fam.notna().any():  # a colour per family (grey: none), outlined
                a.scatter(sel["in_plane"], sel["out_of_plane"], c=_family_colours(fam), **_FAMILY_HIT)
                _family_legend(a, f"{name} ({len(sel)}), coloured by family", fam)
            else:
                a.scatter(sel["in_plane"], sel["out_of_plane"], s=s, color=c, marker=m, alpha=alpha, label=label)
        a.set_title(f"target {_label(value, labels)}", fontsize=10)
        a.set_xlabel("in-plane strain a, b, γ (%)")
        a.set_ylabel("out-of-plane strain c, α, β (%)")
        a.legend(fontsize=7, ncol=2 if len(a.get_legend_handles_labels()[1]) > 6 else 1)
    return _png(fig)


def design_rules(t: pd.DataFrame, features: Sequence[str], labels: Mapping[Any, str] | None = None) -> bytes:
    fig, ax = _figure("design_rules", 2, 2)
    labels = {
        "normal_mean": "average normal strain (%)",
        "shear_mean": "average shear strain (%)",
        "normal_abs_mean": "average |normal strain| (%)",
        "shear_abs_mean": "average |shear strain| (%)",
    }
    for a, f in zip(ax.ravel(), features):
        if not len(t):
            _empty(a, "no candidates")
            continue
        bins = np.linspace(float(t[f].min()), float(t[f].max()) + 1e-9, 30)
        for value in _targets(t["target"]):
            part = t.loc[t["target"] == value, f]
            a.hist(part, bins=bins, density=True, histtype="step", lw=1.4, label=_label(value, labels))
        a.set_xlabel(labels.get(f, f))
        a.set_ylabel("density")
        a.legend(fontsize=7)
    return _png(fig)


def campaign_hits(t: pd.DataFrame, labels: Mapping[Any, str] | None = None) -> bytes:
    fig, ax = _figure("campaign_hits")
    a = ax[0, 0]
    if not len(t):
        _empty(a, "no oracle calls yet")
        return _png(fig)
    for value in _targets(t["target"]):
        part = t[t["target"] == value]
        name = _label(value, labels)
        (line,) = a.step(part["calls"], part["hits"], where="post", label=name)
        if part["random_expected"].notna().any():
            a.plot(part["calls"], part["random_expected"], ls="--", color=line.get_color(), label=f"{name}, random")
    a.set_xlabel("oracle calls")
    a.set_ylabel("diverse hits")
    a.legend(fontsize=8)
    return _png(fig)


def campaign_error(t: pd.DataFrame, unit: str = "") -> bytes:
    fig, ax = _figure("campaign_error")
    a = ax[0, 0]
    ok = t.dropna(subset=["batch_mae"])
    if not len(ok):
        _empty(a, "no batch was forecast before it was measured")
        return _png(fig)
    a.plot(ok["iteration"], ok["batch_mae"], "o-", label="batch MAE")
    a.set_xlabel("iteration")
    a.set_ylabel(f"MAE of the forecast ({unit})" if unit else "MAE of the forecast")
    b = a.twinx()
    b.plot(ok["iteration"], ok["batch_coverage_2sigma"], "s--", color="tab:orange", label="±2σ coverage")
    b.axhline(0.954, color="tab:orange", lw=0.6, ls=":")
    b.set_ylim(0, 1.05)
    b.set_ylabel("share inside ±2σ")
    a.legend(loc="upper left", fontsize=8)
    b.legend(loc="upper right", fontsize=8)
    return _png(fig)


def campaign_calibration(t: pd.DataFrame) -> bytes:
    fig, ax = _figure("campaign_calibration")
    a = ax[0, 0]
    a.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    if len(t) and int(t["n"].iloc[0]) > 0:
        a.plot(t["level"], t["observed"], "o-", label=f"{int(t['n'].iloc[0])} forecasts")
        a.legend(fontsize=8)
    else:
        a.text(0.5, 0.5, "no forecast with a measurement", ha="center", color="grey")
    a.set_xlim(0, 1)
    a.set_ylim(0, 1)
    a.set_xlabel("nominal level of mean ± zσ")
    a.set_ylabel("share of measurements inside")
    return _png(fig)


def campaign_failures(t: pd.DataFrame) -> bytes:
    fig, ax = _figure("campaign_failures")
    a = ax[0, 0]
    if not len(t):
        _empty(a, "no oracle failures")
        return _png(fig)
    labels = [f"{s}\n({e})" for s, e in zip(t["status"], t["error_class"])]
    a.bar(labels, t["count"], color="tab:red")
    a.set_ylabel("results")
    return _png(fig)


def campaign_stages(t: pd.DataFrame) -> bytes:
    fig, ax = _figure("campaign_stages")
    a = ax[0, 0]
    if not len(t):
        _empty(a, "no iteration timed")
        return _png(fig)
    wide = t.pivot_table(index="iteration", columns="stage", values="seconds", aggfunc="sum", sort=False).fillna(0.0)
    bottom = np.zeros(len(wide))
    for stage in wide.columns:
        a.bar(wide.index, wide[stage], bottom=bottom, label=str(stage))
        bottom += wide[stage].to_numpy()
    a.set_xlabel("iteration")
    a.set_ylabel("seconds")
    a.legend(fontsize=7, ncol=2)
    return _png(fig)


def draw(name: str, *args: Any, **kwargs: Any) -> bytes:
    """Draw figure ``name`` (a key of `SIZES`)."""
    if name in ("data_umap", "switching_umap"):
        return umap_map(name, *args, **kwargs)
    fn = {
        "data_distribution": data_distribution,
        "diversity": diversity,
        "design_rules": design_rules,
        "campaign_hits": campaign_hits,
        "campaign_error": campaign_error,
        "campaign_calibration": campaign_calibration,
        "campaign_failures": campaign_failures,
        "campaign_stages": campaign_stages,
    }[name]
    return fn(*args, **kwargs)  # type: ignore[operator]
