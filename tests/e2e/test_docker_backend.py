"""The docker backend end to end: real containers on a per-testnet bridge network."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker.errors
import pytest
from sweep_support import sweep_removes  # tests/ is on sys.path

from harness import rpc
from harness.backends.docker_engine import LABEL, LABEL_HOST, LABEL_OWNER, LABEL_STATE
from harness.backends.docker_gc import EngineLeftoverWarning
from harness.backends.docker_net import subnet_of
from harness.images import ensure_images
from harness.naming import unique_name
from harness.network import NotReadyError, Testnet, clean
from harness.state import StateDir
from harness.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: the warm `up` target for the default topology on a 2-core machine
WARM_UP_TARGET_S = 15.0


@pytest.fixture(scope="module")
def client():
    try:
        c = docker.from_env()
        c.ping()
    except Exception as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    ensure_images(c)  # build once up front: the timings below are of warm starts
    try:
        yield c
    finally:
        c.close()


def labelled(client: Any, name: str) -> dict[str, list[str]]:
    f = {"label": f"{LABEL}={name}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=f, ignore_removed=True)],
        "networks": [n.name for n in client.networks.list(filters=f)],
        "volumes": [v.name for v in client.volumes.list(filters=f)],
    }


NOTHING: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}


def up(name: str, **topology: Any) -> Testnet:
    return Testnet.up(Topology(name=name, **topology), backend="docker", timeout=60)


@pytest.fixture
def small_net(client):
    """A testnet without proxies (the lifecycle does not depend on them)."""
    net = up(unique_name("dk"), proxies=False)
    try:
        yield net
    finally:
        net.down()


# -- message helpers (namespace -10 needs no signature) -------------------------------------------

async def _store_and_find(net: Testnet) -> tuple[str, str, list[str]]:
    """Store one message for a fresh account; return (session id, data, names of its swarm)."""
    sid = "05" + secrets.token_hex(32)
    data = base64.b64encode(secrets.token_bytes(48)).decode()
    by_key = {n.pubkey_ed25519: n for n in net.nodes}
    async with rpc.new_session() as s:
        status, body = await rpc.storage_rpc(s, net.nodes[0].storage_url, "get_swarm", {"pubkey": sid})
        assert status == 200, body
        members = [by_key[sn["pubkey_ed25519"]] for sn in body["snodes"]]
        status, body = await rpc.storage_rpc(s, members[0].storage_url, "store", {
            "pubkey": sid, "namespace": -10, "timestamp": int(time.time() * 1000),
            "ttl": 3_600_000, "data": data})
        assert status == 200, body
    return sid, data, [m.name for m in members]


async def _retrieve(net: Testnet, node: str, sid: str) -> list[str]:
    """Messages of ``sid`` (namespace -10) as ``node`` returns them; when the swarm layout moved
    the account elsewhere (421), follow the 421's swarm like a client does."""
    by_key = {n.pubkey_ed25519: n for n in net.nodes}
    url = net.node(node).storage_url
    async with rpc.new_session() as s:
        for _ in range(3):
            status, body = await rpc.storage_rpc(s, url, "retrieve", {"pubkey": sid, "namespace": -10})
            if status != 421:
                break
            url = by_key[body["snodes"][0]["pubkey_ed25519"]].storage_url
    assert status == 200, body
    return [m["data"] for m in body["messages"]]


# -- tests ----------------------------------------------------------------------------------------

