"""``limit_data``: Toxiproxy's ``limit_data`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class LimitData(ToxicFault):
    """Close each connection to NODE (or on one link) after --bytes bytes."""

    action = "limit_data"
    toxic_type = "limit_data"
    params = (Param("nbytes", int, help="Close each connection after this many bytes.",
                    minimum=0, cli="--bytes"), *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"bytes": params["nbytes"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"nbytes": rng.choice([100, 1000, 10000])}
