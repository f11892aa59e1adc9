"""Property-based fuzzing of everything a client or peer can send (issue 12, finding 6): the
storage RPC, onion framing (outer frame, and the payload a destination runs), the swarm-internal
endpoint and the seed's JSON-RPC.  Every answer is 2xx or 4xx, never 5xx, and a well-formed
request is still served after each example.  Bounded (a few hundred examples per target, no
shrinking deadline) so the suite runs in seconds."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.common.logs import JsonLogger
from nodes.common.proof import PROOF_PATH
from nodes.protocol import onion
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import SeedServer, ServerConfig
from nodes.seed.registry import SeedConfig, SeedCore
from nodes.snode.config import Config
from nodes.snode.peers import SWARM_PATH
from nodes.snode.requests import PARSERS
from nodes.snode.server import Node
from nodes.snode.storage import Storage
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import StoragePortServer, node_identity, peer_auth_headers, seed_entry

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ACCOUNT = Identity.from_seed(derive_seed("fuzz", "account", "a"))
PARAM_KEYS = ["pubkey", "pubKey", "timestamp", "ttl", "data", "namespace", "signature", "pubkey_ed25519",
              "messages", "requests", "expiry", "last_hash", "max_count", "max_size", "subaccount",
              "subaccount_sig", "if", "then", "else", "endpoint", "params", "required", "shorten", "extend",
              "before", "revoke", "unrevoke", "hf_at_least", "height_at_least", "json", "headers"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=16)
           | st.sampled_from([ACCOUNT.session_id, "05" + "ab" * 32, "03" + "00" * 32, "all", "AAAA",
                              int(time.time() * 1000), 86_400_000, -10, 2**63]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(PARAM_KEYS) | st.text(max_size=6), inner, max_size=5),
                           max_leaves=16)
rpc_docs = st.fixed_dictionaries({
    "method": st.sampled_from([*PARSERS, "nope", ""]),
    "params": st.dictionaries(st.sampled_from(PARAM_KEYS), json_values, max_size=7)})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


bodies = st.one_of(
    rpc_docs.map(lambda d: json.dumps(d).encode()),
    rpc_docs.map(lambda d: json.dumps({"method": "batch", "params": {"requests": [d, d]}}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.integers(min_value=1, max_value=5_000).map(nested),
    st.binary(max_size=40).map(lambda b: b'{"method": "info", "params": {"x": "' + b + b'"}}'),
)


class Loop:
    """One event loop for a whole property test (hypothesis calls the test body synchronously)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def close(self) -> None:
        self.runner.close()


class PortClient:
    """What these tests use of aiohttp's ``TestClient``, for a node's whole storage port (its lean
    front and its aiohttp app: nodes/snode/testing.py)."""

    def __init__(self, server: StoragePortServer) -> None:
        self.server = server
        self.session = aiohttp.ClientSession()

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.post(self.server.make_url(path), **kw)

    async def close(self) -> None:
        await self.session.close()
        await self.server.close()


async def started(app: Any) -> Any:
    """A client of ``app``: an aiohttp app (a ``TestClient``), or a node's StoragePortServer."""
    if isinstance(app, StoragePortServer):
        await app.start_server()
        return PortClient(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    try:
        yield lp
    finally:
        lp.close()


@pytest.fixture
def node_client(tmp_path: Path, loop: Loop) -> Iterator[tuple[PortClient, Node, Identity]]:
    ident = node_identity("fuzz")
    peer = node_identity("fuzz-peer")
    cfg = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, lmq_port=22020,
                 seed_url="http://127.0.0.1:9", data_dir=tmp_path / "sn", key_seed_hex=ident.seed_hex,
                 fanout_timeout=0.5, relay_timeout=0.5)
    node = Node(cfg, log=JsonLogger("sn", stream=io.StringIO()))
    node.storage = Storage(tmp_path / "sn.db")
    node.peers.scheme = "http"
    node._build_handlers()
    # a one-member swarm (this node) plus a registered peer that signs swarm requests but does
    # not listen (fan-out to it fails fast, as to a dead member)
    entries = [seed_entry(ident, "127.0.0.1", 1, 0), seed_entry(peer, "127.0.0.1", 9, 0x7FFFFFFFFFFFFFFF)]
    node.set_view(SwarmView.build(ident.ed25519_hex, entries, height=1_000_000))
    client = loop.run(started(StoragePortServer(node)))
    try:
        yield client, node, peer
    finally:
        loop.run(client.close())
        loop.run(node.peers.close())
        node.storage.close()


async def still_serving(client: PortClient) -> None:
    r = await client.post("/storage_rpc/v1", data=b'{"method": "info", "params": {}}')
    text = await r.text()  # read whole: the connection goes back to the pool
    assert r.status == 200, text


