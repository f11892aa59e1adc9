"""A lean front for a node's busiest HTTP routes, in front of its aiohttp server on the same port.

Per request, aiohttp's server builds a request object (headers, URL, payload stream), runs the
middleware chain, builds a response object and writes it through its stream writer: ~160 µs of
CPython on this machine against ~20 µs for the same POST framed and answered here
(docs/nodes.md, "Performance"). On a node that is paid by every onion hop, every swarm fan-out
request and every direct store. :class:`LeanHttpFront` is the protocol of each accepted
connection: it answers the ``POST`` routes it is given itself and hands everything else to
aiohttp's own protocol, so the app keeps every other route, its middlewares and its answers to
malformed input.

A request is answered here only when it is plain: ``POST`` of HTTP/1.1 to one of the routes (no
query string), one valid ``Content-Length`` of at most ``max_body`` bytes, no
``Transfer-Encoding``, ``Expect`` or ``Upgrade``. Its head is parsed by httptools (llhttp, the
parser of uvloop and of aiohttp's C speed-ups). Anything else — another route or method, a
chunked or oversized body, a head llhttp rejects, a head longer than :data:`MAX_HEAD_BYTES`, a
body the in-flight budget cannot hold — hands the connection over to aiohttp from the first
byte of that request on: the request gets exactly the answer it got before this front existed,
and the connection stays with aiohttp. Requests on one connection are answered in order (a
pipelined request waits until the one before it is answered). Bytes that cannot begin a head
llhttp accepts go to aiohttp as soon as they arrive, so garbage is answered at once, as aiohttp
alone answers it. One difference, on purpose: where a plain request and bytes that are not a
request arrive in one read, aiohttp alone answers 400 to both; the front answers the request,
and aiohttp the bytes after it.

The limits of :class:`~nodes.common.limits.ServerLimits` hold here as in aiohttp: a connection
without a complete request head for ``idle_timeout`` is closed, a body not received within
``body_timeout`` of its head is answered 408 and the connection closed, and the bodies held
count against the same :class:`~nodes.common.limits.BodyBudget` as the middleware's. A handler
that raises is answered 500 (``on_error`` is told), as aiohttp answers it.

``SESSION_TESTNET_LEAN_HTTP=0`` in a node's environment leaves every request to aiohttp (to
compare, or to rule the front out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from .eventloop import switched_on
from .limits import BodyBudget, ServerLimits

#: set to 0 (or false/no/off) to leave every request of a node to aiohttp
ENV_LEAN_HTTP = "SESSION_TESTNET_LEAN_HTTP"

#: the longest request head answered here (a longer one goes to aiohttp, whose limit is 8190
#: bytes per line)
MAX_HEAD_BYTES = 8192
#: buffered bytes of requests not yet read (pipelined behind one being answered) before the
#: connection stops reading
MAX_BUFFERED_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LeanRequest:
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    #: the peer's IP address (None if the transport does not know it)
    remote: str | None


@dataclass(frozen=True)
class LeanReply:
    status: int
    body: bytes
    #: the exact Content-Type value (nodes/common/http.py: never a charset parameter)
    content_type: str


LeanHandler = Callable[[LeanRequest], Awaitable[LeanReply]]


def lean_http_wanted(environ: dict[str, str] | None = None) -> bool:
    return switched_on(ENV_LEAN_HTTP, environ)


class LeanRoutes:
    """The routes a :class:`LeanHttpFront` answers itself, and the limits it keeps."""

    def __init__(self, post: Mapping[str, LeanHandler], *, max_body: int, limits: ServerLimits,
                 budget: BodyBudget, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self.post = dict(post)
        self.max_body = max_body
        self.limits = limits
        self.budget = budget
        self.on_error = on_error
        #: requests answered here, and connections handed over to aiohttp (admin state, tests)
        self.answered = 0
        self.handed_over = 0

    def front(self, fallback: Callable[[], asyncio.Protocol]) -> LeanHttpFront:
        """The protocol of one new connection; ``fallback()`` makes aiohttp's for a hand-over."""
        return LeanHttpFront(self, fallback)


class _Head:
    """httptools callbacks collecting one request head."""

    __slots__ = ("url", "headers", "complete")

    def __init__(self) -> None:
        self.url = b""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.complete = True


@dataclass(frozen=True)
class _Plain:
    """A request head this front answers: its route and body length."""

    path: str
    handler: LeanHandler
    headers: CIMultiDictProxy[str]
    length: int
    keep_alive: bool


