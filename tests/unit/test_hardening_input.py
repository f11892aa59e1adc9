"""Hostile input answered with 4xx, never 5xx (issue 12, finding 6): deeply nested JSON on the
storage RPC, inside onion layers and on the swarm-internal endpoint; non-UTF-8 bodies at the seed."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.common.logs import JsonLogger
from nodes.protocol import jsonin, onion
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import SeedServer, ServerConfig
from nodes.seed.registry import SeedConfig, SeedCore
from nodes.snode.config import Config
from nodes.snode.peers import SWARM_PATH
from nodes.snode.server import Node
from nodes.snode.storage import Storage
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import StoragePortServer, node_identity, peer_auth_headers, seed_entry

pytestmark = pytest.mark.unit

DEEP = 100_000  # far beyond the interpreter's recursion limit


def nested(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


class Pair:
    """Two storage nodes in one swarm on 127.0.0.1 test servers (plain HTTP)."""

    def __init__(self, nodes: list[Node], servers: list[StoragePortServer], session: aiohttp.ClientSession) -> None:
        self.nodes, self.servers, self.session = nodes, servers, session

    def url(self, i: int, path: str) -> str:
        return f"http://127.0.0.1:{self.servers[i].port}{path}"

    def hop(self, i: int) -> onion.OnionHop:
        ident = self.nodes[i].identity
        return onion.OnionHop(ident.ed25519_public, ident.x25519_public)

    async def post(self, i: int, path: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.post(self.url(i, path), data=data, headers=headers) as r:
            return r.status, await r.read()


async def make_node(tmp: Path, name: str) -> tuple[Node, StoragePortServer]:
    ident = node_identity(name)
    cfg = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, lmq_port=22020,
                 seed_url="http://127.0.0.1:9", data_dir=tmp / name, key_seed_hex=ident.seed_hex,
                 fanout_timeout=2.0, relay_timeout=2.0)
    node = Node(cfg, log=JsonLogger(name, stream=io.StringIO()))
    node.storage = Storage(cfg.data_dir / "storage.db")
    node.peers.scheme = "http"
    node._build_handlers()
    server = StoragePortServer(node)
    await server.start_server()
    return node, server


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    built = [await make_node(tmp_path, f"sn{i}") for i in range(2)]
    nodes, servers = [n for n, _ in built], [s for _, s in built]
    entries = [seed_entry(n.identity, "127.0.0.1", s.port, 0) for n, s in built]
    for n in nodes:
        n.set_view(SwarmView.build(n.identity.ed25519_hex, entries, height=1))
    session = aiohttp.ClientSession()
    try:
        yield Pair(nodes, servers, session)
    finally:
        await session.close()
        for s in servers:
            await s.close()
        for n in nodes:
            await n.peers.close()
            assert n.storage is not None
            n.storage.close()


def seed_server(tmp_path: Path) -> SeedServer:
    logger = JsonLogger("seed", stream=io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="unit", params=SwarmParams(3, 0, 3)), clock=lambda: 1.7e9,
                    logger=logger)
    return SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                         admin_token="t"), logger, rng_factory=lambda: random.Random(7))


def test_loads_names_the_reason() -> None:
    with pytest.raises(jsonin.JsonInputError, match="nested too deeply"):
        jsonin.loads(nested())
    with pytest.raises(jsonin.JsonInputError, match="not UTF-8"):
        jsonin.loads(b'{"a": "\xff"}')
    with pytest.raises(jsonin.JsonInputError, match="invalid JSON"):
        jsonin.loads(b"{nope")
    assert jsonin.loads(b'{"a": [1]}') == {"a": [1]}


async def test_deeply_nested_storage_rpc_is_400(pair: Pair) -> None:
    for body in (nested(), '{"method": "store", "params": ' + nested() + "}",
                 '{"method": "sequence", "params": {"requests": ' + nested() + "}}"):
        status, text = await pair.post(0, "/storage_rpc/v1", body.encode())
        assert status == 400, (status, text[:200])
    status, _ = await pair.post(0, "/storage_rpc/v1", b'{"method": "info", "params": {}}')
    assert status == 200  # still serving


async def test_deeply_nested_onion_layers_are_400(pair: Pair) -> None:
    # the outer frame's JSON part
    status, text = await pair.post(0, "/onion_req/v2", onion.encode_frame(b"x", {}).rstrip(b"{}")
                                   + nested().encode())
    assert status == 400 and b"nested too deeply" in text, (status, text[:200])
    # the destination's payload, inside the encryption: an encrypted 400 from the storage RPC
    req = onion.build_onion_request([], pair.hop(0), nested().encode())
    status, body = await pair.post(0, "/onion_req/v2", req.frame)
    assert status == 200
    inner_status, _ = onion.decrypt_onion_response(req, body)
    assert inner_status == 400


async def test_deeply_nested_swarm_request_is_400(pair: Pair) -> None:
    body = ('{"method": "push", "params": ' + nested() + "}").encode()
    status, text = await pair.post(0, SWARM_PATH, body, peer_auth_headers(pair.nodes[1].identity, pair.nodes[0].identity, body))
    assert status == 400 and b"nested too deeply" in text, (status, text[:200])


async def test_seed_rejects_non_utf8_and_nesting_with_a_reason(tmp_path: Path) -> None:
    server = seed_server(tmp_path)
    async with TestClient(TestServer(server.make_app())) as client:
        r = await client.post("/json_rpc", data=b'{"jsonrpc": "2.0", "method": "\xff\xfe"}')
        assert r.status == 400 and "UTF-8" in (await r.json())["error"]["message"]
        r = await client.post("/internal/v1/proof", data=b'{"a": "\xff"}')
        assert r.status == 400 and "UTF-8" in (await r.json())["error"]
        r = await client.post("/json_rpc", data=nested(20_000).encode())  # within the body limit
        doc = await r.json()
        assert r.status in (200, 400) and doc["error"]["code"] == -32700
        assert "nested too deeply" in doc["error"]["message"]
        r = await client.post("/internal/v1/proof", data=nested(20_000).encode())
        assert r.status == 400 and "nested too deeply" in (await r.json())["error"]