def test_default_topology_up_down_leaves_nothing(client):
    name = unique_name("dk")
    t0 = time.monotonic()
    net = up(name)
    elapsed = time.monotonic() - t0
    try:
        print(f"\nwarm `up` of the default topology (6 nodes, proxies): {elapsed:.1f}s")
        res = labelled(client, name)
        # seed, 6 nodes, the file server, the proxy host and Toxiproxy
        assert sorted(res["containers"]) == sorted(
            [f"st-{name}-{t}" for t in ("seed", "proxyhost", "toxiproxy", "fileserver")]
            + [f"st-{name}-{n.name}" for n in net.nodes])
        assert res["networks"] == [f"st-{name}"]
        assert sorted(res["volumes"]) == sorted(
            f"st-{name}-{t}" for t in ["seed", "fileserver"] + [n.name for n in net.nodes])

        sub = subnet_of(net.state.net_index)
        assert 128 <= net.state.net_index <= 254
        assert net.seed_url == f"http://10.{net.state.net_index}.0.2:22023"
        for node in net.nodes:
            i = int(node.name[2:])
            assert node.public_ip == f"10.{net.state.net_index}.{i}.1"  # its proxy
            assert node.bind_ip == f"10.{net.state.net_index}.{i}.2"  # the container
            c = client.containers.get(f"st-{name}-{node.name}")
            ip = c.attrs["NetworkSettings"]["Networks"][f"st-{name}"]["IPAddress"]
            assert ip == node.bind_ip and ipaddress.ip_address(ip) in sub
            labels = c.labels
            assert labels[LABEL] == name and labels[LABEL_STATE] == str(StateDir(name).path)
            assert labels[LABEL_OWNER] == str(os.getpid()) and labels[LABEL_HOST]
        # every container of the node image imports its code from the image's code volumes
        # (read-only), the ones everybody waits for have more CPU weight
        assert len(net.state.code_volumes) == 3, net.state.code_volumes
        for t in ("seed", "proxyhost", "toxiproxy", "fileserver", net.nodes[0].name):
            c = client.containers.get(f"st-{name}-{t}")
            code = {(m["Destination"], m["Name"], m["RW"]) for m in c.attrs["Mounts"]
                    if m["Destination"] in net.state.code_volumes}
            if t == "toxiproxy" and c.image.tags and c.image.tags[0] != net.state.image:
                continue  # the official Toxiproxy image: its own code
            assert code == {(p, v, False) for p, v in net.state.code_volumes.items()}, (t, code)
            shares = c.attrs["HostConfig"]["CpuShares"]
            assert shares == (4096 if t in ("seed", "proxyhost", "toxiproxy") else 0), (t, shares)
        status = net.status()
        assert all(n["ready"] and n["running"] for n in status["nodes"]), status
        assert status["toxiproxy"]["running"]
        assert len(net.swarms()) == 2
        assert elapsed < 2 * WARM_UP_TARGET_S, f"warm up took {elapsed:.1f}s"
    finally:
        net.down()
    assert labelled(client, name) == NOTHING
    assert not StateDir(name).exists()


def test_restart_and_kill_keep_messages(client, small_net):
    net = small_net
    sid, data, members = asyncio.run(_store_and_find(net))
    node = members[0]
    assert data in asyncio.run(_retrieve(net, node, sid))

    for how in ("stop", "kill"):
        getattr(net, how)(node)
        assert not net.backend.is_running(net.state, node)
        net.start(node)
        # straight from the node's own database on its volume, before it even rejoins its swarm
        count = net.wait_for(lambda n=node: _admin_messages(net, n), timeout=30,
                             what=f"{node} admin interface after {how}")
        assert count >= 1
        net.wait_ready(timeout=30)
        net.wait_for(lambda n=node: data in asyncio.run(_retrieve(net, n, sid)), timeout=20,
                     what=f"the message stored before the {how} to be retrievable")


def _admin_messages(net: Testnet, node: str) -> int | None:
    try:
        return int(net.node_admin(node, "state")["messages"])
    except rpc.RpcError:
        return None


def test_secrets_not_in_container_commands_and_admin_needs_the_token(client, small_net):
    """Issue 12, findings 2-3 on docker: secrets reach containers through their environment,
    never their command line; a node's admin port refuses calls without the admin token."""
    net = small_net
    token = net.state.admin_token
    secret_values = [token, net.topology.seed] + [net.topology.node_identity(n.name).seed_hex
                                                 for n in net.nodes]
    for target in ["seed"] + [n.name for n in net.nodes]:
        c = client.containers.get(net.backend.container_name(net.state, target))
        cmd = c.attrs["Config"]["Cmd"]
        assert not [a for a in cmd for v in secret_values if v in a or a == v], (target, cmd)
        assert f"SESSION_TESTNET_ADMIN_TOKEN={token}" in c.attrs["Config"]["Env"]

    async def anonymous() -> int:
        async with rpc.new_session() as s, s.get(f"{net.node('sn01').admin_url}/admin/v1/state") as r:
            return r.status

    assert asyncio.run(anonymous()) == 401
    assert net.node_admin("sn01", "state")["ready"] is True


