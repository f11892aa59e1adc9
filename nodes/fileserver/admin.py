"""The file server's admin interface (plain HTTP on ``--admin-port``, bearer admin token as for
nodes): ``GET /admin/v1/state``, ``GET /admin/v1/observations?since=SEQ``,
``DELETE /admin/v1/observations``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from nodes.common.http import admin_token_middleware, json_error, json_response

OBSERVATIONS_MAX = 10_000


class Observations:
    """Ring buffer of what the file server saw: who connected, which file ids."""

    def __init__(self, maxlen: int = OBSERVATIONS_MAX) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._next = 1

    @property
    def next_seq(self) -> int:
        return self._next

    def record(self, *, remote_addr: str | None, channel: str, method: str | None,
               endpoint: str | None, status: int, file_id: str | None = None,
               size: int | None = None) -> int:
        seq = self._next
        self._next += 1
        self._items.append({"seq": seq, "ts": round(time.time(), 3), "remote_addr": remote_addr,
                            "channel": channel, "method": method, "endpoint": endpoint,
                            "file_id": file_id, "size": size, "status": status})
        return seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [o for o in self._items if o["seq"] >= seq]

    def clear(self) -> None:
        self._items.clear()


def make_admin_app(state: Callable[[], dict[str, Any]], observations: Observations, *,
                   token: str, log: Any = None) -> web.Application:
    app = web.Application(middlewares=[admin_token_middleware(token, log)])

    async def get_state(request: web.Request) -> web.Response:
        return json_response(state())

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

    app.router.add_get("/admin/v1/state", get_state)
    app.router.add_get("/admin/v1/observations", get_observations)
    app.router.add_delete("/admin/v1/observations", delete_observations)
    return app
