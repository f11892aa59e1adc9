"""What one client can hold on the seed's and a storage node's HTTP servers (issue 12, finding 5):
half-sent request heads and idle keep-alive connections are closed, bodies have a deadline and an
in-flight budget, connections beyond the cap get a 503 while the others keep being served, and
asyncio's own errors are logged at a bounded rate."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodes.common.limits import RateLimitedLoopErrors, ServerLimits
from nodes.common.logs import JsonLogger
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import SeedServer, ServerConfig
from nodes.seed.registry import SeedConfig, SeedCore
from nodes.snode.config import Config
from nodes.snode.server import Node
from nodes.snode.storage import Storage
from nodes.snode.testing import node_identity

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"
LIMITS = ServerLimits(idle_timeout=0.5, body_timeout=0.5, max_connections=3, max_inflight_body_bytes=1000)


@pytest.fixture
async def seed_port(tmp_path: Path) -> AsyncIterator[int]:
    logger = JsonLogger("seed", stream=io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="unit", params=SwarmParams(1, 0, 1)), clock=time.time, logger=logger)
    server = SeedServer(core, ServerConfig(host=HOST, port=0, https_port=0, data_dir=tmp_path, admin_token="t",
                                           limits=LIMITS), logger, rng_factory=lambda: random.Random(7))
    await server.start()
    assert server._runner is not None
    try:
        yield int(server._runner.addresses[0][1])
    finally:
        await server.stop()


@pytest.fixture
async def node_port(tmp_path: Path) -> AsyncIterator[int]:
    ident = node_identity("limits")
    cfg = Config(ip=HOST, public_ip=HOST, port=1, admin_port=1, lmq_port=22020, seed_url="http://127.0.0.1:9",
                 data_dir=tmp_path / "sn", key_seed_hex=ident.seed_hex)
    node = Node(cfg, log=JsonLogger("sn", stream=io.StringIO()))
    node.limits = LIMITS
    node.storage = Storage(tmp_path / "sn.db")
    node._build_handlers()
    app = node.make_storage_app()
    await node._listen(app, HOST, 0, None, "storage", lean=node.lean)
    try:
        yield int(node._runners[0].addresses[0][1])
    finally:
        for r in node._runners:
            await r.cleanup()
        node.storage.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it stays open."""
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {seconds} s")


async def request(port: int, raw: bytes, *, read_for: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_for)
    finally:
        writer.close()


GET_STATS = b"GET /get_stats/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
RPC = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "get_n_service_nodes", "params": {}}).encode()
SEED_RPC = (b"POST /json_rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
            + str(len(RPC)).encode() + b"\r\n\r\n" + RPC)


@pytest.mark.parametrize("which", ["seed", "node"])
async def test_half_sent_request_head_is_closed(which: str, request_fixture: dict[str, int]) -> None:
    port = request_fixture[which]
    reader, writer = await asyncio.open_connection(HOST, port)
    t0 = time.monotonic()
    writer.write(b"POST /json_rpc HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finishes the head
    await writer.drain()
    await closed_within(reader, 3.0)
    assert time.monotonic() - t0 >= LIMITS.idle_timeout * 0.8
    writer.close()


@pytest.mark.parametrize("which", ["seed", "node"])
async def test_idle_keep_alive_connection_is_closed(which: str, request_fixture: dict[str, int]) -> None:
    port = request_fixture[which]
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"GET /get_stats/v1 HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive by default in 1.1
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.split(b" ", 2)[1] in (b"200", b"404")
    await closed_within(reader, 3.0)
    writer.close()


async def test_slow_body_gets_408(request_fixture: dict[str, int]) -> None:
    answer = await request(request_fixture["seed"], b"POST /json_rpc HTTP/1.1\r\nHost: x\r\n"
                                                     b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")
    assert answer.startswith(b"HTTP/1.1 408") and b"body not received within 0.5 s" in answer


async def test_in_flight_body_bytes_are_capped(request_fixture: dict[str, int]) -> None:
    port = request_fixture["node"]
    # one client holds 600 bytes of body in flight (sending it slowly) ...
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"POST /ping_test/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\nxx")
    await writer.drain()
    await asyncio.sleep(0.1)
    # ... so another 600 would exceed the 1000-byte budget: 503 at once
    answer = await request(port, b"POST /ping_test/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 b"Content-Length: 600\r\n\r\n" + b"y" * 600, read_for=2.0)
    assert answer.startswith(b"HTTP/1.1 503") and b"limit 1000" in answer, answer[:300]
    writer.close()
    await asyncio.sleep(LIMITS.body_timeout + 0.2)  # the slow one timed out and gave its bytes back
    answer = await request(port, b"POST /ping_test/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 b"Content-Length: 600\r\n\r\n" + b"y" * 600)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


@pytest.mark.parametrize("which", ["seed", "node"])
async def test_connections_beyond_the_cap_get_503_and_others_are_served(
        which: str, request_fixture: dict[str, int]) -> None:
    port = request_fixture[which]
    held = [await asyncio.open_connection(HOST, port) for _ in range(LIMITS.max_connections)]
    try:
        answer = await request(port, GET_STATS, read_for=3.0)
        assert answer.startswith(b"HTTP/1.1 503") and b"limit 3" in answer, answer[:300]
        # the held connections are still served
        _, w0 = held[0]
        r0 = held[0][0]
        w0.write(GET_STATS if which == "node" else SEED_RPC)
        await w0.drain()
        assert (await asyncio.wait_for(r0.read(), 3)).startswith(b"HTTP/1.1 200")
    finally:
        for _, w in held:
            w.close()
    await asyncio.sleep(0.1)
    answer = await request(port, GET_STATS if which == "node" else SEED_RPC)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]  # a freed slot serves again


@pytest.fixture
def request_fixture(seed_port: int, node_port: int) -> dict[str, int]:
    return {"seed": seed_port, "node": node_port}


def test_loop_errors_are_rate_limited() -> None:
    stream = io.StringIO()
    now = [0.0]
    handler = RateLimitedLoopErrors(JsonLogger("sn", stream=stream), per_second=5, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        for _ in range(10_000):  # e.g. accept() failing with EMFILE in a tight loop
            handler(loop, {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")})
        now[0] = 1.5
        handler(loop, {"message": "later"})
    finally:
        loop.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records].count("loop_error") == 6  # 5 in the first second, 1 after
    suppressed = [r for r in records if r["event"] == "loop_errors_suppressed"]
    assert len(suppressed) == 1 and suppressed[0]["count"] == 9_995
    assert len(stream.getvalue()) < 5_000  # not 10,000 tracebacks




async def test_failed_tls_handshakes_give_their_slot_back(tmp_path: Path) -> None:
    """asyncio never reports a connection whose TLS handshake failed to the application protocol:
    the cap must still count it as closed, or a port scanner would fill it for good."""
    import gc
    import ssl

    from aiohttp import web

    from nodes.common.http import start_site
    from nodes.common.tls import server_context_for

    ctx: ssl.SSLContext = server_context_for(tmp_path / "tls", HOST, "limits")
    runner = web.AppRunner(web.Application(), **LIMITS.runner_kwargs())
    await runner.setup()
    site = await start_site(runner, HOST, 0, what="test port", ssl_context=ctx, limits=LIMITS)
    try:
        port = int(runner.addresses[0][1])
        for _ in range(3 * LIMITS.max_connections):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)
            writer.close()
        for _ in range(50):
            gc.collect()
            if site.cap.open == 0:
                break
            await asyncio.sleep(0.05)
        assert site.cap.open == 0
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx)
        writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 404")  # still served
        writer.close()
    finally:
        await runner.cleanup()
