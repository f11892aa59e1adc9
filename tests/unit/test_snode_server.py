"""The storage node's HTTP layer in-process: several Node objects on 127.0.0.1 test servers
(plain HTTP instead of TLS), sharing a hand-made swarm view instead of a seed. Every test runs
twice: with the storage port's lean front (as a node runs) and with aiohttp alone, so that both
paths to the same handlers give the same answers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from nodes.common.logs import JsonLogger
from nodes.protocol import onion, signing
from nodes.protocol.constants import MAX_REQUEST_BODY
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity
from nodes.snode.admin import make_admin_app
from nodes.snode.config import Config
from nodes.snode.peers import H_AUTH, H_SIGNATURE, SWARM_PATH, PeerOverrides
from nodes.snode.ratelimit import RateLimiter
from nodes.snode.server import Node
from nodes.snode.storage import Message, Storage
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import account_in_swarm, node_identity, peer_auth_headers, seed_entry

pytestmark = pytest.mark.unit

SWARM_A, SWARM_B = 0, 0x7FFFFFFFFFFFFFFF


class Cluster:
    def __init__(self, tmp: Path, lean: bool = True) -> None:
        self.tmp = tmp
        self.lean = lean
        self.nodes: list[Node] = []
        self.ports: list[int] = []
        self.session = aiohttp.ClientSession()

    async def add(self, name: str) -> Node:
        ident = node_identity(name)
        cfg = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, lmq_port=22020,
                     seed_url="http://127.0.0.1:9", data_dir=self.tmp / name, key_seed_hex=ident.seed_hex,
                     fanout_timeout=2.0, relay_timeout=2.0)
        node = Node(cfg, log=JsonLogger(name, stream=io.StringIO()))
        node.storage = Storage(cfg.data_dir / "storage.db")
        node.peers.scheme = "http"
        node._build_handlers()
        app = node.make_storage_app()
        await node._listen(app, "127.0.0.1", 0, None, "storage", lean=node.lean if self.lean else None)
        self.nodes.append(node)
        self.ports.append(int(node._runners[-1].addresses[0][1]))
        return node

    def port(self, node: Node) -> int:
        return self.ports[self.nodes.index(node)]

    def url(self, node: Node, path: str) -> str:
        return f"http://127.0.0.1:{self.port(node)}{path}"

    def layout(self, swarms: dict[int, list[Node]], only: list[Node] | None = None,
               listed: dict[Node, int] | None = None) -> None:
        """Give nodes (all, or `only`) a seed view of `swarms`; `listed` makes the seed list a
        node at another port than its server's."""
        listed = listed or {}
        entries = [seed_entry(n.identity, "127.0.0.1", listed.get(n, self.port(n)), sid)
                   for sid, members in swarms.items() for n in members]
        for n in only if only is not None else self.nodes:
            n.set_view(SwarmView.build(n.identity.ed25519_hex, entries, height=1))

    async def rpc(self, node: Node, method: str, params: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(self.url(node, "/storage_rpc/v1"),
                                     json={"method": method, "params": params}) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def close(self) -> None:
        await self.session.close()
        for n in self.nodes:
            for r in n._runners:
                await r.cleanup()
            await n.peers.close()
            n.storage.close()


@pytest.fixture(params=["lean", "aiohttp"])
async def cluster(tmp_path, request):
    c = Cluster(tmp_path, lean=request.param == "lean")
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but never listens: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
async def four(cluster):
    nodes = [await cluster.add(f"sn{i}") for i in range(4)]
    cluster.layout({SWARM_A: nodes[:2], SWARM_B: nodes[2:]})
    return nodes


def now_ms() -> int:
    return int(time.time() * 1000)


def store_params(acct: Identity, data: bytes, ttl: int = 60_000) -> dict[str, Any]:
    return {"pubkey": acct.session_id, "timestamp": now_ms(), "ttl": ttl,
            "data": base64.b64encode(data).decode()}


def retrieve_params(acct: Identity) -> dict[str, Any]:
    ts = now_ms()
    return {"pubkey": acct.session_id, "timestamp": ts, "pubkey_ed25519": acct.ed25519_hex,
            "signature": signing.sign_request(acct, signing.retrieve_message(0, ts))}


def hop(n: Node) -> onion.OnionHop:
    return onion.OnionHop(n.identity.ed25519_public, n.identity.x25519_public)


# --- HTTP-level validation ------------------------------------------------------------------------

async def test_not_ready_is_503_then_serves(cluster):
    n = await cluster.add("lonely")
    status, body = await cluster.rpc(n, "info", {})
    assert status == 503 and body.startswith("Service node is not ready: ")
    async with cluster.session.post(cluster.url(n, "/onion_req/v2"), data=b"x") as r:
        assert r.status == 503
    cluster.layout({SWARM_A: [n]})
    status, body = await cluster.rpc(n, "info", {})
    assert status == 200 and "t" in body and "hf" in body
    assert [o["status"] for o in n.observations.since(0)] == [503, 503, 200]


async def test_unknown_path_and_oversized_body(four, cluster):
    s, base = cluster.session, cluster.url(four[0], "")
    async with s.get(base + "/nope") as r:
        assert r.status == 404 and await r.text() == "get /nope Not Found"
    async with s.get(base + "/storage_rpc/v1") as r:
        assert r.status == 404
    async with s.post(base + "/storage_rpc/v1", data=b"x" * (MAX_REQUEST_BODY + 1)) as r:
        assert r.status == 413 and await r.text() == "Request body too large"
    async with s.post(base + "/storage_rpc/v1", data=b"{bad") as r:  # node still serves
        assert r.status == 400 and await r.text() == "invalid json"


async def test_rate_limit_429(four, cluster):
    n = four[0]
    n.ratelimiter = RateLimiter(2.0)
    codes = [(await cluster.rpc(n, "info", {}))[0] for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]
    status, body = await cluster.rpc(four[1], "info", {})  # other nodes unaffected
    assert status == 200


async def test_delay_behaviour(four, cluster):
    four[0].behaviours.delay_ms = 300
    t0 = time.monotonic()
    assert (await cluster.rpc(four[0], "info", {}))[0] == 200
    assert time.monotonic() - t0 >= 0.3


# --- fan-out over real HTTP ------------------------------------------------------------------------

async def test_store_fans_out_and_other_member_serves_it(four, cluster):
    acct = account_in_swarm(four[0].view, SWARM_A)
    status, body = await cluster.rpc(four[0], "store", store_params(acct, b"fan"))
    assert status == 200, body
    h = message_hash(acct.session_id, 0, b"fan")
    assert set(body["swarm"]) == {four[0].identity.ed25519_hex, four[1].identity.ed25519_hex}
    peer = body["swarm"][four[1].identity.ed25519_hex]
    assert peer["hash"] == h and "signature" in peer and "expiry" in peer
    status, body = await cluster.rpc(four[1], "retrieve", retrieve_params(acct))
    assert status == 200 and [m["hash"] for m in body["messages"]] == [h]
    obs = four[1].observations.since(0)
    assert any(o["channel"] == "swarm" and o["method"] == "store" and o["accounts"] == [acct.session_id]
               for o in obs)
    # 421 from the other swarm carries our swarm
    status, body = await cluster.rpc(four[2], "store", store_params(acct, b"fan"))
    assert status == 421 and body["swarm"] == "0"


async def test_busy_routes_are_answered_by_the_lean_front(four, cluster):
    acct = account_in_swarm(four[0].view, SWARM_A)
    status, _ = await cluster.rpc(four[0], "store", store_params(acct, b"lean"))
    assert status == 200
    async with cluster.session.get(cluster.url(four[0], "/get_stats/v1")) as r:
        assert r.status == 200
    state = [await n.admin_state() for n in four[:2]]
    if cluster.lean:  # the client's store, then its fan-out to the peer; the GET went to aiohttp
        assert state[0]["lean_http"] == {"answered": 1, "handed_over": 1}
        assert state[1]["lean_http"] == {"answered": 1, "handed_over": 0}
    else:
        assert [s["lean_http"]["answered"] for s in state] == [0, 0]


async def test_unreachable_peer_reported_failed(four, cluster):
    acct = account_in_swarm(four[0].view, SWARM_A)
    for r in four[1]._runners:
        await r.cleanup()
    four[1]._runners.clear()
    status, body = await cluster.rpc(four[0], "store", store_params(acct, b"x"))
    assert status == 200
    assert body["swarm"][four[1].identity.ed25519_hex] == {"failed": True, "timeout": True}


async def test_internal_endpoint_requires_registered_authenticated_sender(four, cluster):
    n = four[0]
    body = json.dumps({"method": "push", "params": {"messages": []}}).encode()
    url = cluster.url(n, SWARM_PATH)
    async with cluster.session.post(url, data=body) as r:
        assert r.status == 401
    stranger = peer_auth_headers(node_identity("stranger"), n.identity, body)
    async with cluster.session.post(url, data=body, headers=stranger) as r:
        assert r.status == 401 and "unknown sender" in await r.text()
    hdrs = peer_auth_headers(four[1].identity, n.identity, body)
    async with cluster.session.post(url, data=body + b" ", headers=hdrs) as r:
        assert r.status == 401  # the MAC does not cover a modified body
    async with cluster.session.post(url, data=body, headers=peer_auth_headers(four[1].identity, n.identity, body,
                                                                              now_ms() - 600_000)) as r:
        assert r.status == 401
    # a request made for another node (e.g. reflected or redirected) does not pass here
    for_other = peer_auth_headers(four[1].identity, four[2].identity, body)
    async with cluster.session.post(url, data=body, headers=for_other) as r:
        assert r.status == 401 and "does not match" in await r.text()
    async with cluster.session.post(url, data=body, headers=hdrs) as r:
        assert r.status == 200 and (await r.json())["received"] == 0
    # a node of an earlier version sends only the Ed25519 signature: it is checked instead
    signed_only = {k: v for k, v in hdrs.items() if k != H_AUTH}
    async with cluster.session.post(url, data=body, headers=signed_only) as r:
        assert r.status == 200 and (await r.json())["received"] == 0
    async with cluster.session.post(url, data=body + b" ", headers=signed_only) as r:
        assert r.status == 401 and H_SIGNATURE in await r.text()


async def test_concurrent_stores_reach_a_peer_in_bundles(four, cluster):
    acct = account_in_swarm(four[0].view, SWARM_A)
    datas = [f"m{i}".encode() for i in range(20)]
    answers = await asyncio.gather(*(cluster.rpc(four[0], "store", store_params(acct, d)) for d in datas))
    peer = four[1].identity.ed25519_hex
    for d, (status, body) in zip(datas, answers, strict=True):
        assert status == 200, body
        assert body["swarm"][peer]["hash"] == message_hash(acct.session_id, 0, d)
        assert "signature" in body["swarm"][peer]
    stats = four[0].fanout.stats()
    # the first store went alone; the ones that came while it was in flight went together
    assert stats["bundles_sent"] >= 1 and stats["bundled_requests"] >= 2 and stats["waiting"] == 0
    status, body = await cluster.rpc(four[1], "retrieve", retrieve_params(acct))
    assert status == 200
    assert {m["hash"] for m in body["messages"]} == {message_hash(acct.session_id, 0, d) for d in datas}
    stored = [o for o in four[1].observations.since(0) if o["channel"] == "swarm"]
    assert [o["method"] for o in stored] == ["store"] * 20  # each one observed on its own
    assert all(o["accounts"] == [acct.session_id] and o["status"] == 200 for o in stored)


async def test_bundle_answers_each_request_in_order(four, cluster):
    n, sender = four[0], four[1]
    mine = account_in_swarm(n.view, SWARM_A)
    theirs = account_in_swarm(n.view, SWARM_B)
    items = [{"method": "store", "params": store_params(mine, b"b1")},
             {"method": "store", "params": store_params(theirs, b"b2")},
             {"method": "push", "params": {"messages": []}},
             {"method": "bundle", "params": {"requests": []}},
             "not a request"]
    body = json.dumps({"method": "bundle", "params": {"requests": items}}).encode()
    async with cluster.session.post(cluster.url(n, SWARM_PATH), data=body,
                                    headers=peer_auth_headers(sender.identity, n.identity, body)) as r:
        assert r.status == 200
        results = (await r.json())["results"]
    assert [x["status"] for x in results] == [200, 421, 400, 400, 400]
    assert results[0]["body"]["hash"] == message_hash(mine.session_id, 0, b"b1")
    assert "unknown method 'push'" in results[2]["body"]
    assert "unknown method 'bundle'" in results[3]["body"]  # no bundle inside a bundle
    obs = [o for o in n.observations.since(0) if o["channel"] == "swarm"]
    assert sorted(o["status"] for o in obs) == [200, 400, 400, 400, 421]
    for requests in ([], [{"method": "store", "params": {}}] * 65, "x"):
        body = json.dumps({"method": "bundle", "params": {"requests": requests}}).encode()
        async with cluster.session.post(cluster.url(n, SWARM_PATH), data=body,
                                        headers=peer_auth_headers(sender.identity, n.identity, body)) as r:
            assert r.status == 400 and "needs \"requests\"" in await r.text()


# --- onion requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
async def test_onion_three_relays_and_destination(four, cluster, enc):
    guard, r2, r3, dest = four[2], four[3], four[1], four[0]
    acct = account_in_swarm(dest.view, SWARM_A)
    payload = json.dumps({"method": "store", "params": store_params(acct, b"onion")}).encode()
    req = onion.build_onion_request([hop(guard), hop(r2), hop(r3)], hop(dest), payload, enc)
    async with cluster.session.post(cluster.url(guard, "/onion_req/v2"), data=req.frame) as r:
        assert r.status == 200
        status, inner = onion.decrypt_onion_response(req, await r.read())
    assert status == 200
    assert json.loads(inner)["hash"] == message_hash(acct.session_id, 0, b"onion")
    g = [o for o in guard.observations.since(0) if o["channel"] == "onion"][-1]
    assert g["hop"] == "relay" and g["next_hop"] == r2.identity.ed25519_hex and g["accounts"] == []
    d = [o for o in dest.observations.since(0) if o["channel"] == "onion"][-1]
    assert d["hop"] == "destination" and d["method"] == "store" and d["accounts"] == [acct.session_id]


async def test_onion_destination_error_is_encrypted(four, cluster):
    dest = four[0]
    req = onion.build_onion_request([], hop(dest), b'{"method": "nope", "params": {}}')
    async with cluster.session.post(cluster.url(dest, "/onion_req/v2"), data=req.frame) as r:
        assert r.status == 200
        assert onion.decrypt_onion_response(req, await r.read()) == (400, "no method nope")


async def test_onion_path_errors(four, cluster):
    guard, dest = four[2], four[0]
    url = cluster.url(guard, "/onion_req/v2")
    payload = b'{"method": "info", "params": {}}'

    async def post(data: bytes) -> tuple[int, str]:
        async with cluster.session.post(url, data=data) as r:
            return r.status, await r.text()

    status, text = await post(b"\x01\x02")
    assert status == 400 and text.startswith("Error parsing onion request")
    status, text = await post(onion.encode_frame(b"\x00" * 64, {"ephemeral_key": "11" * 32}))
    assert (status, text) == (400, "Invalid ciphertext")
    stranger = node_identity("not-registered")
    req = onion.build_onion_request([hop(guard)], onion.OnionHop(stranger.ed25519_public,
                                                                 stranger.x25519_public), payload)
    assert await post(req.frame) == (502, f"Next node not found: {stranger.ed25519_hex}")
    blob, meta = onion.decode_frame(onion.build_onion_request([hop(guard)], hop(dest), payload).frame)
    assert await post(onion.encode_frame(blob, {**meta, "hop_no": 16})) == (
        400, "onion request max path length exceeded")
    guard.behaviours.drop_relays = True
    req = onion.build_onion_request([hop(guard)], hop(dest), payload)
    assert await post(req.frame) == (504, "Request time out")
    guard.behaviours.drop_relays = False
    guard.behaviours.corrupt_relays = True
    req = onion.build_onion_request([hop(guard)], hop(dest), payload)
    assert await post(req.frame) == (400, "Invalid ciphertext")  # next hop's answer, passed back
    guard.behaviours.corrupt_relays = False
    req = onion.build_onion_request([hop(guard)], hop(dest), payload)
    status, body = await post(req.frame)
    assert status == 200 and onion.decrypt_onion_response(req, body)[0] == 200  # still serving


async def test_onion_relay_names_a_next_hop_that_is_not_ready(four, cluster):
    # the storage server relays over OxenMQ, where a not-ready node answers 503 "Snode not
    # ready: <its ed25519>" (only the HTTPS edge says "Service node is not ready: <reason>");
    # our relays reach the next hop over HTTPS and give the client the same named answer, as a
    # middle relay and as the last hop before the destination, through the guard unchanged
    guard, relay, gone = four[2], four[3], four[0]
    entries = [seed_entry(n.identity, "127.0.0.1", cluster.port(n), sid, active=n is not gone)
               for sid, members in {SWARM_A: four[:2], SWARM_B: four[2:]}.items() for n in members]
    gone.set_view(SwarmView.build(gone.identity.ed25519_hex, entries, height=2))  # decommissioned
    payload = b'{"method": "info", "params": {}}'
    url = cluster.url(guard, "/onion_req/v2")
    named = (503, f"Snode not ready: {gone.identity.ed25519_hex}")
    for hops, dest in (([guard], gone), ([guard, relay], gone), ([guard, gone], four[1])):
        req = onion.build_onion_request([hop(h) for h in hops], hop(dest), payload)
        async with cluster.session.post(url, data=req.frame) as r:
            assert (r.status, await r.text()) == named
    async with cluster.session.post(cluster.url(gone, "/onion_req/v2"), data=b"x") as r:
        # as the edge it says so itself, naming nobody (oxen-storage HTTPS::check_ready)
        assert r.status == 503
        assert (await r.text()).startswith("Service node is not ready: this node is not active")


async def test_onion_relay_timeout_is_504(four, cluster):
    guard, dest = four[2], four[0]
    guard.onion.relay_timeout = 0.5
    dest.behaviours.delay_ms = 1500  # longer than the relay timeout
    req = onion.build_onion_request([hop(guard)], hop(dest), b'{"method": "info", "params": {}}')
    async with cluster.session.post(cluster.url(guard, "/onion_req/v2"), data=req.frame) as r:
        assert (r.status, await r.text()) == (504, "Request time out")


# --- replication and re-homing ------------------------------------------------------------------------

async def test_new_member_gets_messages_and_split_rehomes(cluster):
    a, b = await cluster.add("a"), await cluster.add("b")
    cluster.layout({SWARM_A: [a]})
    accts = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 9)]
    hashes = {}
    for acct in accts:
        status, body = await cluster.rpc(a, "store", store_params(acct, b"r" + bytes([accts.index(acct)])))
        assert status == 200
        hashes[acct.session_id] = body["hash"]
    # b joins a's swarm: a pushes everything to b
    cluster.layout({SWARM_A: [a, b]})
    await a.replicator.sync_once()
    assert await b.storage.count() == len(accts)
    # split: b moves to a new swarm; each node keeps only what it owns
    cluster.layout({SWARM_A: [a], SWARM_B: [b]})
    b_owns = [x for x in accts if b.view.is_mine(x.session_id)]
    a_owns = [x for x in accts if a.view.is_mine(x.session_id)]
    assert b_owns and a_owns
    await a.replicator.sync_once()
    await b.replicator.sync_once()
    assert sorted(await a.storage.owners()) == sorted(x.session_id for x in a_owns)
    assert sorted(await b.storage.owners()) == sorted(x.session_id for x in b_owns)
    for acct in accts:
        owner = b if acct in b_owns else a
        status, body = await cluster.rpc(owner, "retrieve", retrieve_params(acct))
        assert [m["hash"] for m in body["messages"]] == [hashes[acct.session_id]]


