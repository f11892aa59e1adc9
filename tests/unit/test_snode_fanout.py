"""Swarm fan-out on the request hot path: one body and signature serve every peer (each request
with the MAC of its own receiver), and requests to a peer reuse one keep-alive connection instead of a new (TLS)
connection each."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nodes.snode.fanout import SwarmFanout
from nodes.snode.peers import H_AUTH, H_SIGNATURE, PeerAuth, PeerAuthError, PeerClient
from nodes.snode.testing import make_view, node_identity

pytestmark = pytest.mark.unit


class FakePeer:
    """A peer's /internal/v1/swarm that records what arrives and on which client connection."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        app = web.Application()
        app.router.add_post("/internal/v1/swarm", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        self.seen.append({"body": body, "headers": dict(request.headers),
                          "conn": request.transport.get_extra_info("peername")})
        return web.json_response({"hash": json.loads(body)["params"]["n"]})


@pytest.fixture
async def peer():
    p = FakePeer()
    await p.server.start_server()
    yield p
    await p.server.close()


def fanout_to(peer: FakePeer, n_peers: int) -> tuple[SwarmFanout, list[Any]]:
    me = node_identity("me")
    others = [node_identity(f"p{i}") for i in range(n_peers)]
    view = make_view(me, {0: [me, *others]})
    client = PeerClient(me, scheme="http")
    # every peer is reached at the fake peer's address (the way link proxies are set)
    client.overrides.update({o.ed25519_hex: f"127.0.0.1:{peer.server.port}" for o in others})
    return SwarmFanout(client, timeout=5.0), view.peers()


async def test_one_body_serves_every_peer_each_request_authenticated_for_its_receiver(peer):
    fanout, peers = fanout_to(peer, 4)
    try:
        results = await fanout.forward(peers, "store", {"n": 1})
    finally:
        await fanout.client.close()
    assert results == {p.pubkey_ed25519: {"hash": 1} for p in peers}
    assert len(peer.seen) == 4
    assert len({r["body"] for r in peer.seen}) == 1  # serialised once
    assert len({r["headers"][H_SIGNATURE] for r in peer.seen}) == 1  # signed once
    assert len({r["headers"][H_AUTH] for r in peer.seen}) == 4  # one MAC per receiver
    me = node_identity("me")
    receivers = [node_identity(f"p{i}") for i in range(4)]
    accepted_by: list[list[str]] = []
    for seen in peer.seen:
        ok = []
        for r in receivers:
            view = make_view(r, {0: [me, *receivers]})
            try:
                sender = PeerAuth(r).verify(seen["headers"], seen["body"], view)
            except PeerAuthError:
                continue
            assert sender.pubkey_ed25519 == me.ed25519_hex
            ok.append(r.ed25519_hex)
        accepted_by.append(ok)
    # each request is accepted by exactly one receiver, and every receiver accepts one
    assert sorted(a for ok in accepted_by for a in ok) == sorted(r.ed25519_hex for r in receivers)
    assert all(len(ok) == 1 for ok in accepted_by)


async def test_requests_to_a_peer_reuse_one_connection(peer):
    fanout, peers = fanout_to(peer, 1)
    try:
        for n in range(10):
            assert await fanout.forward(peers, "store", {"n": n}) == {peers[0].pubkey_ed25519: {"hash": n}}
    finally:
        await fanout.client.close()
    assert len(peer.seen) == 10
    assert len({r["conn"] for r in peer.seen}) == 1  # one keep-alive connection, not ten


async def test_no_peers_sends_nothing(peer):
    fanout, _ = fanout_to(peer, 0)
    try:
        assert await fanout.forward([], "store", {"n": 1}) == {}
    finally:
        await fanout.client.close()
    assert peer.seen == []


def test_pair_key_is_shared_cached_and_bounded():
    a, b, c = node_identity("a"), node_identity("b"), node_identity("c")
    auth_a = PeerAuth(a, max_keys=1)
    assert auth_a.pair_key(b.x25519_hex) == PeerAuth(b).pair_key(a.x25519_hex)
    assert auth_a.pair_key(b.x25519_hex) != auth_a.pair_key(c.x25519_hex)
    assert list(auth_a._keys) == [c.x25519_hex]  # the oldest went beyond max_keys
    with pytest.raises(PeerAuthError, match="no pair key"):
        auth_a.pair_key("00" * 32)  # a low-order point: no shared secret
    with pytest.raises(PeerAuthError, match="no pair key"):
        auth_a.pair_key("zz")
