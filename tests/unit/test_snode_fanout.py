"""Swarm fan-out on the request hot path: one body and signature serve every peer (each request
with the MAC of its own receiver), and requests to a peer reuse one keep-alive connection instead of a new (TLS)
connection each."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nodes.snode.fanout import MAX_BUNDLE_REQUESTS, SwarmFanout
from nodes.snode.peers import H_AUTH, H_SIGNATURE, PeerAuth, PeerAuthError, PeerClient
from nodes.snode.testing import make_view, node_identity

pytestmark = pytest.mark.unit


class FakePeer:
    """A peer's /internal/v1/swarm that records what arrives and on which client connection."""

    def __init__(self, knows_bundles: bool = True) -> None:
        self.seen: list[dict[str, Any]] = []
        self.knows_bundles = knows_bundles
        self.gate: asyncio.Event | None = None  # when set, a request waits for it
        self.delay = 0.0
        app = web.Application()
        app.router.add_post("/internal/v1/swarm", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        self.seen.append({"body": body, "headers": dict(request.headers),
                          "conn": request.transport.get_extra_info("peername")})
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        doc = json.loads(body)
        if doc["method"] == "bundle":
            if not self.knows_bundles:  # what a node of an earlier version answers
                return web.Response(status=400, text="invalid swarm request: unknown method 'bundle'")
            return web.json_response({"results": [self.answer(r["params"]) for r in doc["params"]["requests"]]})
        a = self.answer(doc["params"])
        return web.json_response(a["body"], status=a["status"]) if a["status"] == 200 else \
            web.Response(status=a["status"], text=a["body"])

    @staticmethod
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("refuse"):
            return {"status": 406, "body": "Timestamp error: check your clock"}
        return {"status": 200, "body": {"hash": params["n"]}}

    def methods(self) -> list[Any]:
        """What each request carried: its "n", or the list of "n"s of a bundle."""
        out: list[Any] = []
        for seen in self.seen:
            doc = json.loads(seen["body"])
            out.append([r["params"]["n"] for r in doc["params"]["requests"]] if doc["method"] == "bundle"
                       else doc["params"]["n"])
        return out


@pytest.fixture
async def peer():
    p = FakePeer()
    await p.server.start_server()
    yield p
    await p.server.close()


def fanout_to(peer: FakePeer, n_peers: int, timeout: float = 5.0,
              max_wait: float = 10.0) -> tuple[SwarmFanout, list[Any]]:
    me = node_identity("me")
    others = [node_identity(f"p{i}") for i in range(n_peers)]
    view = make_view(me, {0: [me, *others]})
    client = PeerClient(me, scheme="http")
    # every peer is reached at the fake peer's address (the way link proxies are set)
    client.overrides.update({o.ed25519_hex: f"127.0.0.1:{peer.server.port}" for o in others})
    return SwarmFanout(client, timeout=timeout, max_wait=max_wait), view.peers()


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


async def _until_seen(peer: FakePeer, n: int) -> None:
    for _ in range(500):
        if len(peer.seen) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the peer saw {len(peer.seen)} requests, not {n}")


async def test_requests_that_come_while_one_is_in_flight_go_as_one_bundle(peer):
    fanout, peers = fanout_to(peer, 1)
    pk = peers[0].pubkey_ed25519
    peer.gate = asyncio.Event()
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(peer, 1)  # in flight, held by the peer
        rest = [asyncio.ensure_future(fanout.forward(peers, "store", {"n": n})) for n in range(1, 6)]
        await asyncio.sleep(0.05)
        assert len(peer.seen) == 1 and fanout.stats()["waiting"] == 5  # they wait for the first
        peer.gate.set()
        assert await first == {pk: {"hash": 0}}
        assert [await r for r in rest] == [{pk: {"hash": n}} for n in range(1, 6)]
    finally:
        await fanout.client.close()
    assert peer.methods() == [0, [1, 2, 3, 4, 5]]
    assert fanout.stats() == {"bundles_sent": 1, "bundled_requests": 5, "waiting": 0}
    # the bundle is authenticated for its receiver like any request
    receiver = node_identity("p0")
    view = make_view(receiver, {0: [node_identity("me"), receiver]})
    bundle = peer.seen[1]
    assert PeerAuth(receiver).verify(bundle["headers"], bundle["body"], view).pubkey_ed25519 == \
        node_identity("me").ed25519_hex


async def test_a_bundle_carries_at_most_its_limit_and_each_answer_goes_to_its_request(peer):
    fanout, peers = fanout_to(peer, 1)
    pk = peers[0].pubkey_ed25519
    peer.gate = asyncio.Event()
    count = MAX_BUNDLE_REQUESTS + 6
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(peer, 1)
        rest = [asyncio.ensure_future(fanout.forward(peers, "store", {"n": n, "refuse": n % 7 == 0}))
                for n in range(1, count + 1)]
        await asyncio.sleep(0.05)
        peer.gate.set()
        await first
        answers = [await r for r in rest]
    finally:
        await fanout.client.close()
    methods = peer.methods()  # the two bundles leave together, in either order
    assert methods[0] == 0 and sorted(methods[1:], key=len) == [
        list(range(MAX_BUNDLE_REQUESTS + 1, count + 1)), list(range(1, MAX_BUNDLE_REQUESTS + 1))]
    for n, answer in zip(range(1, count + 1), answers, strict=True):
        # an error inside a bundle reads as the same error sent on its own would
        assert answer[pk] == ({"failed": True, "code": "406", "reason": "Timestamp error: check your clock"}
                              if n % 7 == 0 else {"hash": n})


async def test_waiting_requests_go_after_max_wait_when_the_peer_is_slow(peer):
    fanout, peers = fanout_to(peer, 1, max_wait=0.05)
    pk = peers[0].pubkey_ed25519
    peer.gate = asyncio.Event()
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(peer, 1)
        rest = [asyncio.ensure_future(fanout.forward(peers, "store", {"n": n})) for n in (1, 2)]
        # the first is still held by the peer: the two waiting ones leave as a bundle anyway
        await _until_seen(peer, 2)
        assert not first.done() and fanout.stats()["waiting"] == 0
        peer.gate.set()
        assert [await r for r in [first, *rest]] == [{pk: {"hash": n}} for n in range(3)]
    finally:
        await fanout.client.close()
    assert peer.methods() == [0, [1, 2]]


async def test_a_peer_that_does_not_know_bundles_gets_each_request_on_its_own():
    old = FakePeer(knows_bundles=False)
    await old.server.start_server()
    fanout, peers = fanout_to(old, 1)
    pk = peers[0].pubkey_ed25519
    old.gate = asyncio.Event()
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(old, 1)
        rest = [asyncio.ensure_future(fanout.forward(peers, "store", {"n": n})) for n in (1, 2, 3)]
        await asyncio.sleep(0.05)
        old.gate.set()
        assert [await r for r in [first, *rest]] == [{pk: {"hash": n}} for n in range(4)]
        # from now on nothing waits: every request goes at once, on its own
        later = await asyncio.gather(*(fanout.forward(peers, "store", {"n": n}) for n in (4, 5)))
        assert later == [{pk: {"hash": 4}}, {pk: {"hash": 5}}]
    finally:
        await fanout.client.close()
        await old.server.close()
    methods = old.methods()
    assert methods[:2] == [0, [1, 2, 3]]  # the refused bundle
    assert sorted(methods[2:]) == [1, 2, 3, 4, 5]
    assert fanout.stats()["bundles_sent"] == 0


async def test_waiting_counts_against_a_requests_timeout(peer):
    fanout, peers = fanout_to(peer, 1, timeout=1.0)
    pk = peers[0].pubkey_ed25519
    peer.delay = 5.0  # a peer that never answers in time
    t0 = time.monotonic()
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(peer, 1)
        rest = await asyncio.gather(*(fanout.forward(peers, "store", {"n": n}) for n in (1, 2)))
        assert await first == {pk: {"failed": True, "timeout": True}}
    finally:
        await fanout.client.close()
    assert rest == [{pk: {"failed": True, "timeout": True}}] * 2
    # the waiting requests had spent their second behind the first: they are not given another
    assert time.monotonic() - t0 < 1.8


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


async def test_a_failing_bundle_answers_its_requests_as_failed(peer, monkeypatch):
    fanout, peers = fanout_to(peer, 1, max_wait=0.01)
    pk = peers[0].pubkey_ed25519

    async def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(fanout, "_send_batch", broken)
    peer.gate = asyncio.Event()
    try:
        first = asyncio.ensure_future(fanout.forward(peers, "store", {"n": 0}))
        await _until_seen(peer, 1)
        rest = await asyncio.wait_for(asyncio.gather(
            *(fanout.forward(peers, "store", {"n": n}) for n in (1, 2))), 5.0)
        peer.gate.set()
        assert await first == {pk: {"hash": 0}}
    finally:
        await fanout.client.close()
    assert rest == [{pk: {"failed": True, "timeout": True}}] * 2  # not left waiting
    assert fanout.stats()["waiting"] == 0 and fanout._lanes[pk].in_flight == 0
