"""The lean front of a storage port (nodes/common/lean_http.py), on a real listening socket in
front of a real aiohttp app: which requests it answers itself and which go to aiohttp, the order
of answers on one connection, and the limits it keeps (idle and body deadlines, the shared body
budget), over plain TCP and over TLS with the nodes' own HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.common.http import start_site
from nodes.common.http1 import Http1Client
from nodes.common.lean_http import LeanReply, LeanRequest, LeanRoutes, lean_http_wanted, render
from nodes.common.limits import BodyBudget, ServerLimits, limits_middleware
from nodes.common.tls import insecure_client_context, server_context_for

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"
LIMITS = ServerLimits(idle_timeout=0.5, body_timeout=0.5, max_connections=20, max_inflight_body_bytes=1000)
MAX_BODY = 800


@dataclass
class Front:
    port: int
    routes: LeanRoutes
    budget: BodyBudget
    errors: list[str] = field(default_factory=list)
    #: seconds the lean handler waits before answering, by request body
    slow: dict[bytes, float] = field(default_factory=dict)


async def _start(tmp: Path, tls: bool) -> tuple[web.AppRunner, Front]:
    budget = BodyBudget(LIMITS.max_inflight_body_bytes)

    async def aiohttp_echo(request: web.Request) -> web.Response:
        return web.Response(body=b"aiohttp:" + await request.read(), content_type="text/plain")

    app = web.Application(middlewares=[limits_middleware(LIMITS, 900, budget)])
    app.router.add_post("/lean", aiohttp_echo)
    app.router.add_post("/other", aiohttp_echo)
    app.router.add_get("/other", aiohttp_echo)
    front: Front

    async def lean_echo(request: LeanRequest) -> LeanReply:
        await asyncio.sleep(front.slow.get(request.body, 0))
        if request.body == b"boom":
            raise RuntimeError("the handler failed")
        seen = f"lean:{request.remote}:{request.headers.get('x-Tag', '')}:".encode()
        return LeanReply(201, seen + request.body, "application/json")

    routes = LeanRoutes({"/lean": lean_echo}, max_body=MAX_BODY, limits=LIMITS, budget=budget,
                        on_error=lambda path, e: front.errors.append(f"{path}: {e}"))
    runner = web.AppRunner(app, access_log=None, **LIMITS.runner_kwargs())
    await runner.setup()
    ctx = server_context_for(tmp, HOST, "lean-test") if tls else None
    await start_site(runner, HOST, 0, what="test port", ssl_context=ctx, limits=LIMITS, lean=routes)
    front = Front(int(runner.addresses[0][1]), routes, budget)
    return runner, front


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[Front]:
    runner, f = await _start(tmp_path, tls=False)
    try:
        yield f
    finally:
        await runner.cleanup()


def post(path: str, body: bytes, *extra: bytes) -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in extra)
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    if head.startswith(b"HTTP/1.1 100 "):  # aiohttp's answer to Expect: 100-continue
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return int(lines[0].split(" ")[1]), headers, body


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {seconds} s")


async def test_plain_posts_are_answered_by_the_front_on_one_connection(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    for i in range(3):
        writer.write(post("/lean", b"hello %d" % i, b"X-Tag: t%d" % i))
        status, headers, body = await read_answer(reader)
        assert (status, body) == (201, b"lean:127.0.0.1:t%d:hello %d" % (i, i))
        assert headers["content-type"] == "application/json"
        assert headers["date"].endswith("GMT") and "connection" not in headers
    writer.close()
    assert (front.routes.answered, front.routes.handed_over) == (3, 0)
    assert front.budget.held == 0


async def test_another_route_hands_the_connection_to_aiohttp_from_that_request_on(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"one"))
    assert (await read_answer(reader))[2] == b"lean:127.0.0.1::one"
    writer.write(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_answer(reader))[:3:2] == (200, b"aiohttp:")
    # the connection stays with aiohttp: the lean route is aiohttp's now
    writer.write(post("/lean", b"two"))
    assert (await read_answer(reader))[2] == b"aiohttp:two"
    writer.close()
    assert (front.routes.answered, front.routes.handed_over) == (1, 1)


async def test_pipelined_requests_are_answered_in_order(front: Front) -> None:
    front.slow[b"first"] = 0.2  # the first answer is slow: the others must still come after it
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"first") + post("/lean", b"second") + post("/other", b"third")
                 + post("/lean", b"fourth"))
    bodies = [(await read_answer(reader))[2] for _ in range(4)]
    assert bodies == [b"lean:127.0.0.1::first", b"lean:127.0.0.1::second", b"aiohttp:third",
                      b"aiohttp:fourth"]
    writer.close()


async def test_garbage_is_handed_to_aiohttp_at_once_and_a_request_before_it_is_answered(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(b"\x00")  # cannot begin a request: aiohttp answers without waiting for more
    assert (await read_answer(reader))[0] == 400
    writer.close()
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"ok") + b"\x00")  # one read: the request, then garbage
    assert (await read_answer(reader))[:3:2] == (201, b"lean:127.0.0.1::ok")
    assert (await read_answer(reader))[0] == 400
    writer.close()
    assert (front.routes.answered, front.routes.handed_over) == (1, 2)


@pytest.mark.parametrize("raw, expected_status", [
    (b"POST /lean HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200),
    (post("/lean", b"x" * (MAX_BODY + 1)), 200),  # over the front's limit: aiohttp's to answer
    (post("/lean?q=1", b"abc"), 200),
    (post("/lean", b"abc").replace(b"HTTP/1.1", b"HTTP/1.0", 1), 200),
    (post("/lean", b"abc", b"Expect: 100-continue"), 200),
    (post("/lean", b"abc", b"Content-Length: 3"), 400),  # two Content-Lengths: aiohttp refuses it
    (post("/lean", b"abc", b"Content-Length: 4"), 400),
    (b"POST /lean HTTP/1.1\r\nHost: x\r\nBad Header: y\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"PUT /lean HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
])
async def test_requests_that_are_not_plain_get_aiohttps_answer(front: Front, raw: bytes,
                                                                expected_status: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(raw)
    status, _, body = await read_answer(reader)
    writer.close()
    assert status == expected_status
    assert not body.startswith(b"lean:")
    assert (front.routes.answered, front.routes.handed_over) == (0, 1)


async def test_connection_close_is_answered_and_closed(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"bye", b"Connection: close"))
    answer = await closed_within(reader, 3)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n") and b"\r\nConnection: close\r\n" in answer
    assert answer.endswith(b"lean:127.0.0.1::bye")


async def test_a_body_that_does_not_arrive_gets_408_and_gives_its_budget_back(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    t0 = time.monotonic()
    writer.write(post("/lean", b"x" * 600)[:-590])  # the head and 10 of 600 bytes
    await writer.drain()
    await asyncio.sleep(0.1)
    assert front.budget.held == 600
    answer = await closed_within(reader, 3)
    writer.close()
    assert time.monotonic() - t0 >= LIMITS.body_timeout * 0.8
    assert answer.startswith(b"HTTP/1.1 408") and b"body not received within 0.5 s" in answer
    assert front.budget.held == 0


async def test_idle_and_half_sent_heads_are_closed(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"a"))
    await read_answer(reader)
    t0 = time.monotonic()
    assert await closed_within(reader, 3) == b""  # idle after an answer
    assert time.monotonic() - t0 >= LIMITS.idle_timeout * 0.8
    writer.close()
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(b"POST /lean HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # a head that never ends
    assert await closed_within(reader, 3) == b""
    writer.close()
    assert front.routes.handed_over == 0


async def test_the_body_budget_is_shared_with_aiohttp(front: Front) -> None:
    # one client holds 600 of the 1000 bytes on the lean route ...
    _, holder = await asyncio.open_connection(HOST, front.port)
    holder.write(post("/lean", b"x" * 600)[:-500])
    await holder.drain()
    await asyncio.sleep(0.1)
    # ... so another 600 cannot be held by the front: aiohttp's middleware answers 503
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"y" * 600))
    status, _, body = await read_answer(reader)
    assert status == 503 and b"limit 1000" in body
    writer.close()
    holder.close()
    await asyncio.sleep(0.1)
    assert front.budget.held == 0
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"y" * 600))
    assert (await read_answer(reader))[0] == 201
    writer.close()


async def test_a_failing_handler_is_answered_500_and_the_connection_serves_on(front: Front) -> None:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"boom"))
    assert (await read_answer(reader))[0] == 500
    writer.write(post("/lean", b"after"))
    assert (await read_answer(reader))[2] == b"lean:127.0.0.1::after"
    writer.close()
    assert front.errors == ["/lean: the handler failed"]


async def test_a_client_gone_before_its_answer_costs_nothing(front: Front) -> None:
    front.slow[b"slow"] = 0.3
    reader, writer = await asyncio.open_connection(HOST, front.port)
    writer.write(post("/lean", b"slow"))
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.4)
    assert front.budget.held == 0 and front.routes.answered == 0 and not front.errors


async def test_over_tls_with_the_nodes_http_client(tmp_path: Path) -> None:
    runner, f = await _start(tmp_path, tls=True)
    client = Http1Client(insecure_client_context())
    try:
        answers = await asyncio.gather(*(client.post(HOST, f.port, "/lean", b"n%d" % i, timeout=5)
                                         for i in range(20)))
        assert sorted(a.body for a in answers) == sorted(b"lean:127.0.0.1::n%d" % i for i in range(20))
        assert {a.status for a in answers} == {201}
        other = await client.post(HOST, f.port, "/other", b"o", timeout=5)
        assert other.body == b"aiohttp:o"
        assert f.routes.answered == 20
        # TLS really is on: plain HTTP gets no answer
        reader, writer = await asyncio.open_connection(HOST, f.port)
        writer.write(post("/lean", b"plain"))
        assert not (await closed_within(reader, 3)).startswith(b"HTTP/1.1")
        writer.close()
        assert f.routes.answered == 20
    finally:
        await client.close()
        await runner.cleanup()


def test_render_is_a_complete_http_answer() -> None:
    raw = render(LeanReply(404, b"nope", "text/plain"), close=True)
    head, body = raw.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 404 Not Found"
    assert b"Content-Type: text/plain" in lines and b"Content-Length: 4" in lines
    assert b"Connection: close" in lines and body == b"nope"


def test_the_front_can_be_switched_off_for_a_comparison() -> None:
    assert lean_http_wanted({}) and lean_http_wanted({"SESSION_TESTNET_LEAN_HTTP": "1"})
    for off in ("0", "false", "No", " off "):
        assert not lean_http_wanted({"SESSION_TESTNET_LEAN_HTTP": off})


# --- the same answers with and without the front ---------------------------------------------------

def _request(method: str, target: str, version: str, body: bytes, length: str | None, chunked: bool,
             extra: list[bytes]) -> bytes:
    head = f"{method} {target} HTTP/{version}\r\nHost: x\r\n".encode() + b"".join(h + b"\r\n" for h in extra)
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n"
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    if length is not None:
        head += b"Content-Length: " + (str(len(body)) if length == "exact" else length).encode() + b"\r\n"
    return head + b"\r\n" + body


raw_requests = st.builds(
    _request,
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "post"]),
    target=st.sampled_from(["/lean", "/lean", "/other", "/lean?x=1", "/nope", "*", "/le an"]),
    version=st.sampled_from(["1.1", "1.1", "1.0", "2"]),
    body=st.binary(max_size=40),
    # never shorter than the body: bytes after a request are the next request, and aiohttp
    # answers 400 to a valid request when what follows it in the same read is not one (the front
    # answers the request and leaves the rest to aiohttp: see nodes/common/lean_http.py)
    length=st.none() | st.sampled_from(["exact", "exact", "-1", "+3", "0x3", "99999999999999999999", " 3"]),
    chunked=st.booleans(),
    extra=st.lists(st.sampled_from([b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue",
                                    b"Content-Length: 99", b"X-Tag: a", b"Bad Header: b", b"\x00: c",
                                    b"Upgrade: websocket"]), max_size=3),
) | st.binary(max_size=60)


async def _first_answer(port: int, raw: bytes, cuts: list[int]) -> tuple[int, bytes] | None:
    """The status and body of the first answer to ``raw`` sent in pieces, or None if the server
    closed without one."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        last = 0
        for cut in sorted({min(c, len(raw)) for c in cuts}) + [len(raw)]:
            writer.write(raw[last:cut])
            await writer.drain()
            last = cut
        try:
            status, _, body = await read_answer(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return status, body
    except TimeoutError:
        return (0, b"no answer within 5 s")
    finally:
        writer.close()


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=raw_requests, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=3))
def test_any_request_gets_the_answer_aiohttp_alone_gives(tmp_path: Path, raw: bytes, cuts: list[int]) -> None:
    """Whatever bytes arrive, in whatever pieces: the first answer with the front is aiohttp's
    own answer to the same request (when the front answers, its handler is aiohttp's)."""

    async def both() -> tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]:
        answers = []
        for lean in (True, False):
            runner, port = await _echo_server(lean)
            try:
                answers.append(await _first_answer(port, raw, cuts))
            finally:
                await runner.cleanup()
        return answers[0], answers[1]

    with_front, alone = asyncio.run(both())
    assert with_front == alone, raw


