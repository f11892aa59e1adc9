"""aiohttp helpers shared by the seed and the storage node.

* responses with the exact Content-Type values production servers send (``application/json``,
  ``text/plain``, ``application/octet-stream``, never with a ``; charset=...`` parameter:
  session-desktop rejects a seed answer whose Content-Type is not exactly ``application/json``);
* JSON error answers ``{"error": message, "status": status}`` and strict JSON request bodies;
* listening sockets whose failures say which address is busy or missing;
* client sessions for the testnet's self-signed HTTPS peers.
"""

from __future__ import annotations

import errno
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from nodes.protocol import jsonin

from .auth import bearer_ok
from .lean_http import LeanRoutes
from .limits import CappedTCPSite, ConnectionCap, ServerLimits
from .service import StartupError
from .tls import insecure_client_context


class InvalidJson(ValueError):
    """A request body is not valid JSON (answer 400 with this message)."""


class ListenError(StartupError):
    """A listening socket cannot be opened; the message names the address and what to do."""


JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain"
BINARY_CONTENT_TYPE = "application/octet-stream"


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON, labelled exactly ``application/json`` (no charset parameter)."""
    return web.Response(status=status, body=json.dumps(data).encode("utf-8"),
                        content_type=JSON_CONTENT_TYPE)


def json_text_response(text: str, status: int = 200) -> web.Response:
    """Already serialised JSON, labelled exactly ``application/json``."""
    return web.Response(status=status, body=text.encode("utf-8"), content_type=JSON_CONTENT_TYPE)


def text_response(status: int, text: str) -> web.Response:
    """A plain-text answer (error strings), labelled exactly ``text/plain``."""
    return web.Response(status=status, body=text.encode("utf-8"), content_type=TEXT_CONTENT_TYPE)


def binary_response(data: bytes, status: int = 200) -> web.Response:
    """Binary data, labelled ``application/octet-stream``."""
    return web.Response(status=status, body=bytes(data), content_type=BINARY_CONTENT_TYPE)


@web.middleware
async def plain_http_errors(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """aiohttp's own error answers (unknown path, wrong method, body too large, …) as exact
    ``text/plain`` instead of aiohttp's ``text/plain; charset=utf-8``."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return text_response(e.status, e.text or e.reason)


def json_error(status: int, message: str) -> web.Response:
    return json_response({"error": message, "status": status}, status)


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON (``empty`` for a blank body); raises :class:`InvalidJson`."""
    data = await request.read()
    if not data.strip():
        return empty
    try:
        return jsonin.loads(data)
    except jsonin.JsonInputError as e:
        raise InvalidJson(f"body is not valid JSON: {e}") from None


async def start_site(runner: web.AppRunner, host: str, port: int, *, what: str,
                     ssl_context: ssl.SSLContext | None = None, backlog: int = 512,
                     limits: ServerLimits | None = None, lean: LeanRoutes | None = None) -> CappedTCPSite:
    """Listen on ``host:port`` for ``runner`` with at most ``limits.max_connections`` connections;
    raises :class:`ListenError` (``what`` names the socket, e.g. "storage port") saying why the
    address cannot be used. ``lean``: routes answered by a lean front before aiohttp
    (nodes/common/lean_http.py)."""
    cap = ConnectionCap((limits or ServerLimits()).max_connections)
    site = CappedTCPSite(runner, host, port, cap=cap, ssl_context=ssl_context, backlog=backlog,
                         front=None if lean is None else lean.front)
    try:
        await site.start()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            msg = f"{what} {port} on {host} in use: stop the other process or choose another port"
        elif e.errno == errno.EADDRNOTAVAIL:
            msg = f"cannot bind {what} {port}: address {host} is not available on this host"
        else:
            msg = f"cannot bind {what} {port} on {host}: {e}"
        raise ListenError(msg) from e
    return site


class ClientSessions:
    """A lazily (re)created aiohttp session for HTTPS peers with self-signed certificates."""

    def __init__(self, timeout: float | None = None, limit: int = 100) -> None:
        self.timeout = timeout
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None
        #: requests started through this session (any session it made), for the idle figures
        self.requests_sent = 0

    async def _count(self, session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        self.requests_sent += 1

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_start.append(self._count)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=insecure_client_context(), limit=self.limit),
                timeout=aiohttp.ClientTimeout(total=self.timeout), trace_configs=[trace])
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def admin_token_middleware(token: str, log: Any = None) -> Any:
    """aiohttp middleware of an admin interface: a request without ``Authorization: Bearer
    <token>`` answers 401 (naming why) before any handler runs, and is logged when ``log``."""

    @web.middleware
    async def require_token(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
        if bearer_ok(request.headers.get("Authorization"), token):
            return await handler(request)
        if log:
            log.warning("admin_unauthorized", method=request.method, path=request.path,
                        remote=request.remote)
        if not token:
            return json_error(401, "admin interface disabled: no admin token configured "
                                   "(--admin-token-file or $SESSION_TESTNET_ADMIN_TOKEN)")
        return json_error(401, "missing or wrong admin token: send 'Authorization: Bearer <token>'")

    return require_token