async def test_rehome_retries_members_with_stale_views(cluster):
    a, b, c = await cluster.add("a"), await cluster.add("b"), await cluster.add("c")
    cluster.layout({SWARM_A: [a, b]})  # c: registered later, not in a swarm yet in its own view
    new = {SWARM_A: [a], SWARM_B: [b, c]}
    cluster.layout(new, only=[a])
    moving = account_in_swarm(a.view, SWARM_B)
    status, body = await cluster.rpc(a, "store", store_params(moving, b"m"))
    assert status == 421  # a already routes the account to the new swarm
    await a.storage.store(Message(
        moving.session_id, 0, message_hash(moving.session_id, 0, b"m"), now_ms(), now_ms() + 60_000, b"m"))
    cluster.layout(new, only=[b])  # c has not seen the new map yet and refuses the push (421)
    await a.replicator.sync_once()
    assert await a.storage.count() == 0  # b acknowledged: deleted locally
    assert await b.storage.count() == 1 and await c.storage.count() == 0
    assert c.identity.ed25519_hex in a.replicator.pending_pushes
    cluster.layout(new, only=[c])
    await a.replicator.sync_once()
    assert await c.storage.count() == 1 and a.replicator.pending_pushes == {}


async def test_push_rejects_foreign_accounts_and_bad_hashes(cluster):
    a, b = await cluster.add("a"), await cluster.add("b")
    cluster.layout({SWARM_A: [a], SWARM_B: [b]})
    foreign = account_in_swarm(a.view, SWARM_B)
    mine = account_in_swarm(a.view, SWARM_A)

    def m(acct: Identity, data: bytes, h: str | None = None) -> dict[str, Any]:
        return {"pubkey": acct.session_id, "namespace": 0, "timestamp": now_ms(), "expiry": now_ms() + 60_000,
                "data": base64.b64encode(data).decode(), "hash": h or message_hash(acct.session_id, 0, data)}

    r = await a.replicator.receive_push({"messages": [m(foreign, b"x")]})
    assert r.status == 421
    r = await a.replicator.receive_push({"messages": [m(mine, b"x", h="A" * 43)]})
    assert r.status == 400 and "does not match" in r.body
    r = await a.replicator.receive_push({"messages": [m(mine, b"x")]})
    assert r.status == 200 and r.body == {"received": 1, "stored": 1}


