"""``bandwidth``: Toxiproxy's ``bandwidth`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class Bandwidth(ToxicFault):
    """Limit the throughput of NODE (or of one link) to --kbps kilobytes per second."""

    action = "bandwidth"
    toxic_type = "bandwidth"
    weight = 1
    params = (Param("kbps", int, help="Kilobytes per second (Toxiproxy's rate).", minimum=0),
              *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"rate": params["kbps"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"kbps": rng.choice([4, 16, 64, 256])}
