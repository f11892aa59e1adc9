"""The client without a seed: the pool from a kept node list, refreshed from the service nodes'
own ``get_service_nodes`` (``oxend_request`` through onion paths, keeping what they agree on, as
session-desktop's getSnodePoolFromSnodes), against the in-process fake network."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from harness.client import Account, BootstrapError, NoPathError, SessionClient
from harness.client.fakenet import FakeNetwork, FakeNode
from harness.client.pool import NodePool, agreed, nodes_from_listing
from harness.client.snode import Snode

pytestmark = pytest.mark.unit


def states(net: FakeNetwork, leave_out: set[str] = frozenset()) -> list[dict[str, Any]]:
    return [{"public_ip": n.ip, "storage_port": n.port, "pubkey_ed25519": n.ed25519,
             "pubkey_x25519": n.identity.x25519_hex, "swarm_id": n.swarm_id}
            for n in net.nodes if n.name not in leave_out]


def answer_oxend(net: FakeNetwork, leave_out: dict[str, set[str]] | None = None) -> None:
    """Every node answers ``oxend_request`` ``get_service_nodes`` with the network's list (minus
    ``leave_out[node]``)."""
    def hook(node: FakeNode, method: str, params: dict[str, Any]) -> Any:
        if method != "oxend_request":
            return None
        assert params["endpoint"] == "get_service_nodes"
        gone = (leave_out or {}).get(node.name, set())
        return 200, {"result": {"service_node_states": states(net, gone)}, "t": 0, "hf": [19, 0]}

    for n in net.nodes:
        n.hook = hook


def client(net: FakeNetwork, records: list[Any], nodes: list[Snode] | None) -> SessionClient:
    return SessionClient(net.seed_url, Account.generate(), transport=net, sink=records,
                         rng=random.Random(3), retry_backoff=0.001, nodes=nodes)


def test_listing_parsing_and_agreement():
    net = FakeNetwork()
    listed = nodes_from_listing({"result": {"service_node_states": states(net)}})
    assert listed is not None and [n.ed25519 for n in listed] == [n.ed25519 for n in net.nodes]
    assert nodes_from_listing({"service_node_states": states(net)[:2]}) is not None
    assert nodes_from_listing({"result": {}}) is None and nodes_from_listing("x") is None
    a, b = listed, listed[1:]
    moved = [Snode(listed[2].ed25519, listed[2].x25519, "10.9.9.9", 1)]
    assert agreed([a, b]) == listed[1:]
    assert agreed([a, b, moved]) == []  # same key, another address: no agreement
    assert agreed([]) == []


def test_a_kept_list_is_loaded_as_never_refreshed():
    pool = NodePool()
    pool.load([Snode("aa" * 32, "bb" * 32, "10.0.1.1", 22021)])
    assert len(pool) == 1 and pool.age() is None


async def test_bootstrap_without_a_seed_asks_three_nodes_through_onions():
    net = FakeNetwork(swarms=3)
    kept = [n.snode for n in net.nodes]
    # one node does not list sn09: the agreed pool leaves it out
    answer_oxend(net, {n.name: ({"sn09"} if n.name == "sn01" else set()) for n in net.nodes})
    net.seed_up = False
    records: list[Any] = []
    async with client(net, records, kept) as c:
        await c.bootstrap()
        boot = records[-1]
        assert boot.kind == "bootstrap" and boot.outcome == "ok"
        assert [a.ok for a in boot.attempts if a.method == "get_n_service_nodes"] == [False]
        asked = [a for a in boot.attempts if a.method == "oxend_request" and a.ok]
        assert len(asked) == 3 and all(len(a.path) == 3 for a in asked)  # onion-routed
        assert len({a.destination["ed25519"] for a in asked}) == 3
        asked_sn01 = net.node("sn01").ed25519 in {a.destination["ed25519"] for a in asked}
        assert len(c.pool) == len(net.nodes) - asked_sn01
        assert boot.details["pool_from_nodes"] == len(c.pool)
        assert not [u for kind, u in net.log if kind == "direct" and "oxend" in u]
        bob = Account.generate()
        sent = await c.send(bob.session_id, "no seed needed")
        assert sent.ok


async def test_without_a_seed_and_without_a_kept_list_bootstrap_fails():
    net = FakeNetwork()
    net.seed_up = False
    async with client(net, [], None) as c:
        with pytest.raises(BootstrapError, match="no seed returned a usable service node list"):
            await c.bootstrap()


async def test_nodes_that_do_not_answer_their_list_make_the_refresh_fail():
    net = FakeNetwork(swarms=3)
    net.seed_up = False  # and no node answers oxend_request (the fake network's default: 400)
    async with client(net, [], [n.snode for n in net.nodes]) as c:
        with pytest.raises(BootstrapError, match="the service nodes gave no agreed node list"):
            await c.bootstrap()


async def test_paths_missing_while_no_seed_answers_do_not_deadlock_the_refresh():
    # the paths are gone and none can be built from the pool: the client re-reads the pool; no
    # seed answers, so it asks nodes through onion requests, which need paths themselves. The
    # refresh must run outside the path lock (it deadlocked: a send hung for good)
    net = FakeNetwork(swarms=3)
    answer_oxend(net)
    records: list[Any] = []
    async with SessionClient(net.seed_url, Account.generate(), transport=net, sink=records,
                             rng=random.Random(3), retry_backoff=0.001,
                             pool_min_refresh_interval=0.0) as c:
        await c.bootstrap()
        net.seed_up = False
        c.paths.paths = []
        real = c.policy.graded
        calls = {"n": 0}

        def no_path_once(build: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise NoPathError("test: no path from this pool")
            return real(build)

        c.policy.graded = no_path_once  # type: ignore[method-assign]
        rec = await asyncio.wait_for(c.send(Account.generate().session_id, "hi"), timeout=20)
    assert rec.ok
    boot = [r for r in records if r.kind == "send"][-1]
    seed_tries = [a for a in boot.attempts if a.method == "get_n_service_nodes"]
    assert seed_tries and not any(a.ok for a in seed_tries)  # the refresh ran, seedless
    assert len([a for a in boot.attempts if a.method == "oxend_request" and a.ok]) == 3
