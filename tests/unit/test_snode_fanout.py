"""Swarm fan-out on the request hot path: one signed request serves every peer, and requests to a
peer reuse one keep-alive connection instead of a new (TLS) connection each."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nodes.protocol.keys import verify_ed25519
from nodes.snode.fanout import SwarmFanout
from nodes.snode.peers import H_SIGNATURE, H_TIMESTAMP, PeerClient, signed_message
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


async def test_one_signature_serves_every_peer(peer):
    fanout, peers = fanout_to(peer, 4)
    try:
        results = await fanout.forward(peers, "store", {"n": 1})
    finally:
        await fanout.client.close()
    assert results == {p.pubkey_ed25519: {"hash": 1} for p in peers}
    assert len(peer.seen) == 4
    bodies = {r["body"] for r in peer.seen}
    sigs = {r["headers"][H_SIGNATURE] for r in peer.seen}
    assert len(bodies) == 1 and len(sigs) == 1  # built and signed once
    seen = peer.seen[0]
    me = node_identity("me")
    assert verify_ed25519(me.ed25519_public, signed_message(seen["headers"][H_TIMESTAMP], seen["body"]),
                          base64.b64decode(seen["headers"][H_SIGNATURE]))


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
