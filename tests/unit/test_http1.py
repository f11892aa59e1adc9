"""The node→node HTTP/1.1 client (nodes/common/http1.py) against a real aiohttp server: answers,
keep-alive reuse, timeouts, closed and broken connections, TLS, chunked answers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nodes.common.http1 import Http1Client, PeerHttpError
from nodes.common.tls import insecure_client_context, self_signed_certificate

pytestmark = pytest.mark.unit


class Server:
    """An aiohttp server whose handlers record the client connection each request came on."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.peers: list[object] = []
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/echo", self.echo)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/close", self.close_after)
        app.router.add_post("/chunked", self.chunked)
        self.server = TestServer(app, host="127.0.0.1")
        self.ssl_context = ssl_context

    async def start(self) -> None:
        await self.server.start_server(ssl=self.ssl_context)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def _seen(self, request: web.Request) -> None:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = await request.read()
        return web.Response(status=201, body=body[::-1], content_type="application/json",
                            headers={"X-Got": request.headers.get("X-Test", ""),
                                     "X-Type": request.headers.get("Content-Type", "")})

    async def slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await self.release.wait()
        return web.Response(text="late")

    async def close_after(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text="bye", headers={"Connection": "close"})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await resp.write(part)
        await resp.write_eof()
        return resp


@pytest.fixture
async def server():
    s = Server()
    await s.start()
    yield s
    s.release.set()
    await s.server.close()


@pytest.fixture
async def client():
    c = Http1Client(None)
    yield c
    await c.close()


async def test_post_answers_status_headers_and_body(server, client):
    a = await client.post("127.0.0.1", server.port, "/echo", b'{"a":1}',
                          {"X-Test": "yes", "Content-Type": "application/json"}, timeout=5)
    assert a.status == 201 and a.body == b'}1:"a"{'
    assert a.headers["x-got"] == "yes" and a.headers["x-type"] == "application/json"
    assert a.headers["content-type"] == "application/json"


async def test_sequential_requests_reuse_one_connection(server, client):
    for i in range(5):
        assert (await client.post("127.0.0.1", server.port, "/echo", str(i).encode(), timeout=5)).body \
            == str(i).encode()
    assert client.connections_opened == 1 and client.requests == 5
    assert client.idle("127.0.0.1", server.port) == 1
    assert len(set(server.peers)) == 1


async def test_concurrent_requests_each_get_their_own_answer(server, client):
    bodies = [f"body {i}".encode() for i in range(20)]
    answers = await asyncio.gather(*(client.post("127.0.0.1", server.port, "/echo", b, timeout=5)
                                     for b in bodies))
    assert [a.body for a in answers] == [b[::-1] for b in bodies]
    opened = client.connections_opened
    assert 1 <= opened <= 20
    # the connections are kept: a second round opens none
    await asyncio.gather(*(client.post("127.0.0.1", server.port, "/echo", b, timeout=5) for b in bodies))
    assert client.connections_opened == opened


async def test_timeout_closes_the_connection_and_the_next_request_opens_a_new_one(server, client):
    await client.post("127.0.0.1", server.port, "/echo", b"x", timeout=5)
    with pytest.raises(TimeoutError):
        await client.post("127.0.0.1", server.port, "/slow", b"x", timeout=0.2)
    server.release.set()
    a = await client.post("127.0.0.1", server.port, "/echo", b"after", timeout=5)
    assert a.body == b"retfa"
    assert client.connections_opened == 2  # the one that timed out was not reused
    assert server.peers[0] == server.peers[1] != server.peers[2]


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(server, client):
    task = asyncio.ensure_future(client.post("127.0.0.1", server.port, "/slow", b"x", timeout=5))
    while not server.peers:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.release.set()
    assert (await client.post("127.0.0.1", server.port, "/echo", b"ok", timeout=5)).body == b"ko"
    assert client.connections_opened == 2


async def test_a_connection_idle_too_long_is_closed_not_reused(server):
    c = Http1Client(None, max_idle_s=0.05)
    try:
        await c.post("127.0.0.1", server.port, "/echo", b"1", timeout=5)
        assert c.idle("127.0.0.1", server.port) == 1
        await asyncio.sleep(0.1)
        assert c.idle("127.0.0.1", server.port) == 0
        await c.post("127.0.0.1", server.port, "/echo", b"2", timeout=5)
        assert c.connections_opened == 2 and server.peers[0] != server.peers[1]
    finally:
        await c.close()


