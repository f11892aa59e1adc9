"""``slow_close``: Toxiproxy's ``slow_close`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class SlowClose(ToxicFault):
    """Delay the close of connections to NODE (or on one link) by --delay-ms."""

    action = "slow_close"
    toxic_type = "slow_close"
    params = (Param("delay_ms", int, help="Delay of the close in milliseconds.", minimum=0),
              *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"delay": params["delay_ms"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"delay_ms": rng.choice([100, 1000, 3000])}