# --- admin ----------------------------------------------------------------------------------------

async def test_admin_interface(four, cluster):
    n = four[0]
    await cluster.rpc(n, "info", {})
    app = make_admin_app(n.admin_state, n.observations, n.behaviours, n.clock, n.peer_overrides, n.log,
                         token="admin-secret")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = f"http://127.0.0.1:{server.port}/admin/v1"
        s = aiohttp.ClientSession(headers={"Authorization": "Bearer admin-secret"})
        async with s.get(base + "/state") as r:
            st = await r.json()
        assert st["pubkey_ed25519"] == n.identity.ed25519_hex and st["ready"] is True
        assert st["swarm_id"] == SWARM_A and n.identity.ed25519_hex in st["swarm_members"]
        assert st["messages"] == 0 and st["behaviours"]["drop_stores"] is False
        async with s.get(base + "/observations?since=0") as r:
            obs = await r.json()
        assert obs["observations"][-1]["method"] == "info" and obs["next"] == obs["observations"][-1]["seq"] + 1
        async with s.get(base + f"/observations?since={obs['next']}") as r:
            assert (await r.json())["observations"] == []
        async with s.delete(base + "/observations") as r:
            assert r.status == 200
        assert len(n.observations) == 0
        async with s.put(base + "/behaviours", json={"drop_stores": "yes"}) as r:
            assert r.status == 400
        async with s.put(base + "/behaviours", json={"drop_relays": True, "delay_ms": 5}) as r:
            assert (await r.json())["drop_relays"] is True
        assert n.behaviours.delay_ms == 5
        async with s.put(base + "/clock", json={"offset_ms": -120_000}) as r:
            assert (await r.json())["offset_ms"] == -120_000
        status, body = await cluster.rpc(n, "info", {})
        assert now_ms() - body["t"] > 100_000
        # peer overrides: merge, null removes, bad bodies change nothing
        peer, other = four[1].identity.ed25519_hex, four[2].identity.ed25519_hex
        async with s.get(base + "/peer_overrides") as r:
            assert r.status == 200 and await r.json() == {}
        async with s.put(base + "/peer_overrides", json={peer: "127.9.2.3:22021"}) as r:
            assert r.status == 200 and await r.json() == {peer: "127.9.2.3:22021"}
        async with s.put(base + "/peer_overrides", json={other: "127.9.3.3:22021"}) as r:
            assert await r.json() == {peer: "127.9.2.3:22021", other: "127.9.3.3:22021"}
        for bad in (b"{nope", b'{"%s": "127.9.2.3"}' % peer.encode(), b'["x"]', b""):
            async with s.put(base + "/peer_overrides", data=bad) as r:
                assert r.status == 400 and (await r.json())["error"]
        async with s.put(base + "/peer_overrides", json={peer: None}) as r:
            assert await r.json() == {other: "127.9.3.3:22021"}
        assert n.peers.address(four[2].view.me) == ("127.9.3.3", 22021)
        assert n.peers.address(four[1].view.me) == ("127.0.0.1", cluster.port(four[1]))
        async with s.get(base + "/state") as r:
            assert (await r.json())["peer_overrides"] == {other: "127.9.3.3:22021"}
    finally:
        await s.close()
        await server.close()


