"""How long the seed's own event loop was stalled (busy, suspended): a ticker that notices when it
wakes late.  The block producer excuses that time from every node's proof age, so a seed that was
slow to read proofs never deregisters the nodes that sent them (issue 12, finding 1)."""

from __future__ import annotations

import time
from collections.abc import Callable


class StallMeter:
    """``tick()`` is called every ``interval`` seconds by a background task; a gap longer than
    ``interval + threshold`` between two observations counts as a stall of ``gap - interval``."""

    def __init__(self, interval: float = 0.1, threshold: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0 or threshold < 0:
            raise ValueError("interval must be > 0 and threshold >= 0")
        self.interval = interval
        self.threshold = threshold
        self._clock = clock
        self._last = clock()
        self._stalled = 0.0
        self.total = 0.0  # all stall seconds seen since start (for the state snapshot)
        self.longest = 0.0

    def tick(self) -> None:
        now = self._clock()
        gap = now - self._last
        self._last = now
        if gap > self.interval + self.threshold:
            stall = gap - self.interval
            self._stalled += stall
            self.total += stall
            self.longest = max(self.longest, stall)

    def take(self) -> float:
        """Stall seconds accumulated since the last ``take()`` (including the current gap)."""
        self.tick()
        stalled, self._stalled = self._stalled, 0.0
        return stalled
