"""``timeout``: Toxiproxy's ``timeout`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class Timeout(ToxicFault):
    """Swallow all data of NODE (or of one link) and close after --ms (0: hold it silently)."""

    action = "timeout"
    toxic_type = "timeout"
    weight = 1
    params = (Param("ms", int, help="Close connections after this many ms; 0 = hold them "
                    "silently.", minimum=0), *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"timeout": params["ms"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"ms": rng.choice([0, 500, 2000])}