_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class _HttpDate:
    """The ``Date`` header value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode("ascii")
        return self._value


_DATE = _HttpDate()


def render(reply: LeanReply, *, close: bool) -> bytes:
    """The HTTP/1.1 answer, head and body, as one byte string."""
    reason = _REASONS.get(reply.status, "Unknown")
    head = (f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n").encode("latin-1")
    head += b"Date: " + _DATE.now() + b"\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + reply.body


class LeanHttpFront(asyncio.Protocol):
    """One connection: plain requests to the lean routes answered here, the rest by aiohttp."""

    def __init__(self, routes: LeanRoutes, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.routes = routes
        self._fallback = fallback
        self.inner: asyncio.Protocol | None = None  # aiohttp's protocol once handed over
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buf = bytearray()
        self._pending: _Plain | None = None  # head parsed, body still arriving
        self._head: _Head | None = None  # the head being read, and its parser
        self._parser: httptools.HttpRequestParser | None = None
        self._fed = 0  # bytes of the buffer the parser has seen
        self._reserved = 0
        self._busy = False  # a request is being answered
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None  # the answer being made

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) and peer else None
        self._arm(self.routes.limits.idle_timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self._buf += data
        if self._busy:
            if len(self._buf) > MAX_BUFFERED_BYTES and not self._paused:
                self._paused = True
                self._transport.pause_reading()  # type: ignore[union-attr]
            return
        self._next()

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        self._transport = None
        if self.inner is not None:
            self.inner.connection_lost(exc)

    # --- reading ---------------------------------------------------------------------------------
    def _next(self) -> None:
        """Read the buffered requests until one is being answered, one is incomplete, or the
        connection went to aiohttp."""
        while not self._busy and self.inner is None and self._transport is not None and self._buf:
            if self._pending is None:
                end = self._read_head()
                if end is None:
                    return  # the head is still arriving (under the idle deadline), or handed over
                plain = self._plain()
                if plain is None or not self._reserve(plain.length):
                    self._hand_over()
                    return
                del self._buf[:end]
                self._pending = plain
                self._arm(self.routes.limits.body_timeout, self._body_late)
            plain = self._pending
            if len(self._buf) < plain.length:
                return  # the body is still arriving (under the body deadline)
            body = bytes(self._buf[:plain.length])
            del self._buf[:plain.length]
            self._pending = None
            self._disarm()
            self._busy = True
            # kept: the loop holds only a weak reference to a task
            self._task = asyncio.get_running_loop().create_task(self._answer(plain, body))

    def _read_head(self) -> int | None:
        """Feed the head's bytes that arrived to its parser; the head's end in the buffer once
        it is complete. None while it is incomplete, and after handing the connection over as
        soon as the bytes cannot be a head that llhttp accepts (aiohttp answers those at once)."""
        if self._head is None:
            self._head = _Head()
            self._parser = httptools.HttpRequestParser(self._head)
            self._fed = 0
        assert self._parser is not None
        end = self._buf.find(b"\r\n\r\n", max(0, self._fed - 3), MAX_HEAD_BYTES)
        upto = end + 4 if end >= 0 else min(len(self._buf), MAX_HEAD_BYTES)
        try:
            self._parser.feed_data(bytes(self._buf[self._fed:upto]))
        except httptools.HttpParserError:  # the upgrade error is a subclass
            self._hand_over()
            return None
        self._fed = upto
        if end < 0:
            # a head that ended without CR LF CR LF (bare LF lines), or one too long: aiohttp's
            if self._head.complete or len(self._buf) >= MAX_HEAD_BYTES:
                self._hand_over()
            return None
        return end + 4

    def _plain(self) -> _Plain | None:
        """The route and body length of the head just read, or None where aiohttp must answer
        the request."""
        h, parser = self._head, self._parser
        self._head = self._parser = None
        assert h is not None and parser is not None
        if not h.complete or parser.get_method() != b"POST" or parser.get_http_version() != "1.1":
            return None
        handler = self.routes.post.get(h.url.decode("latin-1"))
        lengths = h.headers.getall("Content-Length", [])
        if handler is None or len(lengths) != 1 or not lengths[0].isdigit() or any(
                name in h.headers for name in ("Transfer-Encoding", "Expect", "Upgrade")):
            return None
        length = int(lengths[0])
        if length > self.routes.max_body:
            return None
        return _Plain(h.url.decode("latin-1"), handler, CIMultiDictProxy(h.headers), length,
                      parser.should_keep_alive())

    def _reserve(self, n: int) -> bool:
        if not self.routes.budget.reserve(n):
            return False
        self._reserved = n
        return True

    def _release(self) -> None:
        if self._reserved:
            self.routes.budget.release(self._reserved)
            self._reserved = 0

    # --- answering -------------------------------------------------------------------------------
    async def _answer(self, plain: _Plain, body: bytes) -> None:
        try:
            reply = await plain.handler(LeanRequest(plain.path, plain.headers, body, self._remote))
        except Exception as e:  # noqa: BLE001 - answered 500, as aiohttp answers a handler's error
            if self.routes.on_error is not None:
                self.routes.on_error(plain.path, e)
            reply = LeanReply(500, b"500 Internal Server Error\n\nServer got itself in trouble",
                              "text/plain")
        finally:
            self._release()
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the client went away: nothing to answer to
        self.routes.answered += 1
        transport.write(render(reply, close=not plain.keep_alive))
        if not plain.keep_alive:
            transport.close()
            return
        self._busy = False
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._arm(self.routes.limits.idle_timeout, self._idle)
        self._next()

    # --- handing over ----------------------------------------------------------------------------
    def _hand_over(self) -> None:
        """aiohttp's protocol takes the connection from the first byte of the unread request."""
        self._disarm()
        self._release()
        self._head = self._parser = None
        self.routes.handed_over += 1
        inner = self._fallback()
        self.inner = inner
        transport = self._transport
        assert transport is not None
        if self._paused:
            self._paused = False
            transport.resume_reading()
        inner.connection_made(transport)
        data, self._buf = bytes(self._buf), bytearray()
        if data:
            inner.data_received(data)

    # --- deadlines -------------------------------------------------------------------------------
    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        """No complete request head within the idle deadline: close, as aiohttp's keep-alive
        timer does."""
        self._timer = None
        if self._transport is not None:
            self._transport.close()

    def _body_late(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        limit = self.routes.limits.body_timeout
        self._transport.write(render(LeanReply(
            408, f"Request Timeout: body not received within {limit:g} s".encode(), "text/plain"),
            close=True))
        self._transport.close()