async def _echo_server(lean: bool) -> tuple[web.AppRunner, int]:
    """The same echo behind the front or aiohttp alone."""
    async def echo(body: bytes, tag: str) -> LeanReply:
        return LeanReply(200, f"{tag}:".encode() + body, "application/json")

    async def aiohttp_echo(request: web.Request) -> web.Response:
        r = await echo(await request.read(), request.headers.get("X-Tag", ""))
        return web.Response(status=r.status, body=r.body, content_type=r.content_type)

    async def lean_echo(request: LeanRequest) -> LeanReply:
        return await echo(request.body, request.headers.get("X-Tag", ""))

    budget = BodyBudget(LIMITS.max_inflight_body_bytes)
    app = web.Application(middlewares=[limits_middleware(LIMITS, 900, budget)])
    app.router.add_post("/lean", aiohttp_echo)
    app.router.add_post("/other", aiohttp_echo)
    routes = LeanRoutes({"/lean": lean_echo}, max_body=MAX_BODY, limits=LIMITS, budget=budget)
    runner = web.AppRunner(app, access_log=None, **LIMITS.runner_kwargs())
    await runner.setup()
    await start_site(runner, HOST, 0, what="test port", limits=LIMITS, lean=routes if lean else None)
    return runner, int(runner.addresses[0][1])
