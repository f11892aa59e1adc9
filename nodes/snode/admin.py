"""Admin interface: plain HTTP on --admin-port, bound to the node's IP (never the storage port).

GET  /admin/v1/state
GET  /admin/v1/observations?since=SEQ      DELETE /admin/v1/observations
GET  /admin/v1/behaviours                  PUT    /admin/v1/behaviours
GET  /admin/v1/clock                       PUT    /admin/v1/clock {"offset_ms": int}
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .behaviours import Behaviours
from .clock import Clock

OBSERVATIONS_MAX = 10_000


class Observations:
    """Ring buffer of what this node saw on its storage port (10 000 entries)."""

    def __init__(self, maxlen: int = OBSERVATIONS_MAX) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._next = 1

    @property
    def next_seq(self) -> int:
        return self._next

    def record(self, *, remote_addr: str | None, channel: str, hop: str | None = None,
               next_hop: str | None = None, method: str | None = None,
               accounts: list[str] | None = None, status: int) -> int:
        seq = self._next
        self._next += 1
        self._items.append({
            "seq": seq, "ts": round(time.time(), 3), "remote_addr": remote_addr, "channel": channel,
            "hop": hop, "next_hop": next_hop, "method": method, "accounts": list(accounts or []),
            "status": status,
        })
        return seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [o for o in self._items if o["seq"] >= seq]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _read_json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body is not valid JSON"}),
                                 content_type="application/json") from None


def make_admin_app(state: Callable[[], Awaitable[dict[str, Any]]], observations: Observations,
                   behaviours: Behaviours, clock: Clock, log: Any = None) -> web.Application:
    app = web.Application()

    async def get_state(request: web.Request) -> web.Response:
        return _json(await state())

    async def get_observations(request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        try:
            since = int(raw)
        except ValueError:
            return _error(400, f"since must be an integer sequence number, got {raw!r}")
        return _json({"next": observations.next_seq, "observations": observations.since(since)})

    async def delete_observations(request: web.Request) -> web.Response:
        observations.clear()
        return _json({"cleared": True, "next": observations.next_seq})

    async def get_behaviours(request: web.Request) -> web.Response:
        return _json(behaviours.to_json())

    async def put_behaviours(request: web.Request) -> web.Response:
        body = await _read_json(request)
        try:
            behaviours.update(body)
        except ValueError as e:
            return _error(400, str(e))
        if log:
            log.info("behaviours_changed", behaviours=behaviours.to_json())
        return _json(behaviours.to_json())

    async def get_clock(request: web.Request) -> web.Response:
        return _json({"offset_ms": clock.offset_ms, "now_ms": clock.now_ms()})

    async def put_clock(request: web.Request) -> web.Response:
        body = await _read_json(request)
        off = body.get("offset_ms") if isinstance(body, dict) else None
        if isinstance(off, bool) or not isinstance(off, int):
            return _error(400, "expected {\"offset_ms\": <integer milliseconds>}")
        clock.offset_ms = off
        if log:
            log.info("clock_offset_changed", offset_ms=off)
        return _json({"offset_ms": clock.offset_ms, "now_ms": clock.now_ms()})

    app.router.add_get("/admin/v1/state", get_state)
    app.router.add_get("/admin/v1/observations", get_observations)
    app.router.add_delete("/admin/v1/observations", delete_observations)
    app.router.add_get("/admin/v1/behaviours", get_behaviours)
    app.router.add_put("/admin/v1/behaviours", put_behaviours)
    app.router.add_get("/admin/v1/clock", get_clock)
    app.router.add_put("/admin/v1/clock", put_clock)
    return app
