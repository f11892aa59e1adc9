"""Faults on a real process testnet: Toxiproxy in front of every node, link proxies with peer
overrides, partitions, churn, seeded schedules and the CLI from fresh processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness import rpc
from harness.client import Account, SessionClient
from harness.faults import Faults, RealClock, Schedule, Timeline, run
from harness.network import Testnet
from harness.state import NodeRecord
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]


# -- helpers ----------------------------------------------------------------------------------

def proxied(factory: Callable[..., Testnet], **kw: Any) -> Testnet:
    net = factory(**kw)
    assert net.state.toxiproxy_url, "testnet has no Toxiproxy (state.toxiproxy_url)"
    assert all(n.proxy and n.bind_ip for n in net.nodes)
    return net


def needs_peer_overrides(net: Testnet) -> None:
    try:
        net.node_admin("sn01", "peer_overrides", {}, method="PUT")
    except rpc.RpcError as e:
        if e.status in (404, 405):
            pytest.skip("the storage node has no PUT /admin/v1/peer_overrides endpoint yet: "
                        "single-link faults and partitions cannot be tested")
        raise


async def _rtts(url: str, n: int) -> list[float]:
    out = []
    async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=10)) as s:
        status, _ = await rpc.storage_rpc(s, url, "info", {})  # connect + TLS first
        assert status == 200
        for _ in range(n):
            t0 = time.monotonic()
            status, _ = await rpc.storage_rpc(s, url, "info", {})
            out.append(time.monotonic() - t0)
            assert status == 200
    return out


def rtt(node: NodeRecord, n: int = 5) -> float:
    """Median time of a direct ``info`` storage RPC to the node's public (proxied) address."""
    return statistics.median(rpc.run_sync(_rtts(node.storage_url, n)))


def rtt_min(node: NodeRecord, n: int = 5) -> float:
    """Fastest of ``n`` direct ``info`` round trips: a latency fault adds to every one of them,
    while a loaded machine only makes some slow, so "unaffected" is judged on the fastest."""
    return min(rpc.run_sync(_rtts(node.storage_url, n)))


def fastest_store(node: NodeRecord, session_id: str, tries: int = 3) -> tuple[float, int, Any]:
    """The fastest of ``tries`` stores at ``node`` (see :func:`rtt_min` for why)."""
    return min((store(node, session_id) for _ in range(tries)), key=lambda r: r[0])


def account_in_swarm(net: Testnet, member: str, tag: str = "acct") -> str:
    """A deterministic Session ID owned by the swarm of node ``member``."""
    swarms = net.swarms()
    target = net.node(member).swarm_id
    for i in range(10_000):
        sid = Identity.from_seed(derive_seed(tag, "account", str(i))).session_id
        if swarm_for(swarm_space(sid), swarms) == target:
            return sid
    raise AssertionError("no account found")


def store(node: NodeRecord, session_id: str, data: bytes = b"fault test") -> tuple[float, int, Any]:
    """Store a message directly at ``node`` (namespace 0, no auth): (seconds, status, body).
    The answer waits for the node's fan-out to its swarm peers."""
    now = int(time.time() * 1000)
    params = {"pubkey": session_id, "ttl": 60_000, "timestamp": now,
              "data": base64.b64encode(data + str(now).encode()).decode()}

    async def call() -> tuple[float, int, Any]:
        async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=20)) as s:
            t0 = time.monotonic()
            status, body = await rpc.storage_rpc(s, node.storage_url, "store", params)
            return time.monotonic() - t0, status, body

    return rpc.run_sync(call())


def swarm_failures(body: Any) -> set[str]:
    return {pk for pk, r in (body or {}).get("swarm", {}).items() if r.get("failed")}


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


# -- node faults ------------------------------------------------------------------------------

