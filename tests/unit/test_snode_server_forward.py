"""Exit nodes forwarding onion requests to servers (the ``host`` route, docs/fileserver.md):
in-process nodes on 127.0.0.1 test servers and a small onion server beside them."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nacl import bindings

from nodes.common.logs import JsonLogger
from nodes.protocol import onion
from nodes.protocol.onion_server import (
    ServerDestination,
    V4Request,
    V4Response,
    build_server_onion_request,
    decrypt_server_response,
    open_server_request,
)
from nodes.snode.config import Config, ConfigError, parse_args
from nodes.snode.server import Node
from nodes.snode.server_forward import ForwardPolicy, ForwardRefused, parse_networks
from nodes.snode.storage import Storage
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import StoragePortServer, node_identity, seed_entry

pytestmark = pytest.mark.unit


class OnionServer:
    """A v4 onion server: records what the exit node POSTed, answers ``{"echo": <endpoint>}``
    (or sleeps ``delay`` seconds first)."""

    def __init__(self) -> None:
        self.pub, self.sec = bindings.crypto_box_keypair()
        self.posted: list[tuple[str, bytes, dict[str, str]]] = []
        self.requests: list[V4Request] = []
        self.delay = 0.0
        self.app = web.Application()
        self.app.router.add_post("/oxen/v4/lsrpc", self.lsrpc)
        self.server = TestServer(self.app, host="127.0.0.1")

    async def lsrpc(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posted.append((request.remote or "", body, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        req = open_server_request(body, self.sec, self.pub)
        v4 = V4Request.decode(req.payload)
        self.requests.append(v4)
        answer = V4Response(201, {"Content-Type": "application/json"},
                            json.dumps({"echo": v4.endpoint}).encode())
        return web.Response(status=200, body=req.encrypt_reply(answer.encode()),
                            content_type="application/octet-stream")

    def dest(self, host: str = "127.0.0.1", port: int | None = None) -> ServerDestination:
        return ServerDestination(host, self.server.port if port is None else port, self.pub, "http")


async def make_node(tmp: Path, name: str, log: io.StringIO) -> tuple[Node, StoragePortServer]:
    ident = node_identity(name)
    cfg = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, lmq_port=22020,
                 seed_url="http://127.0.0.1:9", data_dir=tmp / name, key_seed_hex=ident.seed_hex,
                 relay_timeout=2.0)
    node = Node(cfg, log=JsonLogger(name, stream=log))
    node.storage = Storage(cfg.data_dir / "storage.db")
    node.peers.scheme = "http"
    node._build_handlers()
    server = StoragePortServer(node)
    await server.start_server()
    return node, server


class Net:
    def __init__(self, guard: tuple[Node, StoragePortServer], exit_: tuple[Node, StoragePortServer],
                 srv: OnionServer, session: aiohttp.ClientSession, exit_log: io.StringIO) -> None:
        self.guard, self.guard_srv = guard
        self.exit, self.exit_srv = exit_
        self.srv = srv
        self.session = session
        self._exit_log = exit_log

    def hops(self) -> list[onion.OnionHop]:
        return [onion.OnionHop(n.identity.ed25519_public, n.identity.x25519_public)
                for n in (self.guard, self.exit)]

    async def post(self, frame: bytes) -> tuple[int, bytes, str]:
        async with self.session.post(f"http://127.0.0.1:{self.guard_srv.port}/onion_req/v2",
                                     data=frame) as r:
            return r.status, await r.read(), r.headers.get("Content-Type", "")

    def exit_log(self) -> str:
        return self._exit_log.getvalue()


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    exit_log = io.StringIO()
    guard = await make_node(tmp_path, "guard", io.StringIO())
    exit_ = await make_node(tmp_path, "exit", exit_log)
    entries = [seed_entry(n.identity, "127.0.0.1", s.port, 0) for n, s in (guard, exit_)]
    for n, _ in (guard, exit_):
        n.set_view(SwarmView.build(n.identity.ed25519_hex, entries, height=1))
    srv = OnionServer()
    await srv.server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield Net(guard, exit_, srv, session, exit_log)
    finally:
        await session.close()
        await srv.server.close()
        for n, s in (guard, exit_):
            await s.close()
            await n.peers.close()
            await n.forwarder.close()
            assert n.storage is not None
            n.storage.close()


@pytest.fixture
def dead_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


# --- forwarding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
async def test_exit_posts_its_layer_to_the_server_and_passes_the_answer_back(net: Net, enc: str) -> None:
    built = build_server_onion_request(net.hops(), net.srv.dest(), V4Request("GET", "/file/12"), enc)
    status, body, ctype = await net.post(built.frame)
    assert status == 200 and ctype == "application/octet-stream"
    resp = decrypt_server_response(built, body)
    assert (resp.code, resp.json()) == (201, {"echo": "/file/12"})
    # what the server got: the exit's whole decrypted layer, its JSON the final route
    remote, posted, headers = net.srv.posted[-1]
    _, meta = onion.decode_frame(posted)
    assert meta["host"] == "127.0.0.1" and meta["target"] == "/oxen/v4/lsrpc"
    assert meta["port"] == net.srv.server.port and meta["protocol"] == "http"
    assert remote == "127.0.0.1"
    # the exit saw a relay to the server, no account; the guard only the exit
    ob = [o for o in net.exit.observations.since(0) if o["channel"] == "onion"][-1]
    assert ob["hop"] == "relay" and ob["accounts"] == [] and ob["status"] == 200
    assert ob["server"] == f"http://127.0.0.1:{net.srv.server.port}/oxen/v4/lsrpc"
    g = [o for o in net.guard.observations.since(0) if o["channel"] == "onion"][-1]
    assert g["next_hop"] == net.exit.identity.ed25519_hex and g["server"] is None


async def test_unreachable_server_is_curls_plain_502(net: Net, dead_port: int) -> None:
    built = build_server_onion_request(net.hops(), net.srv.dest(port=dead_port), V4Request("GET", "/x"))
    status, body, ctype = await net.post(built.frame)
    assert status == 502 and ctype == "text/plain"
    text = body.decode()
    assert text.startswith(f"Failed to connect to 127.0.0.1 port {dead_port} after ")
    assert text.endswith(" ms: Couldn't connect to server")


async def test_slow_server_is_504(net: Net) -> None:
    net.exit.forwarder.timeout = 0.3
    net.srv.delay = 1.0
    built = build_server_onion_request(net.hops(), net.srv.dest(), V4Request("GET", "/x"))
    status, body, _ = await net.post(built.frame)
    assert (status, body) == (504, b"Operation timed out after 300 milliseconds with 0 bytes received")


@pytest.mark.parametrize("host", ["8.8.8.8", "10.0.0.1", "example.org", "::ffff:1.1.1.1"])
async def test_host_outside_the_testnet_is_refused_as_invalid_url(net: Net, host: str) -> None:
    built = build_server_onion_request(net.hops(), net.srv.dest(host=host), V4Request("GET", "/x"))
    status, body, _ = await net.post(built.frame)
    assert status == 200  # the exit's own answer, encrypted with the key of its layer
    assert net.srv.posted == []
    assert "onion_server_refused" in net.exit_log()
    with pytest.raises(onion.OnionError):
        decrypt_server_response(built, body)  # not the server's key
    # it is encrypted with the key of the exit's layer: peel as the nodes did to read it
    g, e = net.guard.identity, net.exit.identity
    relayed = onion.relay_info(onion.peel_layer(built.frame, g.x25519_secret, g.x25519_public)).frame
    layer = onion.peel_layer(relayed, e.x25519_secret, e.x25519_public)
    req = onion.OnionRequest(frame=b"", destination_key=layer.key, enc_type=layer.enc_type)
    assert onion.decrypt_onion_response(req, body) == (400, "Invalid url")


@pytest.mark.parametrize("meta,text", [
    ({"host": "127.0.0.1", "target": "/file", "protocol": "http", "port": 80}, "Invalid url"),
    ({"host": "127.0.0.1", "target": "/oxen/v4/lsrpc", "protocol": "ftp", "port": 80}, "Invalid url"),
    ({"host": "127.0.0.1", "target": "/oxen/v4/lsrpc?x=1", "protocol": "http"}, "Invalid url"),
    ({"host": "127.0.0.1", "protocol": "http"}, "Invalid json"),
    ({"host": "127.0.0.1", "target": "/oxen/v4/lsrpc", "port": "80"}, "Invalid json"),
])
async def test_routes_production_does_not_forward(net: Net, meta: dict[str, Any], text: str) -> None:
    exit_hop = net.hops()[1]
    # the exit is the destination of a plain onion request whose layer JSON is ``meta``
    blob, eph, key = onion.seal_layer("aes-gcm", exit_hop.x25519, onion.encode_frame(b"", meta))
    frame = onion.wrap_path(net.hops()[:1], blob, {"destination": exit_hop.ed25519.hex(),
                                                   "ephemeral_key": eph.hex(), "enc_type": "aes-gcm"},
                            "aes-gcm")
    status, body, _ = await net.post(frame)
    req = onion.OnionRequest(frame=frame, destination_key=key, enc_type="aes-gcm")
    assert status == 200
    assert onion.decrypt_onion_response(req, body) == (400, text)
    assert net.srv.posted == []


async def test_drop_relays_applies_to_the_exit(net: Net) -> None:
    net.exit.behaviours.drop_relays = True
    built = build_server_onion_request(net.hops(), net.srv.dest(), V4Request("GET", "/x"))
    assert (await net.post(built.frame))[:2] == (504, b"Request time out")
    assert net.srv.posted == []


# --- policy and configuration ---------------------------------------------------------------------

def test_policy_loopback_and_extra_networks() -> None:
    p = ForwardPolicy(parse_networks(["10.130.0.0/16"]))
    assert p.address_for("127.3.0.4") == "127.3.0.4"
    assert p.address_for("localhost") == "127.0.0.1"
    assert p.address_for("[::1]") == "::1"
    assert p.address_for("10.130.0.4") == "10.130.0.4"
    for host in ("10.131.0.4", "192.168.1.1", "filev2.getsession.org", "localhost.example", ""):
        with pytest.raises(ForwardRefused):
            p.address_for(host)
    with pytest.raises(ForwardRefused, match="outside the testnet"):
        ForwardPolicy().address_for("10.130.0.4")


def test_forward_allow_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_TESTNET_KEY_SEED", "11" * 32)
    base = ["--ip", "127.0.0.1", "--seed-url", "http://127.0.0.1:1", "--data-dir", str(tmp_path)]
    assert parse_args(base).forward_allow == ()
    cfg = parse_args(base + ["--forward-allow", "10.130.0.0/16", "--forward-allow", "10.131.0.0/16"])
    assert [str(n) for n in cfg.forward_allow] == ["10.130.0.0/16", "10.131.0.0/16"]
    with pytest.raises(ConfigError, match="--forward-allow 'nope'"):
        parse_args(base + ["--forward-allow", "nope"])