# --- peer address overrides ----------------------------------------------------------------------

def test_peer_overrides_validate_everything_before_changing_anything():
    o = PeerOverrides()
    pk, other = node_identity("x").ed25519_hex, node_identity("y").ed25519_hex
    o.update({pk.upper(): "127.0.0.5:22021"})
    assert o.get(pk) == ("127.0.0.5", 22021) and o.to_json() == {pk: "127.0.0.5:22021"}
    for bad in ([pk], {"zz": "127.0.0.1:1"}, {pk: "127.0.0.1"}, {pk: "localhost:1"},
                {pk: "127.0.0.1:0"}, {pk: "127.0.0.1:65536"}, {pk: 22021}, {pk: "0.0.0.0:22021"},
                {other: "127.0.0.6:1", pk: "nope"}):
        with pytest.raises(ValueError):
            o.update(bad)
    assert o.to_json() == {pk: "127.0.0.5:22021"}  # the valid half of the last update was not applied
    o.update({other: "127.0.0.6:1"})
    o.update({pk: None, "ab" * 32: None})  # null removes; removing an absent key is fine
    assert o.to_json() == {other: "127.0.0.6:1"} and o.get(pk) is None


async def test_fanout_connects_to_the_override(four, cluster, dead_port):
    a, b = four[0], four[1]
    b_pk = b.identity.ed25519_hex
    acct = account_in_swarm(a.view, SWARM_A)
    a.peer_overrides.update({b_pk: f"127.0.0.1:{dead_port}"})
    status, body = await cluster.rpc(a, "store", store_params(acct, b"o1"))
    assert status == 200 and body["swarm"][b_pk] == {"failed": True, "timeout": True}
    # the seed lists b at the dead port: only the override reaches it
    cluster.layout({SWARM_A: four[:2], SWARM_B: four[2:]}, listed={b: dead_port})
    a.peer_overrides.update({b_pk: f"127.0.0.1:{cluster.port(b)}"})
    status, body = await cluster.rpc(a, "store", store_params(acct, b"o2"))
    assert status == 200 and body["swarm"][b_pk]["hash"] == message_hash(acct.session_id, 0, b"o2")
    a.peer_overrides.update({b_pk: None})
    status, body = await cluster.rpc(a, "store", store_params(acct, b"o3"))
    assert body["swarm"][b_pk] == {"failed": True, "timeout": True}


