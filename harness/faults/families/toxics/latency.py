"""``latency``: Toxiproxy's ``latency`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class Latency(ToxicFault):
    """Delay data of NODE (or of one link) by --ms ± --jitter."""

    action = "latency"
    toxic_type = "latency"
    weight = 4
    params = (Param("ms", int, help="Added delay in milliseconds.", minimum=0),
              Param("jitter", int, 0, "± milliseconds.", minimum=0), *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"latency": params["ms"], "jitter": params["jitter"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        ms = rng.randrange(50, 501, 10)
        return {"ms": ms, "jitter": rng.randrange(0, ms // 2 + 1, 5)}
