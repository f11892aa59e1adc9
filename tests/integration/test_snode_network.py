"""Storage nodes as real processes, on testnets started by the harness (process backend, a
Toxiproxy proxy in front of every node).

Clients reach a node at its advertised address (``NodeRecord.public_ip``: its proxy); admin calls
go to ``NodeRecord.admin_url``.  Read-mostly checks share the harness's module-scoped ``testnet``
(2 swarms × 3 nodes); checks that change the topology start their own with ``testnet_factory``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3  # noqa: F401 - referenced by the filterwarnings mark

from harness.network import Testnet
from harness.state import NodeRecord
from nodes.protocol import onion, signing
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

ROOT = Path(__file__).resolve().parents[2]


class InsecureSession(requests.Session):
    """Nodes use self-signed certificates; verify=False per request also beats REQUESTS_CA_BUNDLE."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = False
        kwargs.setdefault("timeout", 15)
        return super().request(*args, **kwargs)


@pytest.fixture(scope="module")
def http() -> Iterator[InsecureSession]:
    with InsecureSession() as s:
        yield s


# --- helpers -------------------------------------------------------------------------------------

def now_ms() -> int:
    return int(time.time() * 1000)


def account(i: int, tag: str = "a") -> Identity:
    return Identity.from_seed(derive_seed("snode-itest-accounts", tag, str(i)))


def store_params(acct: Identity, data: bytes, ttl: int = 600_000) -> dict[str, Any]:
    return {"pubkey": acct.session_id, "timestamp": now_ms(), "ttl": ttl,
            "data": base64.b64encode(data).decode()}


def retrieve_params(acct: Identity) -> dict[str, Any]:
    ts = now_ms()
    return {"pubkey": acct.session_id, "timestamp": ts, "pubkey_ed25519": acct.ed25519_hex,
            "signature": signing.sign_request(acct, signing.retrieve_message(0, ts))}


def rpc(http: requests.Session, node: NodeRecord, method: str, params: dict[str, Any]) -> tuple[int, Any]:
    r = http.post(f"{node.storage_url}/storage_rpc/v1", json={"method": method, "params": params})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def retrieved(http: requests.Session, node: NodeRecord, acct: Identity) -> list[str]:
    status, body = rpc(http, node, "retrieve", retrieve_params(acct))
    assert status == 200, f"retrieve on {node.name}: {status} {body}"
    return [m["hash"] for m in body["messages"]]


def holds(http: requests.Session, node: NodeRecord, acct: Identity, h: str) -> bool:
    """For polling: `node` serves message `h` of `acct` (False while it answers anything but 200)."""
    status, body = rpc(http, node, "retrieve", retrieve_params(acct))
    return status == 200 and h in [m["hash"] for m in body["messages"]]


def swarm_of(net: Testnet, acct: Identity, swarms: dict[int, list[str]] | None = None) -> list[NodeRecord]:
    """The members of the swarm that owns `acct` (in `swarms`, default: the harness's last view)."""
    swarms = net.swarms() if swarms is None else swarms
    sid = swarm_for(swarm_space(acct.session_id), swarms.keys())
    return [net.node(name) for name in swarms[sid]]


def hop(node: NodeRecord) -> onion.OnionHop:
    return onion.OnionHop(bytes.fromhex(node.pubkey_ed25519), bytes.fromhex(node.pubkey_x25519))


def running(net: Testnet, name: str) -> bool:
    return net.backend.is_running(net.state, name)


def settled(net: Testnet, n_swarms: int) -> dict[int, list[str]] | None:
    """The swarm map once every node is ready and the seed has `n_swarms` swarms."""
    r = net.refresh()
    swarms = net.swarms()
    return swarms if r.ready and len(swarms) == n_swarms else None


# --- one shared network, several checks ----------------------------------------------------------

def test_store_on_one_member_retrieve_on_another(testnet, http):
    acct = account(1)
    members = swarm_of(testnet, acct)
    status, body = rpc(http, members[0], "store", store_params(acct, b"hello swarm"))
    assert status == 200, body
    h = message_hash(acct.session_id, 0, b"hello swarm")
    assert body["hash"] == h
    assert sorted(body["swarm"]) == sorted(m.pubkey_ed25519 for m in members)
    assert all(r["hash"] == h and not r.get("failed") for r in body["swarm"].values())
    for m in members[1:]:
        assert retrieved(http, m, acct) == [h]


def test_wrong_swarm_421(testnet, http):
    acct = account(2)
    members = swarm_of(testnet, acct)
    other = next(n for n in testnet.nodes if n.name not in {m.name for m in members})
    status, body = rpc(http, other, "store", store_params(acct, b"x"))
    assert status == 421
    assert sorted(s["pubkey_ed25519"] for s in body["snodes"]) == sorted(m.pubkey_ed25519 for m in members)
    # the 421 lists the members at their advertised (proxy) addresses
    assert sorted(s["ip"] for s in body["snodes"]) == sorted(m.public_ip for m in members)
    assert int(body["swarm"], 16) in testnet.swarms() and "t" in body and "hf" in body


