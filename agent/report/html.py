"""Rendering: one self-contained HTML file from sections of figures, tables and text.

Images are embedded as ``data:`` URIs (the file opens anywhere, mailed or archived),
and each figure and table also names the PNG/CSV written beside it. Every string that
comes from a campaign (names, messages, table cells) is HTML-escaped. A few lines of
inline script write each image's decoded size into ``#image-check`` once the page has
loaded, so a headless browser's DOM dump shows whether every figure rendered.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Figure", "Section", "Table", "render"]


@dataclass(frozen=True)
class Figure:
    name: str  # file stem: <name>.png
    caption: str
    png: bytes


@dataclass(frozen=True)
class Table:
    name: str  # file stem: <name>.csv
    caption: str
    frame: pd.DataFrame
    max_rows: int = 25


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    items: list[Figure | Table] = field(default_factory=list)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
figure{margin:1.2em 0}figcaption,.caption{font-size:.9em;color:#444;margin:.3em 0}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
td.text{text-align:left}.file{font-family:monospace;font-size:.85em;color:#666}
#image-check{display:none}
"""

_CHECK = """
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("img").forEach(function (img) {
    out.push(img.getAttribute("data-name") + "=" + img.naturalWidth + "x" + img.naturalHeight);
  });
  var el = document.getElementById("image-check");
  el.textContent = out.join(" ");
  el.setAttribute("data-count", String(out.length));
});
"""


def _cell(v: object) -> tuple[str, bool]:
    """Text of a table cell and whether it is text (left-aligned) rather than a number."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "", False
    if isinstance(v, bool):
        return ("yes" if v else "no"), True
    if isinstance(v, int):
        return str(v), False
    if isinstance(v, float):
        return (f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"), False
    return str(v), True


def _table(t: Table) -> str:
    df = t.frame
    shown = df.head(t.max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            text, is_text = _cell(v.item() if hasattr(v, "item") else v)
            cls = ' class="text"' if is_text else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f" First {len(shown)} of {len(df)} rows." if len(df) > len(shown) else ""
    return (
        f'<div class="table" id="table-{html.escape(t.name)}"><p class="caption">{html.escape(t.caption)}{more} '
        f'<span class="file">{html.escape(t.name)}.csv</span></p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode()
    name = html.escape(f.name)
    return (
        f'<figure id="figure-{name}"><img data-name="{name}" alt="{html.escape(f.caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(f.caption)} '
        f'<span class="file">{name}.png</span></figcaption></figure>'
    )


def render(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole document; ``intro`` and section texts are plain text (escaped here)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        f"<script>{_CHECK}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(p)}</p>" for p in intro),
    ]
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.text]
        parts += [_figure(i) if isinstance(i, Figure) else _table(i) for i in s.items]
        parts.append("</section>")
    parts.append('<pre id="image-check"></pre></body></html>')
    return "\n".join(parts)
