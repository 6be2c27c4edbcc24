"""An oracle module whose dependency is not installed."""

import innloop_missing_dependency  # noqa: F401  # deliberately absent: the import fails


class BrokenOracle:
    name = "broken_oracle"
