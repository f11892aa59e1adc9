"""What one client can hold on a node's or the seed's HTTP server (issue 12, finding 5).

* **Idle and request-head deadline** — aiohttp's keep-alive timer (``keepalive_timeout``) runs
  from the moment a connection opens and closes it while no complete request head has arrived, so
  one value bounds both idle keep-alive connections and half-sent headers (default ~1 h in
  aiohttp; :attr:`ServerLimits.idle_timeout` here).
* **Body deadline** — :func:`limits_middleware` reads the body within
  :attr:`ServerLimits.body_timeout` (408 otherwise) before the handler runs.
* **In-flight body bytes** — bodies held in memory at once are capped; beyond the cap a request
  is answered 503 at once, as the storage server answers an overloaded node, instead of growing
  the process without bound.
* **Concurrent connections** — :class:`CappedTCPSite` accepts at most
  :attr:`ServerLimits.max_connections`; a connection beyond it gets a 503 and is closed, and the
  connections within the cap keep being served.
* **Loop errors** — :class:`RateLimitedLoopErrors` logs asyncio's own errors (``accept()`` out of
  file descriptors, TLS handshake failures) at most a few times per second, with a count of the
  ones left out, instead of a traceback per event.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

TEXT = "text/plain"


@dataclass(frozen=True)
class ServerLimits:
    idle_timeout: float = 15.0  # seconds: idle keep-alive, and a request head must arrive within it
    body_timeout: float = 30.0  # seconds to receive a request body once its head arrived
    max_connections: int = 1000  # open connections per listening socket (file descriptors: 1024 typical)
    max_inflight_body_bytes: int = 64 * 1024 * 1024  # request bodies held in memory at once
    lingering_time: float = 2.0  # seconds to drain a body left unread after answering (aiohttp: 10)

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0 or self.body_timeout <= 0 or self.lingering_time < 0:
            raise ValueError("idle_timeout and body_timeout must be > 0 seconds, lingering_time >= 0")
        if self.max_connections < 1 or self.max_inflight_body_bytes < 1:
            raise ValueError("max_connections and max_inflight_body_bytes must be >= 1")

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``web.AppRunner`` / ``TestServer`` applying the idle deadline."""
        return {"keepalive_timeout": self.idle_timeout, "lingering_time": self.lingering_time}


class BodyBudget:
    """Bytes of request bodies currently held; ``reserve`` refuses what would exceed the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)


def limits_middleware(limits: ServerLimits, client_max_size: int, budget: BodyBudget | None = None) -> Any:
    """A middleware reading each request body under the in-flight budget and the body deadline.
    A body without Content-Length reserves ``client_max_size`` (the most it may grow to).
    ``budget``: one shared with another reader of the same server's bodies (a lean front)."""
    if budget is None:
        budget = BodyBudget(limits.max_inflight_body_bytes)

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        size = request.content_length
        if not request.body_exists or (size is not None and size > client_max_size):
            return await handler(request)  # nothing to read, or refused unread by the handler
        reserve = min(size, client_max_size) if size is not None else client_max_size
        if not budget.reserve(reserve):
            return web.Response(status=503, content_type=TEXT, headers={"Retry-After": "1"},
                                text=f"Service Unavailable: {budget.held} bytes of request bodies in flight "
                                     f"(limit {budget.limit}); retry later")
        try:
            try:
                if request.content.is_eof():  # the whole body is here already: nothing to wait for
                    await request.read()
                else:  # asyncio.timeout, not wait_for: no task per request
                    async with asyncio.timeout(limits.body_timeout):
                        await request.read()
            except TimeoutError:
                return web.Response(status=408, content_type=TEXT, headers={"Connection": "close"},
                                    text=f"Request Timeout: body not received within {limits.body_timeout:g} s")
            return await handler(request)
        finally:
            budget.release(reserve)

    return middleware


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: answer 503 to its first request and close it."""

    def __init__(self, text: str) -> None:
        body = text.encode()
        self.answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                       b"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\n\r\n" + body)
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        # answer once the request head is in (closing earlier could reset the connection before
        # the client reads the answer), or after a second in any case
        self._timer = asyncio.get_running_loop().call_later(1.0, self._answer)

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self._answer()

    def _answer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.answer)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None


class _Counted(asyncio.Protocol):
    """Forwards every protocol event to aiohttp's handler and keeps the open-connection count."""

    def __init__(self, inner: asyncio.Protocol, cap: ConnectionCap) -> None:
        self.inner = inner
        # released on connection_lost, or when the protocol is dropped without it: asyncio's TLS
        # layer never tells the application protocol about a connection whose handshake failed
        self._release = weakref.finalize(self, cap.release)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()  # runs once
        self.inner.connection_lost(exc)


class ConnectionCap:
    """Counts a listening socket's connections (from accept, TLS handshakes included)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0  # connections answered 503 since start

    def protocol(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        if self.open >= self.limit:
            self.refused += 1
            return _Refused(f"Service Unavailable: {self.open} connections open (limit {self.limit}); "
                            "retry later")
        self.open += 1
        return _Counted(factory(), self)

    def release(self) -> None:
        self.open = max(0, self.open - 1)


class CappedTCPSite(web.TCPSite):
    """``web.TCPSite`` whose listening socket holds at most ``cap.limit`` connections."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, cap: ConnectionCap,
                 ssl_context: Any = None, backlog: int = 128,
                 front: Callable[[Callable[[], asyncio.Protocol]], asyncio.Protocol] | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=backlog)
        self.cap = cap
        #: ``front(aiohttp's protocol factory)``: the protocol of each connection instead of
        #: aiohttp's own (nodes/common/lean_http.py)
        self.front = front

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        front = self.front
        factory: Callable[[], asyncio.Protocol] = server if front is None else (lambda: front(server))
        self._server = await asyncio.get_running_loop().create_server(
            lambda: self.cap.protocol(factory), self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


class RateLimitedLoopErrors:
    """An asyncio exception handler that logs at most ``per_second`` errors a second (JSON, one
    line each, no traceback) and then one ``loop_errors_suppressed`` line with the count left out."""

    def __init__(self, log: Any, per_second: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.per_second = per_second
        self._clock = clock
        self._window = clock()
        self._logged = 0
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            if self.suppressed:
                self.log.warning("loop_errors_suppressed", count=self.suppressed, window_s=round(now - self._window, 1))
            self._window, self._logged, self.suppressed = now, 0, 0
        if self._logged >= self.per_second:
            self.suppressed += 1
            return
        self._logged += 1
        exc = context.get("exception")
        self.log.error("loop_error", message=str(context.get("message", "")),
                       error=repr(exc) if exc is not None else None)