def test_latency_hits_only_that_node(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    a, b = net.node("sn01"), net.node("sn02")
    assert rtt_min(a) < 0.24 and rtt_min(b) < 0.24
    tl = Timeline()
    with Faults(net, tl) as faults:
        fault = faults.latency("sn01", 250)
        assert rtt_min(a) >= 0.24
        assert rtt_min(b) < 0.24
        fault.remove()
        assert rtt_min(a) < 0.24
    assert [(e.action, e.phase, e.nodes) for e in tl] == [("latency", "apply", ["sn01"]),
                                                          ("latency", "remove", ["sn01"])]


def test_down_refuses_connections_until_up(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    node = net.node("sn02")
    with Faults(net) as faults:
        down = faults.down("sn02")
        t0 = time.monotonic()
        with pytest.raises(rpc.RpcError) as e:
            rtt(node, 1)
        assert time.monotonic() - t0 < 3, "a down node must refuse at once, not time out"
        assert "Connect" in str(e.value) or "refused" in str(e.value).lower()
        assert rtt_min(net.node("sn03"), 3) < 0.5  # the others are unaffected
        down.remove()
        assert rtt_min(node, 3) < 0.5
        # the node process itself kept running all along
        assert net.node_admin("sn02", "state")["ready"]


def test_cli_faults_persist_and_clear_from_fresh_processes(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    r = cli("fault", "latency", "sn03", "--ms", "300", "--name", net.name)
    assert r.returncode == 0, r.stderr
    assert "latency" in r.stdout and "sn03" in r.stdout
    assert rtt_min(net.node("sn03"), 3) >= 0.29
    r = cli("fault", "down", "sn04", "--name", net.name)
    assert r.returncode == 0, r.stderr
    st = cli("fault", "status", "--json", "--name", net.name)
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["nodes"]["sn03"]["toxics"][0]["attributes"]["latency"] == 300
    assert status["nodes"]["sn04"]["enabled"] is False
    r = cli("fault", "clear", "--name", net.name)
    assert r.returncode == 0, r.stderr
    assert rtt_min(net.node("sn03"), 3) < 0.29 and rtt_min(net.node("sn04"), 3) < 0.5
    log = cli("fault", "log", "--json", "--name", net.name)
    events = [json.loads(line) for line in log.stdout.splitlines()]
    assert [(e["action"], e["phase"]) for e in events] == [
        ("latency", "apply"), ("down", "apply"), ("clear", "apply")]
    bad = cli("fault", "latency", "sn99", "--ms", "1", "--name", net.name)
    assert bad.returncode == 1 and "sn99" in bad.stderr and "Traceback" not in bad.stderr
    n = len(net.nodes)
    bad = cli("fault", "kill", f"random:{n + 3}", "--name", net.name)
    assert bad.returncode == 1, bad.stderr
    assert f"asks for {n + 3} nodes but the testnet has {n}" in bad.stderr
    assert all(net.backend.is_running(net.state, x.name) for x in net.nodes)
    missing = cli("fault", "log", "--name", f"{net.name}-nonexistent")
    assert missing.returncode == 1 and "no testnet named" in missing.stderr


# -- link faults and partitions ---------------------------------------------------------------

def test_link_latency_slows_only_that_link(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    needs_peer_overrides(net)
    members = sorted(net.swarms()[net.node("sn01").swarm_id])
    a, b, c = members[:3]
    acct = account_in_swarm(net, a)
    # the link fault adds 600 ms to every store through it: "not delayed" is judged on the
    # fastest of a few tries (a loaded machine slows some, never all)
    assert fastest_store(net.node(a), acct)[0] < 0.55
    with Faults(net) as faults:
        faults.latency(a, 600, link=b)
        took, status, body = store(net.node(a), acct)  # a fans out to b through the link
        assert status == 200 and took >= 0.55, (took, body)
        took, status, body = fastest_store(net.node(c), acct)  # c -> a, c -> b are direct
        assert status == 200 and took < 0.55, (took, body)
        assert rtt_min(net.node(b)) < 0.3  # clients reach b as fast as before
        assert not swarm_failures(body)
    took, status, body = fastest_store(net.node(a), acct)
    assert status == 200 and took < 0.55
    assert not [p for p in Faults(net).toxiproxy.proxies() if "->" in p]
    # the README's command: NODE is the destination, --link A:B is "A's traffic to B"
    r = cli("fault", "latency", b, "--ms", "600", "--link", f"{a}:{b}", "--name", net.name)
    assert r.returncode == 0, r.stderr
    took, status, body = store(net.node(a), acct)
    assert status == 200 and took >= 0.55, (took, body)
    took, status, body = fastest_store(net.node(c), acct)
    assert status == 200 and took < 0.55, (took, body)
    assert cli("fault", "clear", "--name", net.name).returncode == 0
    took, status, body = fastest_store(net.node(a), acct)
    assert status == 200 and took < 0.55


def test_partition_and_heal(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    needs_peer_overrides(net)
    members = sorted(net.swarms()[net.node("sn01").swarm_id])
    a, others = members[0], members[1:]
    acct = account_in_swarm(net, a)
    keys = {n: net.node(n).pubkey_ed25519 for n in members}
    faults = Faults(net)
    faults.partition(a, ",".join(others))
    _, status, body = store(net.node(a), acct)
    assert swarm_failures(body) == {keys[o] for o in others}, body
    _, status, body = store(net.node(others[0]), acct)
    assert swarm_failures(body) == {keys[a]}, body
    assert rtt_min(net.node(a), 3) < 0.5  # clients still reach both sides
    Faults(net).heal()  # a fresh object, as a fresh CLI process would
    _, status, body = store(net.node(a), acct)
    assert status == 200 and not swarm_failures(body), body


# -- churn ------------------------------------------------------------------------------------

async def _send(net: Testnet, to: str, n: int) -> list[str]:
    records: list = []
    async with SessionClient(net.seed_url, Account.generate(), sink=records,
                             retry_backoff=0.05) as alice:
        hashes = []
        for i in range(n):
            rec = await alice.send(to, f"message {i}")
            assert rec.ok, rec
            hashes.append(rec.message_hash)
        return hashes


async def _receive(net: Testnet, bob: Account, count: int) -> set[str]:
    async with SessionClient(net.seed_url, bob, sink=[], retry_backoff=0.05,
                             poll_mode="all") as c:
        got = await c.wait_for(count=count, timeout=30)
        return {m.hash for m in got}


def test_churn_keeps_messages_while_a_swarm_member_survives(
        testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory)
    bob = Account.generate()
    sent = set(asyncio.run(_send(net, bob.session_id, 3)))
    faults = Faults(net)
    # kill two of the three members of bob's swarm: the survivor still serves his messages
    killed = faults.kill(f"swarm-of:{bob.session_id}:2")
    assert len(killed.nodes) == 2
    assert all(not net.backend.is_running(net.state, n) for n in killed.nodes)
    assert asyncio.run(_receive(net, bob, 3)) == sent
    killed.remove()
    net.wait_ready(timeout=60)
    # decommission one member: the swarm is recomputed, the messages stay retrievable
    dec = faults.decommission(f"swarm-of:{bob.session_id}:1")
    gone = net.node(dec.nodes[0]).pubkey_ed25519
    net.wait_for(lambda: gone not in _active_keys(net), timeout=20,
                 what="the seed reporting the decommissioned node inactive")
    assert asyncio.run(_receive(net, bob, 3)) == sent
    dec.remove()


def _active_keys(net: Testnet) -> set[str]:
    async def call() -> set[str]:
        async with rpc.new_session() as s:
            res = await rpc.seed_rpc(s, net.seed_url, "get_n_service_nodes",
                                     {"fields": {"pubkey_ed25519": True, "active": True}})
        return {n["pubkey_ed25519"] for n in res.get("service_node_states", [])
                if n.get("active")}

    return rpc.run_sync(call())


# -- schedules --------------------------------------------------------------------------------

def test_seeded_schedule_replays_identically(testnet_factory: Callable[..., Testnet]):
    net = proxied(testnet_factory, seed="replay")
    acct = Identity.from_seed(derive_seed("replay", "account", "0")).session_id
    mix = {"latency": 2, "bandwidth": 1, "down": 1, "pause": 1, "skew_clock": 1}
    roles = ["random:1", "random:2", f"swarm-of:{acct}:1"]
    gen = Schedule.generate("s1", 4.0, roles=roles, mix=mix, gap=(0.2, 0.5),
                            length=(0.2, 0.6), max_down=1)
    assert len(gen.steps) >= 5
    timelines = []
    for _ in range(2):
        faults = Faults(net, Timeline())
        result = run(Schedule.from_json(gen.to_json()), faults, RealClock())
        assert result.ok, result.errors
        timelines.append(faults.timeline.resolved())
    assert timelines[0] == timelines[1]
    assert {e["action"] for e in timelines[0]} >= {"latency"}
    st = Faults(net).status()
    assert all(p["enabled"] and not p["toxics"] for p in st["nodes"].values())
    assert not st["links"]
    net.wait_ready(timeout=30)  # the testnet is healthy again afterwards


def test_cli_partition_heal_schedule_and_churn(testnet_factory: Callable[..., Testnet],
                                               tmp_path: Any):
    net = proxied(testnet_factory)
    needs_peer_overrides(net)
    r = cli("partition", "sn01", "--from", "sn02,sn03", "--name", net.name)
    assert r.returncode == 0, r.stderr
    links = json.loads(cli("fault", "status", "--json", "--name", net.name).stdout)["links"]
    assert sorted(links) == ["sn01->sn02", "sn01->sn03", "sn02->sn01", "sn03->sn01"]
    assert not any(p["enabled"] for p in links.values())
    r = cli("heal", "--name", net.name)
    assert r.returncode == 0, r.stderr
    assert json.loads(cli("fault", "status", "--json", "--name", net.name).stdout)["links"] == {}

    files = [tmp_path / "a.json", tmp_path / "b.json"]
    for f in files:
        r = cli("schedule", "generate", "--name", net.name, "--duration", "2", "--gap", "0.3",
                "0.5", "--length", "0.2", "0.4", "--mix", "latency=2,down=1", "-o", str(f))
        assert r.returncode == 0, r.stderr
    assert files[0].read_text() == files[1].read_text()
    steps = json.loads(files[0].read_text())["steps"]
    ran = tmp_path / "events.jsonl"
    r = cli("schedule", "run", str(files[0]), "--name", net.name, "--json", "-o", str(ran))
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [json.loads(line) for line in ran.read_text().splitlines()] == events
    assert len([e for e in events if e["phase"] == "apply"]) == len(steps)
    assert all(e["error"] is None for e in events)

    saved = tmp_path / "churn.json"
    r = cli("churn", "--kill", "1", "--interval", "1", "--duration", "2", "--name", net.name,
            "--json", "-o", str(saved))
    assert r.returncode == 0, r.stderr
    assert [s["action"] for s in json.loads(saved.read_text())["steps"]] == ["kill", "kill"]
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(e["action"], e["phase"]) for e in events] == [("kill", "apply"), ("kill", "remove")] * 2
    assert events[0]["nodes"] != events[2]["nodes"]  # the node just back is not taken again
    # the CLI restarted nodes (new pids in the state file): read the testnet again
    Testnet.attach(net.name).wait_ready(timeout=60)
