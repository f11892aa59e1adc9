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

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from nodes.common.http import InvalidJson, admin_token_middleware, json_error, json_response, read_json
from nodes.common.observations import ObservationLog, add_observation_routes
from nodes.common.values import is_int

from .behaviours import Behaviours
from .clock import Clock
from .peers import PeerOverrides


class Observations(ObservationLog):
    """What this node saw on its storage port (the last 10 000 requests)."""

    def record(self, *, remote_addr: str | None, channel: str, hop: str | None = None,
               next_hop: str | None = None, method: str | None = None,
               accounts: list[str] | None = None, status: int, server: str | None = None) -> int:
        return self.add({"remote_addr": remote_addr, "channel": channel, "hop": hop,
                         "next_hop": next_hop, "method": method, "accounts": list(accounts or []),
                         "status": status, "server": server})


def make_admin_app(state: Callable[[], Awaitable[dict[str, Any]]], observations: Observations,
                   behaviours: Behaviours, clock: Clock, peer_overrides: PeerOverrides,
                   log: Any = None, *, token: str) -> web.Application:
    """Every PUT answers 400 with {"error", "status"} for a body that is not valid JSON or not
    what the endpoint expects, and changes nothing then. Every request without the bearer
    ``token`` answers 401 before any handler runs."""

    app = web.Application(middlewares=[admin_token_middleware(token, log)])

    async def get_state(request: web.Request) -> web.Response:
        return json_response(await state())

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
    add_observation_routes(app, observations)
    app.router.add_get("/admin/v1/behaviours", get_behaviours)
    app.router.add_put("/admin/v1/behaviours", put_behaviours)
    app.router.add_get("/admin/v1/clock", get_clock)
    app.router.add_put("/admin/v1/clock", put_clock)
    app.router.add_get("/admin/v1/peer_overrides", get_peer_overrides)
    app.router.add_put("/admin/v1/peer_overrides", put_peer_overrides)
    return app
