"""The campaign report: ``innloop report CAMPAIGN`` writes ``state/<campaign>/report/``.

Layers, each usable on its own: `agent.report.inputs` (read the campaign, make
candidates), `agent.report.tables` and `agent.report.switch` (the numbers),
`agent.report.figures` (PNG drawing), `agent.report.html` (one self-contained page),
and `agent.report.build` which ties them together. `agent.report.embed` draws the
design-space map and `agent.report.cache` keeps what no campaign changes (the data's
map) between reports.
"""

from agent.report.build import ReportOptions, ReportResult, build_report, default_confirm, switching_line
from agent.report.figures import SIZES

__all__ = ["SIZES", "ReportOptions", "ReportResult", "build_report", "default_confirm", "switching_line"]