async def test_onion_relay_connects_to_the_override(four, cluster, dead_port):
    guard, dest = four[2], four[0]
    cluster.layout({SWARM_A: four[:2], SWARM_B: four[2:]}, listed={dest: dead_port})
    url = cluster.url(guard, "/onion_req/v2")

    async def relay() -> tuple[int, bytes, onion.OnionRequest]:
        req = onion.build_onion_request([hop(guard)], hop(dest), b'{"method": "info", "params": {}}')
        async with cluster.session.post(url, data=req.frame) as r:
            return r.status, await r.read(), req

    status, body, _ = await relay()
    assert (status, body) == (504, b"Request time out")
    guard.peer_overrides.update({dest.identity.ed25519_hex: f"127.0.0.1:{cluster.port(dest)}"})
    status, body, req = await relay()
    assert status == 200 and onion.decrypt_onion_response(req, body)[0] == 200
    assert [o["hop"] for o in dest.observations.since(0) if o["channel"] == "onion"] == ["destination"]


async def test_replication_push_connects_to_the_override(cluster, dead_port):
    a, b = await cluster.add("a"), await cluster.add("b")
    cluster.layout({SWARM_A: [a]})
    acct = account_in_swarm(a.view, SWARM_A)
    assert (await cluster.rpc(a, "store", store_params(acct, b"replicate me")))[0] == 200
    cluster.layout({SWARM_A: [a, b]}, listed={b: dead_port})
    await a.replicator.sync_once()
    assert await b.storage.count() == 0 and b.identity.ed25519_hex in a.replicator.pending_members
    a.peer_overrides.update({b.identity.ed25519_hex: f"127.0.0.1:{cluster.port(b)}"})
    await a.replicator.sync_once()
    assert await b.storage.count() == 1 and a.replicator.pending_members == set()


