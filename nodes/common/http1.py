"""A small HTTP/1.1 client for node→node POSTs: pooled keep-alive connections, one write per
request, responses parsed by httptools (llhttp, the parser uvloop's authors maintain).

Why not aiohttp's ``ClientSession`` here: a node's peer traffic is short POSTs (swarm fan-out,
replication pushes, onion relays) to a handful of peers, and per request aiohttp builds a
request and response object graph, tracing signals, a timer handle and a connector round trip
— a few hundred µs of CPython per request on each of the nodes a store touches
(docs/nodes.md, "Performance"). This client does only what those requests need: ``POST`` with a
byte body to ``host:port`` (TLS or plain TCP), an answer read whole (``Content-Length``,
chunked or until close; at most :data:`MAX_ANSWER_BYTES`), connections reused while the server
keeps them alive (and for at most :data:`MAX_IDLE_S` idle). No redirects, cookies, proxies,
compression or ``Expect: 100-continue``.

Errors: a connection that cannot be made, breaks, or answers something that is not HTTP raises
:class:`PeerHttpError` (an ``OSError``); ``timeout`` (seconds, the whole request, connecting
included) raises ``TimeoutError``. A connection whose request failed, timed out or was cancelled
is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import httptools

#: idle connections kept per (host, port); more in flight at once are opened and then closed
MAX_IDLE_PER_HOST = 32
#: a connection idle longer is not reused but closed: below the servers' idle deadline (our
#: nodes close keep-alive connections idle for 15 s, ServerLimits.idle_timeout), so that a
#: request is not sent on a connection the server is closing at that moment
MAX_IDLE_S = 10.0
#: the largest answer body read (a larger one fails the request with PeerHttpError): far above
#: any answer a node gives; a peer that sends more is broken or hostile
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class PeerHttpError(OSError):
    """The request failed below HTTP: no connection, connection lost, or an unparsable answer."""


@dataclass
class HttpAnswer:
    status: int
    #: header names in lower case (a repeated header keeps its last value)
    headers: dict[str, str]
    body: bytes


@dataclass
class _Parsing:
    """The answer being read on a connection."""

    waiter: asyncio.Future[HttpAnswer]
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    #: set once the status line and headers are read
    status: int | None = None
    size: int = 0  # body bytes so far


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time."""

    def __init__(self, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.max_answer_bytes = max_answer_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0  # loop time when it last went back to the pool
        self._parser = httptools.HttpResponseParser(self)
        self._current: _Parsing | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        current, self._current = self._current, None
        if current is None or current.waiter.done():
            return
        if current.status is not None and exc is None and not (
                {"content-length", "transfer-encoding"} & current.headers.keys()):
            # an answer without a length ends with its connection (RFC 9112, 6.3)
            current.waiter.set_result(HttpAnswer(current.status, current.headers, b"".join(current.chunks)))
        else:
            current.waiter.set_exception(
                PeerHttpError(f"connection closed before a complete answer ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        current = self._current
        if current is None:  # nothing asked: the server is not speaking HTTP/1.1 to us
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            if not current.waiter.done():
                current.waiter.set_exception(PeerHttpError(f"unparsable HTTP answer: {e}"))
            self.close()

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        current = self._current
        assert current is not None
        if current.waiter.done():  # failed already (too large): the rest is not kept
            return
        current.size += len(body)
        if current.size > self.max_answer_bytes:
            current.waiter.set_exception(
                PeerHttpError(f"answer body larger than {self.max_answer_bytes} bytes"))
            current.chunks.clear()
            self.close()
            return
        current.chunks.append(body)

    def on_message_complete(self) -> None:
        current, self._current = self._current, None
        assert current is not None
        self.keep_alive = self._parser.should_keep_alive()
        if not current.waiter.done():
            current.waiter.set_result(HttpAnswer(self._parser.get_status_code(), current.headers,
                                                 b"".join(current.chunks)))

    # -- use --
    def send(self, request: bytes) -> asyncio.Future[HttpAnswer]:
        assert self.transport is not None and self._current is None
        waiter: asyncio.Future[HttpAnswer] = asyncio.get_running_loop().create_future()
        self._current = _Parsing(waiter)
        self.keep_alive = False
        self.transport.write(request)
        return waiter

    @property
    def reusable(self) -> bool:
        return (not self.closed and self.keep_alive and self._current is None
                and self.transport is not None and not self.transport.is_closing())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[HttpAnswer]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no complete answer in time"))


class Http1Client:
    """POSTs to ``host:port`` over pooled keep-alive HTTP/1.1 connections (TLS with
    ``ssl_context``, plain TCP without)."""

    def __init__(self, ssl_context: ssl.SSLContext | None, max_idle_per_host: int = MAX_IDLE_PER_HOST,
                 max_idle_s: float = MAX_IDLE_S, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.ssl_context = ssl_context
        self.max_idle_per_host = max_idle_per_host
        self.max_idle_s = max_idle_s
        self.max_answer_bytes = max_answer_bytes
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        #: requests started and connections opened (for the node's admin state and the tests)
        self.requests = 0
        self.connections_opened = 0

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = self.max_answer_bytes
        try:
            if self.ssl_context is None:
                _, conn = await loop.create_connection(lambda: _Connection(limit), host, port)
            else:
                _, conn = await loop.create_connection(lambda: _Connection(limit), host, port,
                                                       ssl=self.ssl_context, server_hostname="")
        except OSError as e:
            raise PeerHttpError(f"cannot connect to {host}:{port}: {e}") from e
        except ssl.SSLError as e:  # not an OSError subclass on every path
            raise PeerHttpError(f"TLS with {host}:{port} failed: {e}") from e
        self.connections_opened += 1
        self._all.add(conn)
        return conn

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest = asyncio.get_running_loop().time() - self.max_idle_s
        while idle:
            conn = idle.pop()  # the most recently used first
            if conn.reusable and conn.idle_since >= oldest:
                return conn
            conn.close()
            self._all.discard(conn)
        return None

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if conn.reusable and len(idle) < self.max_idle_per_host:
            conn.idle_since = asyncio.get_running_loop().time()
            idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)

    def idle(self, host: str, port: int) -> int:
        """How many kept connections to ``host:port`` could serve a request now."""
        oldest = asyncio.get_running_loop().time() - self.max_idle_s
        return sum(c.reusable and c.idle_since >= oldest for c in self._idle.get((host, port), ()))

    async def post(self, host: str, port: int, path: str, body: bytes,
                   headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> HttpAnswer:
        """POST ``body`` to ``path``; the whole answer, or PeerHttpError / TimeoutError."""
        self.requests += 1
        head = [f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"]
        if headers:
            head.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        key = (host, port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn: _Connection | None = None
        done = False
        try:
            conn = self._take_idle(key)
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(host, port)
            waiter = conn.send(request)
            # a plain timer rather than asyncio.timeout: the answer is one future, and this is
            # the hot path of every fan-out and relay
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                answer = await waiter
            finally:
                timer.cancel()
            done = True
            return answer
        finally:
            if conn is not None:
                if done:
                    self._release(key, conn)
                else:  # failed, timed out or cancelled mid-request: the answer may still come
                    conn.close()
                    self._all.discard(conn)

    async def close(self) -> None:
        """Close every connection (idle or in use)."""
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
