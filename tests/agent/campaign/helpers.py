"""What several campaign tests share: models small enough for a campaign of seconds."""

from __future__ import annotations

from typing import Any

TINY_MODELS: dict[str, Any] = {
    "members": 3,
    "surrogate_epochs": 30,
    "surrogate_warm_epochs": 5,
    "generator_epochs": 8,
    "generator_warm_epochs": 2,
}
