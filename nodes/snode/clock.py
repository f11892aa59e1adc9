"""The node's clock: system time plus an admin-settable offset (PUT /admin/v1/clock)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Clock:
    offset_ms: int = 0

    def now_ms(self) -> int:
        """Node time in ms: used for "t", validation windows, expiry and purging."""
        return int(time.time() * 1000) + self.offset_ms

    @staticmethod
    def system_ms() -> int:
        """Unskewed system time (node<->node authentication only)."""
        return int(time.time() * 1000)