def assert_not_5xx(status: int, what: str, body: bytes) -> None:
    assert status < 500, f"{what}: {status} {body[:300]!r}"


def test_storage_rpc_never_5xx(node_client: tuple[PortClient, Node, Identity], loop: Loop) -> None:
    client, _, _ = node_client

    @FUZZ
    @given(body=bodies)
    def prop(body: bytes) -> None:
        async def go() -> None:
            r = await client.post("/storage_rpc/v1", data=body)
            assert_not_5xx(r.status, "storage_rpc", await r.read())
            await still_serving(client)
        loop.run(go())

    prop()


frames = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.binary(max_size=64), json_values).map(
        lambda bm: onion.encode_frame(bm[0], bm[1]) if isinstance(bm[1], dict) else bytes(bm[0])),
    st.tuples(st.binary(max_size=64), st.dictionaries(
        st.sampled_from(["ephemeral_key", "enc_type", "hop_no", "destination", "headers", "host"]),
        scalars, max_size=4)).map(lambda bm: onion.encode_frame(bm[0], bm[1])),
)


def test_onion_frames_never_5xx(node_client: tuple[PortClient, Node, Identity], loop: Loop) -> None:
    client, node, _ = node_client
    me = onion.OnionHop(node.identity.ed25519_public, node.identity.x25519_public)

    @FUZZ
    @given(frame=frames, payload=bodies, enc=st.sampled_from(["aes-gcm", "xchacha20"]))
    def prop(frame: bytes, payload: bytes, enc: str) -> None:
        async def go() -> None:
            r = await client.post("/onion_req/v2", data=frame)
            assert_not_5xx(r.status, "onion frame", await r.read())
            # a well-formed onion whose destination payload is fuzzed: the inner status too
            req = onion.build_onion_request([], me, payload, enc)
            r = await client.post("/onion_req/v2", data=req.frame)
            raw = await r.read()
            assert r.status == 200, raw[:300]
            inner_status, inner = onion.decrypt_onion_response(req, raw)
            assert inner_status < 500, f"onion destination: {inner_status} {inner[:300]!r}"
            await still_serving(client)
        loop.run(go())

    prop()


swarm_docs = st.one_of(
    st.fixed_dictionaries({"method": st.sampled_from(["push", "store", "delete_all", "nope"]),
                           "params": st.dictionaries(st.sampled_from(["messages", *PARAM_KEYS]), json_values,
                                                     max_size=5)}).map(lambda d: json.dumps(d).encode()),
    bodies)


def test_swarm_endpoint_never_5xx(node_client: tuple[PortClient, Node, Identity], loop: Loop) -> None:
    client, node, peer = node_client

    @FUZZ
    @given(body=swarm_docs)
    def prop(body: bytes) -> None:
        async def go() -> None:
            r = await client.post(SWARM_PATH, data=body, headers=peer_auth_headers(peer, node.identity, body))
            assert_not_5xx(r.status, "swarm", await r.read())
            await still_serving(client)
        loop.run(go())

    prop()


@pytest.fixture
def seed_client(tmp_path: Path, loop: Loop) -> Iterator[TestClient]:
    logger = JsonLogger("seed", stream=io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="fuzz", params=SwarmParams(1, 0, 1)), clock=time.time, logger=logger)
    server = SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                           admin_token="t"), logger, rng_factory=lambda: random.Random(7))
    client = loop.run(started(server.make_app()))
    try:
        yield client
    finally:
        loop.run(client.close())


seed_docs = st.fixed_dictionaries({
    "jsonrpc": st.sampled_from(["2.0", "1.0"]) | scalars,
    "id": scalars,
    "method": st.sampled_from(["get_n_service_nodes", "get_service_nodes", "get_all_service_nodes", "nope"]) | scalars,
    "params": st.dictionaries(st.sampled_from(["active_only", "limit", "fields", "service_node_pubkeys",
                                               "poll_block_hash"]), json_values, max_size=4) | json_values})
seed_bodies = st.one_of(seed_docs.map(lambda d: json.dumps(d).encode()),
                        st.lists(seed_docs, min_size=0, max_size=5).map(lambda ds: json.dumps(ds).encode()),
                        bodies)


def test_seed_json_rpc_and_proof_never_5xx(seed_client: TestClient, loop: Loop) -> None:
    ok = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "get_n_service_nodes", "params": {}}).encode()

    @FUZZ
    @given(body=seed_bodies)
    def prop(body: bytes) -> None:
        async def go() -> None:
            for path in ("/json_rpc", PROOF_PATH):
                r = await seed_client.post(path, data=body)
                assert_not_5xx(r.status, path, await r.read())
            r = await seed_client.post("/json_rpc", data=ok)
            assert r.status == 200 and "result" in await r.json()
        loop.run(go())

    prop()
