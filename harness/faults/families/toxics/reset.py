"""``reset``: Toxiproxy's ``reset_peer`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class Reset(ToxicFault):
    """Reset connections (TCP RST) to NODE (or on one link) --timeout-ms after their first
    data."""

    action = "reset"
    toxic_type = "reset_peer"
    weight = 1
    params = (Param("timeout_ms", int, 0, "Reset this many ms after the first data.", minimum=0),
              *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"timeout": params["timeout_ms"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"timeout_ms": rng.choice([0, 100, 1000])}