# --- production HTTP framing: exact Content-Type, binary answers ----------------------------------

async def test_content_types_are_exact(four, cluster):
    """The storage server labels bodies exactly application/json, text/plain (error strings) or
    application/octet-stream (active_nodes_bin), never with a charset parameter."""
    node = four[0]
    acct = account_in_swarm(node.view, SWARM_A)
    other = account_in_swarm(node.view, SWARM_B)
    s, url = cluster.session, cluster.url(node, "/storage_rpc/v1")
    cases = [
        ({"method": "info", "params": {}}, 200, "application/json"),
        ({"method": "retrieve", "params": {"pubkey": acct.session_id}}, 401, "text/plain"),
        ({"method": "retrieve", "params": retrieve_params(other)}, 421, "application/json"),
        ({"method": "nope", "params": {}}, 400, "text/plain"),
        ({"method": "active_nodes_bin", "params": {}}, 200, "application/octet-stream"),
    ]
    for body, status, ctype in cases:
        async with s.post(url, json=body) as r:
            assert (r.status, r.headers["Content-Type"]) == (status, ctype), body
    async with s.get(cluster.url(node, "/get_stats/v1")) as r:
        assert r.headers["Content-Type"] == "application/json"
    async with s.get(cluster.url(node, "/nope")) as r:
        assert (r.status, r.headers["Content-Type"]) == (404, "text/plain")


