"""Admin interface: plain HTTP on --admin-port, bound to the node's IP (never the storage port).

GET  /admin/v1/state
GET  /admin/v1/observations?since=SEQ      DELETE /admin/v1/observations
GET  /admin/v1/behaviours                  PUT    /admin/v1/behaviours
GET  /admin/v1/clock                       PUT    /admin/v1/clock {"offset_ms": int}
GET  /admin/v1/peer_overrides              PUT    /admin/v1/peer_overrides {"<ed25519 hex>": "ip:port" | null}

Every endpoint requires ``Authorization: Bearer <admin token>`` (the testnet's admin secret);
without it, or with a wrong one, it answers 401 and changes nothing, and the attempt is logged.
A node started without a token refuses every admin call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from nodes.common.http import InvalidJson, admin_token_middleware, json_error, json_response, read_json
from nodes.common.values import is_int

from .behaviours import Behaviours
from .clock import Clock
from .peers import PeerOverrides

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
               accounts: list[str] | None = None, status: int, server: str | None = None) -> int:
        seq = self._next
        self._next += 1
        self._items.append({
            "seq": seq, "ts": round(time.time(), 3), "remote_addr": remote_addr, "channel": channel,
            "hop": hop, "next_hop": next_hop, "method": method, "accounts": list(accounts or []),
            "status": status, "server": server,
        })
        return seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [o for o in self._items if o["seq"] >= seq]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def make_admin_app(state: Callable[[], Awaitable[dict[str, Any]]], observations: Observations,
                   behaviours: Behaviours, clock: Clock, peer_overrides: PeerOverrides,
                   log: Any = None, *, token: str) -> web.Application:
    """Every PUT answers 400 with {"error", "status"} for a body that is not valid JSON or not
    what the endpoint expects, and changes nothing then. Every request without the bearer
    ``token`` answers 401 before any handler runs."""

    app = web.Application(middlewares=[admin_token_middleware(token, log)])

    async def get_state(request: web.Request) -> web.Response:
        return json_response(await state())

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

    async def get_behaviours(request: web.Request) -> web.Response:
        return json_response(behaviours.to_json())

    async def put_behaviours(request: web.Request) -> web.Response:
        try:
            behaviours.update(await read_json(request))
        except ValueError as e:  # InvalidJson included
            return json_error(400, str(e))
        if log:
            log.info("behaviours_changed", behaviours=behaviours.to_json())
        return json_response(behaviours.to_json())

    async def get_clock(request: web.Request) -> web.Response:
        return json_response({"offset_ms": clock.offset_ms, "now_ms": clock.now_ms()})

    async def put_clock(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except InvalidJson as e:
            return json_error(400, str(e))
        off = body.get("offset_ms") if isinstance(body, dict) else None
        if not is_int(off):
            return json_error(400, "expected {\"offset_ms\": <integer milliseconds>}")
        clock.offset_ms = off
        if log:
            log.info("clock_offset_changed", offset_ms=off)
        return json_response({"offset_ms": clock.offset_ms, "now_ms": clock.now_ms()})

    async def get_peer_overrides(request: web.Request) -> web.Response:
        return json_response(peer_overrides.to_json())

    async def put_peer_overrides(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            peer_overrides.update(body)
        except ValueError as e:  # InvalidJson included
            return json_error(400, str(e))
        if log:
            log.info("peer_overrides_changed", changes=body, peer_overrides=peer_overrides.to_json())
        return json_response(peer_overrides.to_json())

    app.router.add_get("/admin/v1/state", get_state)
    app.router.add_get("/admin/v1/observations", get_observations)
    app.router.add_delete("/admin/v1/observations", delete_observations)
    app.router.add_get("/admin/v1/behaviours", get_behaviours)
    app.router.add_put("/admin/v1/behaviours", put_behaviours)
    app.router.add_get("/admin/v1/clock", get_clock)
    app.router.add_put("/admin/v1/clock", put_clock)
    app.router.add_get("/admin/v1/peer_overrides", get_peer_overrides)
    app.router.add_put("/admin/v1/peer_overrides", put_peer_overrides)
    return app
