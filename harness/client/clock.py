"""Network time: the client's estimate of the service nodes' clock.

Every storage RPC answer carries ``t`` (the node's time, ms).  session-desktop keeps the offset
``local − t`` of the latest answers, one entry per source and at most 10 sources (a source
answering again replaces its entry), and uses the average; request signatures, store timestamps
and message timestamps use ``local now − offset``.  Timestamps before 2021-01-01 are ignored as
bogus, as session-desktop does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_SOURCES = 10
MIN_VALID_TIMESTAMP_MS = 1_609_419_600_000  # 2020-12-31T13:00Z, session-desktop's sanity floor


def system_now_ms() -> int:
    return int(time.time() * 1000)


class NetworkClock:
    """Average offset over the last ``MAX_SOURCES`` sources; ``now_ms()`` is network time."""

    def __init__(self, local_now_ms: Callable[[], int] = system_now_ms,
                 max_sources: int = MAX_SOURCES) -> None:
        if max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {max_sources}")
        self._local = local_now_ms
        self._max = max_sources
        self._offsets: OrderedDict[str, int] = OrderedDict()

    def local_ms(self) -> int:
        return int(self._local())

    def observe(self, source: str, server_ms: object) -> bool:
        """Record the server time ``server_ms`` seen in an answer from ``source``.

        Returns False (and ignores it) for a missing / non-integer / implausibly old value.
        """
        if isinstance(server_ms, bool) or not isinstance(server_ms, (int, float)):
            return False
        if server_ms < MIN_VALID_TIMESTAMP_MS:
            return False
        self._offsets.pop(source, None)
        self._offsets[source] = self.local_ms() - int(server_ms)
        while len(self._offsets) > self._max:
            self._offsets.popitem(last=False)
        return True

    @property
    def offset_ms(self) -> int:
        """local − network, ms (0 until something was observed)."""
        if not self._offsets:
            return 0
        return round(sum(self._offsets.values()) / len(self._offsets))

    @property
    def samples(self) -> dict[str, int]:
        return dict(self._offsets)

    def now_ms(self) -> int:
        """Network time: local time corrected by the average offset."""
        return self.local_ms() - self.offset_ms

    def reset(self) -> None:
        self._offsets.clear()