async def test_connection_close_answer_is_not_reused(server, client):
    assert (await client.post("127.0.0.1", server.port, "/close", b"", timeout=5)).body == b"bye"
    assert (await client.post("127.0.0.1", server.port, "/echo", b"ab", timeout=5)).body == b"ba"
    assert client.connections_opened == 2


async def test_an_answer_over_the_size_limit_fails_and_its_connection_is_closed(server):
    c = Http1Client(None, max_answer_bytes=1000)
    try:
        assert (await c.post("127.0.0.1", server.port, "/echo", b"a" * 1000, timeout=5)).body == b"a" * 1000
        with pytest.raises(PeerHttpError, match="larger than 1000 bytes"):
            await c.post("127.0.0.1", server.port, "/echo", b"a" * 1001, timeout=5)
        assert (await c.post("127.0.0.1", server.port, "/echo", b"ok", timeout=5)).body == b"ko"
        assert c.connections_opened == 2  # the one that answered too much was closed
    finally:
        await c.close()


async def test_chunked_answer_is_read_whole(server, client):
    a = await client.post("127.0.0.1", server.port, "/chunked", b"", timeout=5)
    assert a.status == 200 and a.body == b"one,two,three"
    assert (await client.post("127.0.0.1", server.port, "/echo", b"ab", timeout=5)).body == b"ba"
    assert client.connections_opened == 1


async def test_an_idle_connection_the_server_closed_is_replaced(client):
    s = Server()
    await s.start()
    port = s.port
    try:
        await client.post("127.0.0.1", port, "/echo", b"1", timeout=5)
    finally:
        await s.server.close()  # closes the idle keep-alive connection
    s2 = Server()
    s2.server = TestServer(s2.server.app, host="127.0.0.1", port=port)
    await s2.start()
    try:
        for _ in range(500):  # the client sees the close once its loop has read the EOF
            if client.idle("127.0.0.1", port) == 0:
                break
            await asyncio.sleep(0.01)
        assert client.idle("127.0.0.1", port) == 0
        assert (await client.post("127.0.0.1", port, "/echo", b"12", timeout=5)).body == b"21"
        assert client.connections_opened == 2
    finally:
        await s2.server.close()


async def test_refused_connection_raises_peer_http_error(client):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PeerHttpError) as e:
        await client.post("127.0.0.1", port, "/echo", b"x", timeout=5)
    assert isinstance(e.value, OSError) and f"127.0.0.1:{port}" in str(e.value)


async def test_an_answer_that_is_not_http_raises_peer_http_error(client):
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(PeerHttpError):
            await client.post("127.0.0.1", port, "/echo", b"x", timeout=5)
    finally:
        srv.close()
        await srv.wait_closed()


async def test_an_answer_without_length_ends_with_its_connection(client):
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\nx")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")
        writer.close()

    srv = await asyncio.start_server(until_close, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        a = await client.post("127.0.0.1", port, "/", b"x", timeout=5)
        assert (a.status, a.body, a.headers["content-type"]) == (200, b"all of it", "text/plain")
        assert client.idle("127.0.0.1", port) == 0
    finally:
        srv.close()
        await srv.wait_closed()


async def test_tls_with_a_self_signed_certificate(tmp_path: Path):
    cert, key = self_signed_certificate("127.0.0.1", "test node")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    s = Server(ctx)
    await s.start()
    c = Http1Client(insecure_client_context())
    try:
        for body in (b"tls", b"again"):
            assert (await c.post("127.0.0.1", s.port, "/echo", body, timeout=5)).body == body[::-1]
        assert c.connections_opened == 1
        plain = Http1Client(None)  # plain HTTP to a TLS port: no answer it can parse
        try:
            with pytest.raises((PeerHttpError, TimeoutError)):
                await plain.post("127.0.0.1", s.port, "/echo", b"x", timeout=2)
        finally:
            await plain.close()
    finally:
        await c.close()
        await s.server.close()
