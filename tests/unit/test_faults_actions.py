"""harness.faults.actions: Faults against a fake testnet (nodes' admin state in memory) and the
in-memory Toxiproxy API of test_faults_toxiproxy. ``FakeNet`` is reused by the schedule tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import FaultError, Faults, NetworkView, Target, TargetError, Timeline
from harness.faults.families import DEFAULT_REGISTRY
from harness.faults.families.behaviours import DEFAULT_BEHAVIOURS
from harness.rpc import RpcError
from harness.state import NetworkState, NodeRecord
from harness.topology import Topology, node_index

pytestmark = pytest.mark.unit


class FakeBackend:
    kind = "fake"

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.stopped: set[str] = set()

    def link_address(self, state: NetworkState, src: str, dst: str) -> str:
        return f"127.250.{node_index(dst)}.{node_index(src) + 2}"

    def ensure_address(self, state: NetworkState, ip: str) -> None:
        self.addresses.append(ip)

    def is_running(self, state: NetworkState, target: str) -> bool:
        return target not in self.stopped


class FakeNet:
    """What Faults uses of a Testnet: state, backend, node_admin, churn calls, wait_for."""

    def __init__(self, toxiproxy_url: str | None, seed: str = "unit", nodes: int = 6) -> None:
        topo = Topology(name="fake", swarms=2, swarm_size=nodes // 2, seed=seed)
        self.state = NetworkState(name="fake", backend="fake", topology=topo.to_dict(),
                                  seed_url="http://127.0.0.1:9", admin_token="t", net_index=250)
        if toxiproxy_url:
            self.state.toxiproxy_url = toxiproxy_url
        self.backend = FakeBackend()
        self.calls: list[tuple[str, str]] = []
        self.admin: dict[str, dict[str, Any]] = {}
        self.fail_admin: set[str] = set()
        self.decommissioned: set[str] = set()
        self.fail_churn: set[str] = set()
        for name in topo.node_names():
            self._add(name)

    def _add(self, name: str) -> NodeRecord:
        topo = Topology.from_dict(self.state.topology)
        i = node_index(name)
        ident = topo.node_identity(name)
        rec = NodeRecord(name=name, public_ip=f"127.250.{i}.1", bind_ip=f"127.250.{i}.2",
                         proxy=name, storage_port=22021, admin_port=22030,
                         pubkey_ed25519=ident.ed25519_hex, pubkey_x25519=ident.x25519_hex,
                         swarm_id=100 if i <= 3 else 200)
        self.state.nodes.append(rec)
        self.admin[name] = {"overrides": {}, "clock": 0, "behaviours": dict(DEFAULT_BEHAVIOURS)}
        return rec

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def nodes(self) -> list[NodeRecord]:
        return list(self.state.nodes)

    def node(self, name: str) -> NodeRecord:
        return self.state.node(name)

    def node_admin(self, node: str, path: str, body: Any = None, method: str = "GET") -> Any:
        rec = self.state.node(node)
        if rec.name in self.fail_admin or rec.name in self.backend.stopped:
            raise RpcError(f"{rec.admin_url}/admin/v1/{path}", "connection refused")
        a = self.admin[rec.name]
        if path == "peer_overrides" and method == "PUT":
            for k, v in body.items():
                if v is None:
                    a["overrides"].pop(k, None)
                else:
                    a["overrides"][k] = v
            return dict(a["overrides"])
        if path == "clock":
            if method == "PUT":
                a["clock"] = body["offset_ms"]
            return {"offset_ms": a["clock"]}
        if path == "behaviours":
            if method == "PUT":
                a["behaviours"].update(body)
            return dict(a["behaviours"])
        if path == "state":
            return {"pubkey_ed25519": rec.pubkey_ed25519}
        raise RpcError(f"{rec.admin_url}/admin/v1/{path}", "HTTP 404: not found", 404)

    def _churn(self, op: str, node: str) -> None:
        name = self.state.node(node).name
        if name in self.fail_churn:
            raise RuntimeError(f"cannot {op} {name}")
        self.calls.append((op, name))
        if op in ("kill", "stop"):
            self.backend.stopped.add(name)
            self.admin[name]["overrides"] = {}  # a node forgets overrides when it dies
        if op == "pause":
            self.state.node(name).runtime["paused"] = True
        if op == "unpause":
            self.state.node(name).runtime.pop("paused", None)
        if op == "decommission":
            self.decommissioned.add(name)
        if op == "recommission":
            self.decommissioned.discard(name)
        if op in ("start", "restart"):
            self.backend.stopped.discard(name)
            if op == "restart":
                self.admin[name]["overrides"] = {}

    def kill(self, node: str) -> None:
        self._churn("kill", node)

    def stop(self, node: str) -> None:
        self._churn("stop", node)

    def start(self, node: str) -> None:
        self._churn("start", node)

    def restart(self, node: str) -> None:
        self._churn("restart", node)

    def pause(self, node: str) -> None:
        self._churn("pause", node)

    def unpause(self, node: str) -> None:
        self._churn("unpause", node)

    def decommission(self, node: str) -> None:
        self._churn("decommission", node)

    def recommission(self, node: str) -> None:
        self._churn("recommission", node)

    def add_nodes(self, count: int = 1, *, timeout: float = 60.0) -> list[NodeRecord]:
        start = max(node_index(n.name) for n in self.state.nodes) + 1
        return [self._add(f"sn{i:02d}") for i in range(start, start + count)]

    def wait_for(self, predicate: Any, *, timeout: float = 30.0, poll: float = 0.01,
                 what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(poll)

    def key(self, name: str) -> str:
        return self.state.node(name).pubkey_ed25519


def make_faults(net: FakeNet, **kw: Any) -> Faults:
    return Faults(net, view=lambda: NetworkView.from_state(net.state), **kw)  # type: ignore[arg-type]


@pytest.fixture
def tp() -> Iterator[FakeToxiproxy]:
    f = FakeToxiproxy()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def net(tp: FakeToxiproxy) -> FakeNet:
    n = FakeNet(tp.url)
    # what `testnet up` creates: one proxy per node, advertised address -> node process
    for rec in n.state.nodes:
        tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                "upstream": f"{rec.bind_ip}:22021", "enabled": True, "toxics": {}}
    return n


def test_latency_on_a_node_and_removal(net: FakeNet, tp: FakeToxiproxy):
    tl = Timeline()
    f = make_faults(net, timeline=tl)
    fault = f.latency("sn01", 200, jitter=20)
    assert tp.proxies["sn01"]["toxics"]["latency_downstream"]["attributes"] == {
        "latency": 200, "jitter": 20}
    assert all(not tp.proxies[n]["toxics"] for n in tp.proxies if n != "sn01")
    ev = tl.events[0]
    assert (ev.action, ev.phase, ev.nodes, ev.target) == ("latency", "apply", ["sn01"], "sn01")
    assert ev.params["ms"] == 200 and ev.ok
    fault.remove()
    assert tp.proxies["sn01"]["toxics"] == {}
    assert [(e.action, e.phase) for e in tl] == [("latency", "apply"), ("latency", "remove")]
    assert fault.remove() is None  # once


def test_same_fault_again_replaces_it_and_both_streams(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.latency("sn02", 100)
    f.latency("sn02", 300)
    toxics = tp.proxies["sn02"]["toxics"]
    assert list(toxics) == ["latency_downstream"]
    assert toxics["latency_downstream"]["attributes"]["latency"] == 300
    f.bandwidth("sn03", 64, stream="both")
    assert set(tp.proxies["sn03"]["toxics"]) == {"bandwidth_upstream", "bandwidth_downstream"}
    assert tp.proxies["sn03"]["toxics"]["bandwidth_upstream"]["attributes"] == {"rate": 64}


def test_each_toxic_action_maps_to_its_toxiproxy_type(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.timeout("sn01", 500)
    f.reset("sn02", timeout_ms=10)
    f.slow_close("sn03", 100)
    f.slicer("sn04", 64, 8, 100)
    f.limit_data("sn05", 1000)
    got = {n: [(t["type"], t["attributes"]) for t in tp.proxies[n]["toxics"].values()]
           for n in ("sn01", "sn02", "sn03", "sn04", "sn05")}
    assert got == {
        "sn01": [("timeout", {"timeout": 500})],
        "sn02": [("reset_peer", {"timeout": 10})],
        "sn03": [("slow_close", {"delay": 100})],
        "sn04": [("slicer", {"average_size": 64, "size_variation": 8, "delay": 100})],
        "sn05": [("limit_data", {"bytes": 1000})],
    }
    with pytest.raises(ValueError):
        f.latency("sn01", -1)


def test_link_fault_uses_a_link_proxy_and_a_peer_override(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    fault = f.latency("sn01", 150, link="sn02")
    link = tp.proxies["sn01->sn02"]
    assert link["listen"] == "127.250.2.3:22021"
    assert link["upstream"] == "127.250.2.1:22021"  # through sn02's own proxy
    assert link["enabled"] is True
    assert link["toxics"]["latency_downstream"]["attributes"]["latency"] == 150
    assert "127.250.2.3" in net.backend.addresses
    assert net.admin["sn01"]["overrides"] == {net.key("sn02"): "127.250.2.3:22021"}
    assert tp.proxies["sn01"]["toxics"] == {} and tp.proxies["sn02"]["toxics"] == {}
    assert fault.event is not None and fault.event.links == ["sn01->sn02"]
    # a second fault on the same link shares the proxy; removing one keeps it for the other
    bw = f.bandwidth("sn01", 32, link="sn02")
    fault.remove()
    assert "sn01->sn02" in tp.proxies and set(tp.proxies["sn01->sn02"]["toxics"]) == {
        "bandwidth_downstream"}
    bw.remove()
    assert "sn01->sn02" not in tp.proxies
    assert net.admin["sn01"]["overrides"] == {}


def test_link_fault_rolls_back_when_the_node_cannot_be_pointed_at_it(net: FakeNet,
                                                                      tp: FakeToxiproxy):
    tl = Timeline()
    f = make_faults(net, timeline=tl)
    net.fail_admin.add("sn01")
    with pytest.raises(FaultError) as e:
        f.latency("sn01", 100, link="sn02")
    assert "sn01" in str(e.value) and "sn02" in str(e.value)
    assert "sn01->sn02" not in tp.proxies
    assert tl.events[-1].error and tl.events[-1].phase == "apply"
    assert f.active == []


def test_partition_and_heal_from_a_fresh_process(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    fault = f.partition("sn01,sn02", "sn03")
    links = sorted(n for n in tp.proxies if "->" in n)
    assert links == ["sn01->sn03", "sn02->sn03", "sn03->sn01", "sn03->sn02"]
    assert all(tp.proxies[n]["enabled"] is False for n in links)
    assert net.admin["sn03"]["overrides"] == {net.key("sn01"): "127.250.1.5:22021",
                                              net.key("sn02"): "127.250.2.5:22021"}
    assert fault.result == {"side_a": ["sn01", "sn02"], "side_b": ["sn03"]}
    # another process (another Faults object) heals it, rediscovering the link proxies by name
    tl = Timeline()
    ev = make_faults(net, timeline=tl).heal()
    assert not [n for n in tp.proxies if "->" in n]
    assert all(a["overrides"] == {} for a in net.admin.values())
    assert ev.action == "heal" and len(ev.links) == 4 and ev.nodes == ["sn01", "sn02", "sn03"]


def test_partition_default_other_side_overlap_and_link_toxics_survive_heal(net: FakeNet,
                                                                           tp: FakeToxiproxy):
    f = make_faults(net)
    with pytest.raises(TargetError):
        f.partition("sn01,sn02", "sn02,sn03")
    f.latency("sn01", 50, link="sn04")
    p = f.partition("sn01")
    assert len(p.links) == 2 * 5
    assert tp.proxies["sn01->sn04"]["enabled"] is False
    p.remove()
    # the link proxy carrying a toxic stays (enabled); the others are gone
    assert sorted(n for n in tp.proxies if "->" in n) == ["sn01->sn04"]
    assert tp.proxies["sn01->sn04"]["enabled"] is True
    assert net.admin["sn01"]["overrides"] == {net.key("sn04"): "127.250.4.3:22021"}


def test_down_up_and_clear_from_a_fresh_process(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    d = f.down("sn04")
    assert tp.proxies["sn04"]["enabled"] is False
    d.remove()
    assert tp.proxies["sn04"]["enabled"] is True
    f.down("sn05")
    f.latency("sn01,sn02", 100)
    f.latency("sn03", 10, link="sn06")
    f.skew_clock("sn02", 5000)
    f.misbehave("sn06", drop_stores=True)
    net.backend.stopped.add("sn01")  # a stopped node is skipped, not an error
    ev = make_faults(net).clear()
    assert all(p["enabled"] and not p["toxics"] for p in tp.proxies.values())
    assert not [n for n in tp.proxies if "->" in n]
    assert net.admin["sn02"]["clock"] == 0
    assert net.admin["sn06"]["behaviours"] == DEFAULT_BEHAVIOURS
    assert net.admin["sn03"]["overrides"] == {}
    assert ev.ok and ev.result is None


def test_clear_one_node_keeps_the_others(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.latency("sn01,sn02", 100)
    f.latency("sn03", 10, link="sn04")
    f.clear("sn01", node_side=False)
    assert tp.proxies["sn01"]["toxics"] == {} and tp.proxies["sn02"]["toxics"]
    assert "sn03->sn04" in tp.proxies
    f.clear("sn04", node_side=False)
    assert "sn03->sn04" not in tp.proxies


def test_clock_and_behaviours_restore_previous_values(net: FakeNet):
    f = make_faults(net)
    net.admin["sn01"]["clock"] = 7
    s = f.skew_clock("sn01", -60_000)
    assert net.admin["sn01"]["clock"] == -60_000
    s.remove()
    assert net.admin["sn01"]["clock"] == 7
    m = f.misbehave("sn02", drop_relays=True, delay_ms=300)
    assert net.admin["sn02"]["behaviours"]["drop_relays"] is True
    m.remove()
    assert net.admin["sn02"]["behaviours"] == DEFAULT_BEHAVIOURS
    with pytest.raises(ValueError):
        f.misbehave("sn02", fly=True)


def test_churn_delegates_to_the_testnet_and_undoes(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    k = f.kill("sn03")
    p = f.pause("sn04")
    dc = f.decommission("sn05")
    assert net.calls == [("kill", "sn03"), ("pause", "sn04"), ("decommission", "sn05")]
    f.remove_all()
    assert net.calls[3:] == [("recommission", "sn05"), ("unpause", "sn04"), ("start", "sn03")]
    assert k.removed and p.removed and dc.removed and f.active == []
    added = f.add_nodes(2)
    assert added.nodes == ["sn07", "sn08"]
    with pytest.raises(FaultError):
        added.remove()


def test_restart_points_the_node_at_its_link_proxies_again(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.latency("sn01", 100, link="sn02")
    f.restart("sn01")
    assert net.admin["sn01"]["overrides"] == {net.key("sn02"): "127.250.2.3:22021"}


def test_links_of_stopped_or_paused_nodes_are_set_when_they_come_back(net: FakeNet,
                                                                      tp: FakeToxiproxy):
    f = make_faults(net)
    f.kill("sn03")
    f.pause("sn02")
    net.fail_admin.add("sn02")  # a frozen node does not answer
    p = f.partition("sn03", "sn01,sn02")
    assert net.admin["sn03"]["overrides"] == {} and net.admin["sn02"]["overrides"] == {}
    assert net.admin["sn01"]["overrides"] == {net.key("sn03"): "127.250.3.3:22021"}
    f.start("sn03")
    assert net.admin["sn03"]["overrides"] == {net.key("sn01"): "127.250.1.5:22021",
                                              net.key("sn02"): "127.250.2.5:22021"}
    net.admin["sn02"]["overrides"] = {net.key("sn03"): "127.250.3.4:22021"}  # a stale one
    p.remove()  # sn02 is still frozen: its override cannot be removed now
    net.fail_admin.discard("sn02")
    f.unpause("sn02")
    assert net.admin["sn02"]["overrides"] == {}
    assert not [n for n in tp.proxies if "->" in n]


def test_random_targets_are_seeded(net: FakeNet):
    a = [make_faults(net, seed="x").resolve("random:2") for _ in range(2)]
    assert a[0] == a[1]
    f1, f2 = make_faults(net, seed="x"), make_faults(net, seed="x")
    seq1 = [f1.resolve("random:1") for _ in range(8)]
    seq2 = [f2.resolve("random:1") for _ in range(8)]
    assert seq1 == seq2 and len({tuple(s) for s in seq1}) > 1
    assert make_faults(net, seed="x", first_call=3).resolve("random:1") == seq1[3]


def test_swarm_and_guard_targets(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net, guard_provider=lambda: net.key("sn05"))
    assert f.resolve("swarm:100") == ["sn01", "sn02", "sn03"]
    assert f.latency("guard", 10).nodes == ["sn05"]
    f.set_guard_provider(lambda: "sn06")
    assert f.resolve(Target.parse("guard")) == ["sn06"]


def test_apply_dispatch_checks_parameters(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    fault = f.apply("latency", "sn01", ms=10, link="sn02")
    assert fault.links == [("sn01", "sn02")] and fault.params["link"] == "sn02"
    with pytest.raises(ValueError, match="no parameter"):
        f.apply("latency", "sn01", ms=10, colour="red")
    with pytest.raises(ValueError, match="needs parameter"):
        f.apply("bandwidth", "sn01")
    with pytest.raises(ValueError, match="unknown fault action"):
        f.apply("explode", "sn01")
    p = f.apply("partition", "sn01", **{"from": "sn02"})
    assert sorted(p.link_names()) == ["sn01->sn02", "sn02->sn01"]
    assert {p.name for p in DEFAULT_REGISTRY.get("latency").params} == {
        "ms", "jitter", "link", "stream"}


def test_without_toxiproxy_network_faults_say_what_is_missing():
    net = FakeNet(None)
    f = make_faults(net)
    with pytest.raises(FaultError, match="no Toxiproxy"):
        f.latency("sn01", 10)
    f.kill("sn01")  # churn still works
    assert net.calls == [("kill", "sn01")]


@pytest.fixture
def real_net(tp: FakeToxiproxy) -> FakeNet:
    """sn01 is a real storage server: no admin interface, two proxies (HTTPS and OxenMQ)."""
    n = FakeNet(tp.url)
    for rec in n.state.nodes:
        tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                "upstream": f"{rec.bind_ip}:22021", "enabled": True, "toxics": {}}
    real = n.state.node("sn01")
    real.kind, real.admin_port, real.omq_port, real.omq_bind_port = "oxen-storage", 0, 26000, 26001
    tp.proxies["sn01-omq"] = {"name": "sn01-omq", "listen": f"{real.public_ip}:26000",
                              "upstream": f"{real.bind_ip}:26001", "enabled": True, "toxics": {}}
    return n


def test_network_faults_on_a_real_node_act_on_every_proxy_in_front_of_it(real_net: FakeNet,
                                                                          tp: FakeToxiproxy):
    f = make_faults(real_net)
    lat = f.latency("sn01", 200)
    assert "latency_downstream" in tp.proxies["sn01"]["toxics"]
    assert "latency_downstream" in tp.proxies["sn01-omq"]["toxics"]  # node-to-node OxenMQ too
    lat.remove()
    assert tp.proxies["sn01-omq"]["toxics"] == {}
    down = f.down("sn01")
    assert not tp.proxies["sn01"]["enabled"] and not tp.proxies["sn01-omq"]["enabled"]
    down.remove()
    assert tp.proxies["sn01"]["enabled"] and tp.proxies["sn01-omq"]["enabled"]


@pytest.mark.parametrize("apply", [
    lambda f: f.skew_clock("sn01", 5000),
    lambda f: f.misbehave("sn01", drop_stores=True),
    lambda f: f.partition("sn01", "sn02"),
    lambda f: f.latency("sn02", 100, link="sn01"),
], ids=["skew", "misbehave", "partition", "link-latency"])
def test_faults_a_real_node_cannot_take_are_refused_naming_it(real_net: FakeNet, tp: FakeToxiproxy,
                                                              apply: Any):
    f = make_faults(real_net)
    with pytest.raises(ValueError, match=r"sn01.*oxen-storage|oxen-storage.*sn01"):
        apply(f)
    assert real_net.admin["sn01"]["clock"] == 0 and not f.active
    assert [n for n in tp.proxies if "->" in n] == []  # no link proxy was left behind


def test_clear_skips_node_side_resets_on_nodes_without_an_admin_interface(real_net: FakeNet):
    f = make_faults(real_net)
    f.skew_clock("sn02", 5000)
    real_net.fail_admin.add("sn01")  # would fail if clear called sn01's (absent) admin interface
    ev = f.clear()
    assert real_net.admin["sn02"]["clock"] == 0 and not (ev.result or {}).get("errors")


@pytest.mark.parametrize("action", ["pause", "kill"])
def test_a_real_node_comes_back_without_asking_its_absent_admin_interface(real_net: FakeNet,
                                                                          action: str):
    """Unpause and start restore peer overrides through the admin interface on our nodes; a
    real server has none, so bringing it back must not wait for one (it did: 30 s, then fail)."""
    f = make_faults(real_net)
    real_net.fail_admin.add("sn01")  # any admin call to sn01 fails, as on the real server
    fault = getattr(f, action)("sn01")
    fault.remove()
    assert real_net.calls[-1] == ("unpause" if action == "pause" else "start", "sn01")