async def test_active_nodes_bin_over_http_and_through_an_onion(four, cluster):
    node, guard = four[0], four[2]
    async with cluster.session.post(cluster.url(node, "/storage_rpc/v1"),
                                    json={"method": "active_nodes_bin", "params": {}}) as r:
        blob = await r.read()
    assert len(blob) == 51 * 4
    assert {blob[i:i + 32] for i in range(0, len(blob), 51)} == {n.identity.ed25519_public for n in four}
    port = struct.unpack(">H", blob[44:46])[0]
    assert port in {cluster.port(n) for n in four}
    # through an onion request the binary body comes back base64-encoded (request_handler
    # wrap_proxy_response)
    payload = b'{"method": "active_nodes_bin", "params": {}}'
    req = onion.build_onion_request([hop(guard)], hop(node), payload)
    async with cluster.session.post(cluster.url(guard, "/onion_req/v2"), data=req.frame) as r:
        status, inner = onion.decrypt_onion_response(req, await r.read())
    assert status == 200 and base64.b64decode(inner) == blob


async def test_poll_takes_the_list_only_when_the_seed_has_a_new_one(cluster):
    """The node polls with the digest of the last list; an 'unchanged' answer keeps its view
    (and takes the new height), a new list replaces it."""
    node = await cluster.add("sn0")
    peer = node_identity("sn1")
    entries = [seed_entry(node.identity, "127.0.0.1", 1, SWARM_A), seed_entry(peer, "127.0.0.1", 2, SWARM_A)]
    answers = [
        {"height": 10, "block_hash": "aa", "nodes_hash": "h1", "unchanged": False, "service_node_states": entries},
        {"height": 11, "block_hash": "bb", "nodes_hash": "h1", "unchanged": True},
        {"height": 12, "block_hash": "cc", "nodes_hash": "h2", "unchanged": False,
         "service_node_states": entries[:1]},
    ]
    asked: list[str | None] = []

    async def fake(nodes_hash: str | None = None) -> dict[str, Any]:
        asked.append(nodes_hash)
        return answers[len(asked) - 1]

    node.seed.get_service_nodes = fake  # type: ignore[method-assign]
    await node.poll_once()
    first = node.view
    assert set(first.nodes) == {node.identity.ed25519_hex, peer.ed25519_hex} and first.height == 10
    await node.poll_once()
    assert node.view.nodes == first.nodes and node.view.swarms == first.swarms
    assert (node.view.height, node.view.block_hash) == (11, "bb")
    await node.poll_once()
    assert set(node.view.nodes) == {node.identity.ed25519_hex} and node.view.height == 12
    assert asked == ["", "h1", "h1"]
    state = await node.admin_state()
    assert set(state["requests_sent"]) == {"seed", "peers"}


def test_the_fields_a_node_polls_for_make_the_same_view():
    from nodes.snode.seed_client import VIEW_FIELDS
    from nodes.snode.swarm_view import NodeInfo

    full = seed_entry(node_identity("sn5"), "127.0.5.1", 22021, SWARM_B, lmq_port=22025)
    full["storage_server_version"] = [2, 10, 0]
    assert NodeInfo.from_seed({k: v for k, v in full.items() if k in VIEW_FIELDS}) == NodeInfo.from_seed(full)
