"""Per-client-IP token buckets for /storage_rpc/v1 (429 "Too Many Requests" when empty)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """`rate` requests/second per IP with a burst of max(rate, 1); rate 0 disables limiting."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float, burst: float | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._now = now
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, ip: str) -> bool:
        if not self.enabled:
            return True
        t = self._now()
        b = self._buckets.get(ip)
        if b is None:
            if len(self._buckets) >= self.MAX_CLIENTS:
                self._evict(t)
            b = self._buckets[ip] = _Bucket(self.burst, t)
        else:
            b.tokens = min(self.burst, b.tokens + (t - b.stamp) * self.rate)
            b.stamp = t
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        return False

    def _evict(self, t: float) -> None:
        full = [ip for ip, b in self._buckets.items()
                if b.tokens + (t - b.stamp) * self.rate >= self.burst]
        for ip in full:
            del self._buckets[ip]
        if len(self._buckets) >= self.MAX_CLIENTS:
            self._buckets.clear()
