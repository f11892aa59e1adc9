"""The file server's admin interface (plain HTTP on ``--admin-port``, bearer admin token as for
nodes): ``GET /admin/v1/state``, ``GET /admin/v1/observations?since=SEQ``,
``DELETE /admin/v1/observations``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from nodes.common.http import admin_token_middleware, json_response
from nodes.common.observations import ObservationLog, add_observation_routes


class Observations(ObservationLog):
    """What the file server saw: who connected, which file ids."""

    def record(self, *, remote_addr: str | None, channel: str, method: str | None,
               endpoint: str | None, status: int, file_id: str | None = None,
               size: int | None = None) -> int:
        return self.add({"remote_addr": remote_addr, "channel": channel, "method": method,
                         "endpoint": endpoint, "file_id": file_id, "size": size, "status": status})


def make_admin_app(state: Callable[[], dict[str, Any]], observations: Observations, *,
                   token: str, log: Any = None) -> web.Application:
    app = web.Application(middlewares=[admin_token_middleware(token, log)])

    async def get_state(request: web.Request) -> web.Response:
        return json_response(state())

    app.router.add_get("/admin/v1/state", get_state)
    add_observation_routes(app, observations)
    return app
