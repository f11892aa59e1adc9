"""``slicer``: Toxiproxy's ``slicer`` toxic."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.families.base import Param
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault


class Slicer(ToxicFault):
    """Cut data of NODE (or of one link) into pieces of --average-size ± --size-variation
    bytes, --delay-us microseconds apart."""

    action = "slicer"
    toxic_type = "slicer"
    params = (Param("average_size", int, help="Bytes per piece.", minimum=1),
              Param("size_variation", int, 0, "± bytes per piece.", minimum=0),
              Param("delay_us", int, 0, "Microseconds between pieces.", minimum=0),
              *LINK_PARAMS)

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"average_size": params["average_size"],
                "size_variation": params["size_variation"], "delay": params["delay_us"]}

    def generate(self, rng: random.Random) -> dict[str, Any]:
        size = rng.choice([16, 64, 256])
        return {"average_size": size, "size_variation": size // 4,
                "delay_us": rng.choice([0, 100, 1000])}
