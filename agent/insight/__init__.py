"""Numbers behind a campaign report: strain features, design-rule quantiles, switching pairs.

Pure functions over numpy/pandas (no plotting, no files): `agent.insight.strain` turns
designs into strains relative to the unstrained cell, `agent.insight.switching` finds
and describes the smallest metal–insulator switches, `agent.insight.confirm` measures
them with an oracle (through the campaign's job driver, on the journal it is given or a
temporary one: its only files) and `agent.insight.transitions` assembles the ranked table.
"""

from agent.insight.confirm import confirm_pairs, measure_designs
from agent.insight.strain import (
    FEATURES,
    cell_reference,
    features_by_group,
    quantile_table,
    strain_features,
)
from agent.insight.switching import (
    describe_change,
    find_pairs,
    in_window_candidates,
    pair_table,
    verify_pairs,
)
from agent.insight.transitions import SwitchingReport, switching_report

__all__ = [
    "FEATURES",
    "SwitchingReport",
    "cell_reference",
    "confirm_pairs",
    "describe_change",
    "features_by_group",
    "find_pairs",
    "in_window_candidates",
    "measure_designs",
    "pair_table",
    "quantile_table",
    "strain_features",
    "switching_report",
    "verify_pairs",
]
