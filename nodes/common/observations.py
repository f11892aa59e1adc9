"""What a node saw, kept for the harness: a ring buffer of observations with sequence numbers,
and the admin routes that read and clear it (``GET /admin/v1/observations?since=SEQ``,
``DELETE /admin/v1/observations``).

The storage node and the file server each record their own fields (their ``record`` methods);
the buffer, its sequence numbers and the two routes are the same for both.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from .http import json_error, json_response

OBSERVATIONS_MAX = 10_000


class ObservationLog:
    """The last ``maxlen`` observations, each a dict with ``seq`` (1, 2, …, never reused, also
    after :meth:`clear`) and ``ts`` (Unix time, s)."""

    def __init__(self, maxlen: int = OBSERVATIONS_MAX) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._next = 1

    @property
    def next_seq(self) -> int:
        return self._next

    def add(self, fields: dict[str, Any]) -> int:
        """Append one observation; returns its sequence number."""
        seq = self._next
        self._next += 1
        self._items.append({"seq": seq, "ts": round(time.time(), 3), **fields})
        return seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [o for o in self._items if o["seq"] >= seq]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def add_observation_routes(app: web.Application, observations: ObservationLog) -> None:
    """``GET /admin/v1/observations?since=SEQ`` → ``{"next", "observations"}`` (400 for a
    ``since`` that is not an integer) and ``DELETE /admin/v1/observations`` →
    ``{"cleared": true, "next"}``."""

    async def get_observations(request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        try:
            since = int(raw)
        except ValueError:
            return json_error(400, f"since must be an integer sequence number, got {raw!r}")
        return json_response({"next": observations.next_seq, "observations": observations.since(since)})

    async def delete_observations(request: web.Request) -> web.Response:
        observations.clear()
        return json_response({"cleared": True, "next": observations.next_seq})

    app.router.add_get("/admin/v1/observations", get_observations)
    app.router.add_delete("/admin/v1/observations", delete_observations)
