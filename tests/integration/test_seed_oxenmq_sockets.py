"""The seed's OxenMQ endpoints, spoken to by a pyzmq DEALER the way oxen-mq does (real sockets).

The seed runs in-process (its HTTP admin on a free loopback port, one ipc:// ROUTER per real node);
the client sends ``HI`` and ``CMD, TAG, json`` frames and checks the frames that come back.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zmq
import zmq.asyncio

from nodes.common.logs import JsonLogger
from nodes.common.proof import PROOF_PATH, build_proof
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import SeedServer, build_server
from nodes.seed.omq import RealNodeSpec, oxend_privkeys

pytestmark = pytest.mark.integration

SEED = "omq-itest"
TOKEN = "omq-token"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Dealer:
    """An OxenMQ-style client connection: HI/HELLO, then tagged requests."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, identity: bytes | None = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        self.sock.connect(endpoint)
        self._tag = 0

    async def recv(self, timeout: float = 5.0) -> list[bytes]:
        return list(await asyncio.wait_for(self.sock.recv_multipart(), timeout))

    async def hello(self) -> list[bytes]:
        await self.sock.send_multipart([b"HI"])
        return await self.recv()

    async def request(self, command: str, body: Any = None) -> list[bytes]:
        self._tag += 1
        tag = f"t{self._tag}".encode()
        frames = [command.encode(), tag] + ([] if body is None else [json.dumps(body).encode()])
        await self.sock.send_multipart(frames)
        answer = await self.recv()
        assert answer[:2] == [b"REPLY", tag], answer
        return answer[2:]

    async def rpc(self, command: str, body: Any = None) -> Any:
        answer = await self.request(command, body)
        assert answer[0] == b"200" and len(answer) == 2, answer
        return json.loads(answer[1])


def specs(tmp_path: Path, n: int) -> list[RealNodeSpec]:
    return [RealNodeSpec(name=f"sn{i:02d}", endpoint=f"ipc://{tmp_path}/sn{i:02d}.sock",
                         public_ip=f"127.61.0.{i}", storage_port=22021, storage_lmq_port=23000 + i)
            for i in range(1, n + 1)]


async def start_seed(tmp_path: Path, nodes: list[RealNodeSpec], min_nodes: int) -> tuple[SeedServer, str]:
    port = free_port()
    server = build_server(host=HOST, port=port, https_port=0, data_dir=tmp_path / "data", testnet_seed=SEED,
                          expect=len(nodes), params=SwarmParams(3, 0, 3), block_interval=3600, proof_timeout=60,
                          admin_token=TOKEN, logger=JsonLogger("seed", stream=io.StringIO()), real_nodes=nodes,
                          hardfork=(19, 4), oxenmq_min_nodes=min_nodes)
    await server.start()
    return server, f"http://{HOST}:{port}"


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[tuple[SeedServer, dict[str, str], str]]:
    nodes = specs(tmp_path, 5)
    server, http = await start_seed(tmp_path, nodes, min_nodes=5)
    try:
        yield server, {s.name: s.endpoint for s in nodes}, http
    finally:
        await server.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


def node(name: str) -> Identity:
    return Identity.from_seed(derive_seed(SEED, "node", name))