@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
def test_onion_request_over_three_relays(testnet, http, enc):
    acct = account(3)
    dest = swarm_of(testnet, acct)[0]
    path = [n for n in testnet.nodes if n.name != dest.name][:3]
    testnet.node_admin(path[1].name, "observations", method="DELETE")
    payload = json.dumps({"method": "store", "params": store_params(acct, f"onion {enc}".encode())}).encode()
    req = onion.build_onion_request([hop(n) for n in path], hop(dest), payload, enc)
    r = http.post(f"{path[0].storage_url}/onion_req/v2", data=req.frame)
    assert r.status_code == 200, r.text
    status, inner = onion.decrypt_onion_response(req, r.content)
    assert status == 200, inner
    h = message_hash(acct.session_id, 0, f"onion {enc}".encode())
    assert json.loads(inner)["hash"] == h
    assert h in retrieved(http, dest, acct)
    obs = testnet.node_admin(path[1].name, "observations")["observations"]
    assert any(o["channel"] == "onion" and o["hop"] == "relay" and o["next_hop"] == path[2].pubkey_ed25519
               for o in obs)


def test_bad_inputs_get_4xx_and_node_keeps_serving(testnet, http):
    acct = account(4)
    node = swarm_of(testnet, acct)[0]
    url = f"{node.storage_url}/storage_rpc/v1"
    assert http.post(url, data=b"{oops").status_code == 400
    assert rpc(http, node, "nope", {}) == (400, "no method nope")
    assert rpc(http, node, "store", store_params(acct, b"x", ttl=5))[0] == 403
    p = store_params(acct, b"x")
    p["timestamp"] += 120_000
    assert rpc(http, node, "store", p)[0] == 406
    bad = retrieve_params(acct)
    bad["signature"] = signing.sign_request(account(99), signing.retrieve_message(0, bad["timestamp"]))
    assert rpc(http, node, "retrieve", bad) == (401, "retrieve signature verification failed")
    big = base64.b64encode(b"\0" * 80_000).decode()
    status, body = rpc(http, node, "store", {**store_params(acct, b""), "data": big})
    assert status == 400 and "exceeds maximum" in body
    r = http.post(url, data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert r.status_code == 413
    status, body = rpc(http, node, "info", {})
    assert status == 200 and len(body["version"]) == 3
    assert running(testnet, node.name)


def test_garbage_onion_frames_get_400_and_node_keeps_serving(testnet, http):
    node = testnet.nodes[0]
    url = f"{node.storage_url}/onion_req/v2"
    r = http.post(url, data=b"\xff" * 7)
    assert r.status_code == 400 and r.text.startswith("Error parsing onion request")
    r = http.post(url, data=onion.encode_frame(os.urandom(80), {"ephemeral_key": "22" * 32}))
    assert (r.status_code, r.text) == (400, "Invalid ciphertext")
    r = http.post(url, data=b"")
    assert r.status_code == 400
    req = onion.build_onion_request([], hop(node), b'{"method": "info", "params": {}}')
    r = http.post(url, data=req.frame)
    assert r.status_code == 200 and onion.decrypt_onion_response(req, r.content)[0] == 200
    assert running(testnet, node.name)


def test_peer_override_redirects_node_to_node_traffic(testnet, http):
    acct = account(6)
    entry, peer, third = swarm_of(testnet, acct)
    # nothing listens there: the link-proxy address of a source index no testnet has
    nowhere = f"{peer.public_ip.rsplit('.', 1)[0]}.254:{peer.storage_port}"
    try:
        got = testnet.node_admin(entry.name, "peer_overrides", {peer.pubkey_ed25519: nowhere}, method="PUT")
        assert got == {peer.pubkey_ed25519: nowhere}
        status, body = rpc(http, entry, "store", store_params(acct, b"cut off"))
        assert status == 200 and body["swarm"][peer.pubkey_ed25519]["failed"] is True
        assert not body["swarm"][third.pubkey_ed25519].get("failed")  # other peers unaffected
        assert message_hash(acct.session_id, 0, b"cut off") not in retrieved(http, peer, acct)
    finally:
        testnet.node_admin(entry.name, "peer_overrides", {peer.pubkey_ed25519: None}, method="PUT")
    assert testnet.node_admin(entry.name, "peer_overrides") == {}
    status, body = rpc(http, entry, "store", store_params(acct, b"reachable"))
    assert status == 200 and not body["swarm"][peer.pubkey_ed25519].get("failed")
    assert message_hash(acct.session_id, 0, b"reachable") in retrieved(http, peer, acct)


def test_killed_and_restarted_node_keeps_messages(testnet, http):
    acct = account(5)
    node = swarm_of(testnet, acct)[0]
    status, body = rpc(http, node, "store", store_params(acct, b"persist me"))
    assert status == 200, body
    testnet.kill(node.name)
    assert not running(testnet, node.name)
    testnet.start(node.name)
    testnet.wait_ready(timeout=30)
    assert body["hash"] in retrieved(http, node, acct)
    assert testnet.node_admin(node.name, "state")["messages"] >= 1


# --- networks of their own -----------------------------------------------------------------------

def test_joining_node_receives_swarm_messages_and_sigterm_is_clean(testnet_factory, http):
    net = testnet_factory(swarms=1, swarm_size=3, block_interval=0.5)
    accts = [account(i, "join") for i in range(5)]
    hashes = {}
    for a in accts:
        status, body = rpc(http, net.node("sn01"), "store", store_params(a, b"join " + a.seed[:4]))
        assert status == 200, body
        hashes[a.session_id] = body["hash"]
    (newcomer,) = net.add_nodes(1)
    swarms = net.wait_for(lambda: settled(net, 1), timeout=30, what="one swarm of 4 nodes")
    assert sorted(next(iter(swarms.values()))) == ["sn01", "sn02", "sn03", "sn04"]
    net.wait_for(lambda: all(holds(http, newcomer, a, hashes[a.session_id]) for a in accts),
                 timeout=30, what="the newcomer has every message of its swarm")
    assert all(retrieved(http, newcomer, a) == [hashes[a.session_id]] for a in accts)

    # SIGTERM: each node stops promptly (no SIGKILL after the harness's 10 s grace), logs
    # "shutdown_requested" then "stopped" last, and writes nothing but JSON lines (no traceback)
    for rec in net.nodes:
        t0 = time.monotonic()
        net.stop(rec.name)
        assert time.monotonic() - t0 < 8, f"{rec.name} needed {time.monotonic() - t0:.1f}s to stop"
        assert not running(net, rec.name)
        lines = net.logs(rec.name).splitlines()
        events = [json.loads(line)["event"] for line in lines if line.strip()]
        assert events[-1] == "stopped" and "shutdown_requested" in events, lines[-5:]


def test_swarm_split_rehomes_messages(testnet_factory, http):
    """6 nodes / 2 swarms (min 3, new 3, margin 0); 3 more nodes make a third swarm.  Every message
    ends up on every member of its (possibly new) swarm, and only there."""
    net = testnet_factory(swarms=2, swarm_size=3, block_interval=0.5)
    swarms = net.swarms()
    accts = [account(i, "split") for i in range(16)]
    stored: dict[str, str] = {}
    for a in accts:
        status, body = rpc(http, swarm_of(net, a)[0], "store", store_params(a, b"split " + a.seed[:4]))
        assert status == 200, body
        stored[a.session_id] = body["hash"]
    net.add_nodes(3)
    new_swarms = net.wait_for(lambda: settled(net, 3), timeout=60, what="3 swarms of 9 nodes")
    moved = [a for a in accts if {n.name for n in swarm_of(net, a, new_swarms)}
             != {n.name for n in swarm_of(net, a, swarms)}]
    assert moved, "the new swarm should take over some of the 16 accounts"

    def all_in_place() -> bool:
        return all(holds(http, m, a, stored[a.session_id])
                   for a in accts for m in swarm_of(net, a, new_swarms))

    net.wait_for(all_in_place, timeout=30, what="messages re-homed to their new swarms")
    # old holders answer 421 for accounts they lost ...
    lost = [(n, a) for a in moved for n in swarm_of(net, a, swarms)
            if n.name not in {m.name for m in swarm_of(net, a, new_swarms)}]
    assert lost
    net.wait_for(lambda: all(rpc(http, n, "retrieve", retrieve_params(a))[0] == 421 for n, a in lost),
                 timeout=15, what="old holders answering 421 for the accounts they lost")
    # ... and keep exactly the messages of the accounts they own (one message per account)
    expected = {n.name: sum(n.name in {m.name for m in swarm_of(net, a, new_swarms)} for a in accts)
                for n in net.nodes}

    def counts() -> dict[str, int]:
        return {n.name: net.node_admin(n.name, "state")["messages"] for n in net.nodes}

    net.wait_for(lambda: counts() == expected, timeout=30,
                 what=f"old holders dropping re-homed messages (want {expected})")


# --- the node's command line -----------------------------------------------------------------------

def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_cli_reports_clear_startup_errors(tmp_path):
    ip = "127.209.1.1"
    busy = socket.socket()
    busy.bind((ip, 0))
    busy.listen()
    port = busy.getsockname()[1]
    base = [sys.executable, "-m", "nodes.snode", "--ip", ip, "--admin-port", str(free_port(ip)),
            "--seed-url", "http://127.209.0.1:9", "--data-dir", str(tmp_path / "d")]
    try:
        r = subprocess.run([*base, "--port", str(port), "--key-seed", "ab" * 32], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert f"storage port {port} on {ip} in use" in r.stderr
    finally:
        busy.close()
    r = subprocess.run([*base, "--port", "1", "--key-seed", "xyz"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "--key-seed" in r.stderr