def test_logs_tail_and_follow(small_net):
    tail = small_net.logs("sn01", tail=5)
    lines = [json.loads(x) for x in tail.splitlines() if x.startswith("{")]
    assert lines and all(entry.get("node") == "sn01" for entry in lines)
    assert len(tail.splitlines()) <= 5
    seed_log = small_net.logs("seed")
    assert seed_log.strip(), "the seed logged nothing"

    got: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for line in small_net.follow_logs("sn02"):
            got.append(line)
            if len(got) >= 2:
                break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    assert done.wait(20), "follow_logs yielded nothing"
    assert json.loads(got[0])["node"] == "sn02"


def test_two_testnets_at_once(client):
    names = [unique_name("dka"), unique_name("dkb")]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(up, n, proxies=False, seed=f"two-{i}") for i, n in enumerate(names)]
        nets: list[Testnet] = []
        errors = []
        for f in futures:
            try:
                nets.append(f.result())
            except Exception as e:  # keep going: the other one must be torn down too
                errors.append(e)
    try:
        assert not errors, errors
        a, b = nets
        assert a.state.net_index != b.state.net_index
        assert not subnet_of(a.state.net_index).overlaps(subnet_of(b.state.net_index))
        for net in nets:
            assert all(n["ready"] for n in net.status()["nodes"])
        # a message in one testnet is not in the other
        sid, data, members = asyncio.run(_store_and_find(a))
        other = [n.name for n in b.nodes]
        seen = [asyncio.run(_retrieve(b, n, sid)) for n in other[:1]]
        assert data not in seen[0]
        # the stale sweep leaves running testnets alone
        assert not set(clean()) & set(names)
        assert all(labelled(client, n)["containers"] for n in names)
    finally:
        for net in nets:
            net.down()
    for n in names:
        assert labelled(client, n) == NOTHING


def test_sigkill_during_up_then_clean_leaves_nothing(client):
    name = unique_name("dkkill")
    code = ("from harness.network import Testnet; from harness.topology import Topology; "
            f"Testnet.up(Topology(name={name!r}), backend='docker', timeout=120, lease=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while len(labelled(client, name)["containers"]) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        assert labelled(client, name)["containers"], "up never started a container"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert StateDir(name).exists()
    assert labelled(client, name)["networks"]
    sweep_removes(name)
    assert labelled(client, name) == NOTHING
    assert not StateDir(name).exists()


def test_failed_up_saves_logs_and_removes_everything(client, monkeypatch):
    from harness import network

    name = unique_name("dkfail")
    real = network.Testnet.node_argv

    def broken(self, node):
        argv = real(self, node)
        return argv + ["--no-such-flag"] if node.name == "sn02" else argv

    monkeypatch.setattr(network.Testnet, "node_argv", broken)
    with warnings.catch_warnings(record=True) as warned, pytest.raises(NotReadyError) as err:
        warnings.simplefilter("always", EngineLeftoverWarning)
        up(name, proxies=False)
    msg = str(err.value)
    assert "sn02" in msg and "exited" in msg
    assert "--- last log lines of sn02 ---" in msg and "--no-such-flag" in msg
    saved = err.value.artifacts
    assert saved is not None
    assert "--no-such-flag" in (saved / "sn02.log").read_text()
    assert (saved / "seed.log").read_text().strip()
    left = labelled(client, name)
    if left["networks"] and not left["containers"] and not left["volumes"]:
        # Docker 20.10 now and then keeps a network with an endpoint of a container that no
        # longer exists and refuses to remove it until it restarts (seen twice under heavy
        # load): not the harness's leftover, but it must have been told apart and reported
        engine_faults = [str(w.message) for w in warned
                         if issubclass(w.category, EngineLeftoverWarning)]
        assert any(n in m for n in left["networks"] for m in engine_faults), (left, engine_faults)
        pytest.xfail(f"the engine keeps {left['networks']} (an engine fault, reported as such)")
    assert left == NOTHING
    assert not StateDir(name).exists()


def test_clean_removes_a_state_whose_up_died_before_creating_anything(client):
    from harness.backends.docker import DockerBackend

    name = unique_name("dkdead")
    sd = StateDir(name)
    sd.create()
    state = DockerBackend(sd, client).plan(Topology(name=name), admin_token="t")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.owner_pid = dead.pid  # an `up` that was killed while it was still building images
    sd.save(state)
    try:
        sweep_removes(name)
        assert not sd.exists()
    finally:
        sd.remove()