async def admin(http: str, method: str, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, f"{http}{path}",
                                                       headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_handshake_keys_and_unknown_command(seed: tuple[SeedServer, dict[str, str], str],
                                                  ctx: zmq.asyncio.Context) -> None:
    server, endpoints, _ = seed
    for name in ("sn01", "sn04"):
        client = Dealer(ctx, endpoints[name])  # anonymous, like the server's key fetch
        assert await client.hello() == [b"HELLO"]
        keys = await client.rpc("admin.get_service_node_privkey")
        assert keys == oxend_privkeys(node(name))
        assert keys["service_node_ed25519_privkey"][64:] in server.core.nodes  # its pubkey is registered
        await client.sock.send_multipart([b"rpc.get_info", b"t9", b"{}"])
        assert await client.recv() == [b"UNKNOWNCOMMAND", b"rpc.get_info"]
        await client.sock.send_multipart([b"BYE"])  # ignored: the next request still answers
        assert (await client.request("sub.block")) == [b"OK"]


async def test_node_list_and_block_pushes(seed: tuple[SeedServer, dict[str, str], str],
                                          ctx: zmq.asyncio.Context) -> None:
    server, endpoints, http = seed
    me = node("sn02")
    client = Dealer(ctx, endpoints["sn02"], identity=me.x25519_public)
    assert await client.hello() == [b"HELLO"]
    fields = ["block_hash", "hardfork", "height", "pubkey_ed25519", "pubkey_x25519", "public_ip",
              "service_node_pubkey", "snode_revision", "storage_lmq_port", "storage_port",
              "storage_server_version", "swarm_id"]
    first = await client.rpc("rpc.get_service_nodes", {"fields": fields, "active_only": False})
    assert (first["hardfork"], first["snode_revision"]) == (19, 4)
    assert first["height"] == server.core.height >= 1  # expect=5: the first block came at once
    listed = {s["service_node_pubkey"]: s for s in first["service_node_states"]}
    assert set(listed) == {node(f"sn{i:02d}").ed25519_hex for i in range(1, 6)}
    assert listed[me.ed25519_hex]["pubkey_x25519"] == me.x25519_hex
    assert listed[me.ed25519_hex]["public_ip"] == "127.61.0.2"
    swarms = {s["swarm_id"] for s in listed.values()}
    assert swarms == {s["swarm_id"] for s in (await admin(http, "GET", "/internal/v1/state"))["swarms"]}

    same = await client.rpc("rpc.get_service_nodes", {"fields": fields, "poll_block_hash": first["block_hash"]})
    assert same["unchanged"] is True and "service_node_states" not in same

    assert await client.request("sub.block") == [b"OK"]
    assert await client.request("sub.block") == [b"ALREADY"]
    block = await admin(http, "POST", "/internal/v1/block")
    push = await client.recv()
    assert push == [b"notify.block", str(block["height"]).encode(), bytes.fromhex(block["block_hash"])]
    newer = await client.rpc("rpc.get_service_nodes", {"fields": fields, "poll_block_hash": first["block_hash"]})
    assert newer["unchanged"] is False and newer["block_hash"] == block["block_hash"]
    assert await client.rpc("rpc.get_block_hash", {"height": [block["height"] - 1]}) == first["block_hash"]


async def test_pings_and_reports_show_in_the_admin_view(seed: tuple[SeedServer, dict[str, str], str],
                                                        ctx: zmq.asyncio.Context) -> None:
    _, endpoints, http = seed
    me = node("sn03")
    client = Dealer(ctx, endpoints["sn03"])
    await client.hello()
    ping = {"version": [2, 8, 0], "pubkey_ed25519": me.ed25519_hex, "https_port": 22021, "omq_port": 23003}
    assert await client.rpc("admin.storage_server_ping", ping) == {"status": "OK"}
    report = {"type": "storage", "pubkey": node("sn05").ed25519_hex, "passed": False}
    assert await client.rpc("admin.report_peer_status", report) == {"status": "OK"}
    view = await admin(http, "GET", "/internal/v1/oxend")
    nodes = {n["name"]: n for n in view["nodes"]}
    assert view["hardfork"] == [19, 4]
    assert nodes["sn03"]["pings"]["count"] == 1 and nodes["sn03"]["pings"]["last"] == ping
    assert nodes["sn03"]["peer_reports_sent"]["failed"] == 1
    assert nodes["sn05"]["peer_reports_received"]["failed"] == 1
    assert nodes["sn01"]["pings"]["count"] == 0
    state = await admin(http, "GET", "/internal/v1/state")
    by_key = {n["pubkey_ed25519"]: n for n in state["nodes"]}
    assert by_key[me.ed25519_hex]["version"] == [2, 8, 0] and by_key[me.ed25519_hex]["liveness"] == "oxenmq"


async def test_first_list_waits_for_enough_nodes(tmp_path: Path, ctx: zmq.asyncio.Context) -> None:
    """A server's first list (no poll hash) is held while fewer than --oxenmq-min-nodes are listed."""
    nodes = specs(tmp_path, 3)
    server, http = await start_seed(tmp_path, nodes, min_nodes=5)
    try:
        client = Dealer(ctx, nodes[0].endpoint)
        await client.hello()
        await client.sock.send_multipart([b"rpc.get_service_nodes", b"first", b'{"active_only":false}'])
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.5)
        # a poll (the server has had its first list) is answered at once
        polled = await client.rpc("rpc.get_service_nodes", {"poll_block_hash": "00" * 32})
        assert len(polled["service_node_states"]) == 3
        async with aiohttp.ClientSession() as s:
            for i in (1, 2):  # two of our nodes register over HTTP: 5 listed
                ident = Identity.from_seed(derive_seed(SEED, "node", f"py{i}"))
                body = build_proof(ident, public_ip=f"127.62.0.{i}", storage_port=22021, storage_lmq_port=22020,
                                   admin_port=0, timestamp_ms=int(time.time() * 1000))
                async with s.post(f"{http}{PROOF_PATH}", json=body) as r:
                    assert r.status == 200, await r.text()
        await admin(http, "POST", "/internal/v1/block")
        answer = await client.recv()
        assert answer[:3] == [b"REPLY", b"first", b"200"]
        assert len(json.loads(answer[3])["service_node_states"]) == 5
        view = await admin(http, "GET", "/internal/v1/oxend")
        assert {n["name"]: n["first_list_held"] for n in view["nodes"]}["sn01"] == 1
    finally:
        await server.stop()


async def test_busy_endpoint_is_a_clear_startup_error(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        spec = RealNodeSpec(name="sn01", endpoint=f"tcp://{HOST}:{taken}", public_ip="127.61.0.1",
                            storage_port=22021, storage_lmq_port=23001)
        server = build_server(host=HOST, port=port, https_port=0, data_dir=tmp_path, testnet_seed=SEED, expect=0,
                              params=SwarmParams(3, 0, 3), block_interval=1, proof_timeout=6, admin_token=TOKEN,
                              logger=JsonLogger("seed", stream=io.StringIO()), real_nodes=[spec])
        with pytest.raises(RuntimeError, match=f"OxenMQ endpoint tcp://{HOST}:{taken} of real node sn01"):
            await server.start()
    # nothing is left listening: the HTTP port can be bound again
    with socket.socket() as again:
        again.bind((HOST, port))
