"""Storage nodes as real processes: a seed plus storage nodes on 127.X.N.1 (their own /24s).

A small private fixture (not the harness backend) starts ``python -m nodes.seed`` and
``python -m nodes.snode`` subprocesses with free ports, waits on protocol readiness (every node's
admin state agrees with the seed's swarm map) and kills everything in ``finally``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3  # noqa: F401 - referenced by the filterwarnings mark

from nodes.protocol import onion, signing
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import UNASSIGNED_SWARM, swarm_for, swarm_space

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "snode-itest"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, diag: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, ValueError, KeyError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{diag()}")


class InsecureSession(requests.Session):
    """Nodes use self-signed certificates; verify=False per request also beats REQUESTS_CA_BUNDLE."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = False
        return super().request(*args, **kwargs)


@dataclass
class NodeProc:
    name: str
    identity: Identity
    ip: str
    port: int
    admin_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    def state(self) -> dict[str, Any]:
        return requests.get(f"http://{self.ip}:{self.admin_port}/admin/v1/state", timeout=2).json()

    def tail(self, n: int = 15) -> str:
        if not self.log.exists():
            return f"{self.name}: no log"
        lines = self.log.read_text(errors="replace").splitlines()[-n:]
        return f"--- {self.name} ({self.ip}:{self.port}) ---\n" + "\n".join(lines)


class Net:
    def __init__(self, tmp: Path, nodes: int, block_interval: float = 0.5, proof_timeout: float = 5.0) -> None:
        self.tmp = tmp
        self.x = random.randint(210, 254)
        self.testnet_seed = f"snode-itest-{os.getpid()}-{self.x}-{random.randrange(1 << 30)}"
        self.seed_ip = f"127.{self.x}.0.1"
        self.seed_port = free_port(self.seed_ip)
        self.expect = nodes
        self.block_interval = block_interval
        self.proof_timeout = proof_timeout
        self.seed_proc: subprocess.Popen[bytes] | None = None
        self.nodes: list[NodeProc] = []
        self.session = InsecureSession()

    # --- processes ------------------------------------------------------------------------------
    def start(self) -> None:
        log = self.tmp / "seed.log"
        self.seed_proc = subprocess.Popen(
            [sys.executable, "-m", "nodes.seed", "--host", self.seed_ip, "--port", str(self.seed_port),
             "--https-port", "0", "--data-dir", str(self.tmp / "seed"), "--testnet-seed", self.testnet_seed,
             "--expect", str(self.expect), "--min-swarm-size", "3", "--new-swarm-size", "3",
             "--ideal-swarm-margin", "0", "--block-interval", str(self.block_interval),
             "--proof-timeout", str(self.proof_timeout), "--admin-token", TOKEN, "--log-file", str(log)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "seed.err", "wb"))  # noqa: SIM115
        for _ in range(self.expect):
            self.add_node()

    def add_node(self) -> NodeProc:
        i = len(self.nodes) + 1
        name = f"sn{i:02d}"
        ip = f"127.{self.x}.{i}.1"
        node = NodeProc(name, Identity.from_seed(derive_seed(self.testnet_seed, "node", name)), ip,
                        free_port(ip), free_port(ip), self.tmp / name, self.tmp / f"{name}.log")
        self.nodes.append(node)
        self.start_node(node)
        return node

    def start_node(self, node: NodeProc) -> None:
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "nodes.snode", "--ip", node.ip, "--port", str(node.port),
             "--admin-port", str(node.admin_port), "--seed-url", f"http://{self.seed_ip}:{self.seed_port}",
             "--data-dir", str(node.data_dir), "--key-seed", node.identity.seed_hex,
             "--proof-interval", "0.5", "--poll-interval", "0.5", "--name", node.name,
             "--log-file", str(node.log)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{node.name}.err", "ab"))  # noqa: SIM115

    def kill_node(self, node: NodeProc) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait(10)

    def stop(self) -> None:
        procs = [n.proc for n in self.nodes if n.proc is not None] + [self.seed_proc]
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in procs:
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.session.close()

    # --- protocol -------------------------------------------------------------------------------
    def seed_nodes(self) -> list[dict[str, Any]]:
        r = requests.post(f"http://{self.seed_ip}:{self.seed_port}/json_rpc", timeout=2,
                          json={"jsonrpc": "2.0", "id": 0, "method": "get_service_nodes", "params": {}})
        return r.json()["result"]["service_node_states"]

    def swarms(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for e in self.seed_nodes():
            if e.get("active") and e["swarm_id"] != UNASSIGNED_SWARM:
                out.setdefault(e["swarm_id"], []).append(e["pubkey_ed25519"])
        return out

    def diag(self) -> str:
        return "\n".join(n.tail() for n in self.nodes)

    def wait_ready(self, n_swarms: int, timeout: float = 40.0) -> dict[int, list[str]]:
        def check() -> dict[int, list[str]] | None:
            swarms = self.swarms()
            if len(swarms) != n_swarms or sum(map(len, swarms.values())) != len(self.nodes):
                return None
            where = {pk: sid for sid, pks in swarms.items() for pk in pks}
            for n in self.nodes:
                st = n.state()
                if not st["ready"] or st["swarm_id"] != where.get(n.identity.ed25519_hex):
                    return None
                if sorted(st["swarm_members"]) != sorted(swarms[st["swarm_id"]]):
                    return None
            return swarms
        return wait_for(f"{len(self.nodes)} nodes in {n_swarms} swarms", check, timeout, self.diag)

    def by_pk(self, pk: str) -> NodeProc:
        return next(n for n in self.nodes if n.identity.ed25519_hex == pk)

    def swarm_of(self, acct: Identity, swarms: dict[int, list[str]]) -> list[NodeProc]:
        sid = swarm_for(swarm_space(acct.session_id), swarms.keys())
        return [self.by_pk(pk) for pk in swarms[sid]]

    def rpc(self, node: NodeProc, method: str, params: dict[str, Any]) -> tuple[int, Any]:
        r = self.session.post(node.url + "/storage_rpc/v1", json={"method": method, "params": params}, timeout=10)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text


def now_ms() -> int:
    return int(time.time() * 1000)


def store_params(acct: Identity, data: bytes, ttl: int = 600_000) -> dict[str, Any]:
    return {"pubkey": acct.session_id, "timestamp": now_ms(), "ttl": ttl, "data": base64.b64encode(data).decode()}


def retrieve_params(acct: Identity, **extra: Any) -> dict[str, Any]:
    ts = now_ms()
    return {"pubkey": acct.session_id, "timestamp": ts, "pubkey_ed25519": acct.ed25519_hex,
            "signature": signing.sign_request(acct, signing.retrieve_message(0, ts)), **extra}


def account(i: int, tag: str = "a") -> Identity:
    return Identity.from_seed(derive_seed("snode-itest-accounts", tag, str(i)))


def hop(n: NodeProc) -> onion.OnionHop:
    return onion.OnionHop(n.identity.ed25519_public, n.identity.x25519_public)


def retrieved_hashes(net: Net, node: NodeProc, acct: Identity) -> list[str]:
    status, body = net.rpc(node, "retrieve", retrieve_params(acct))
    assert status == 200, body
    return [m["hash"] for m in body["messages"]]


@pytest.fixture(scope="module")
def net6(tmp_path_factory) -> Iterator[tuple[Net, dict[int, list[str]]]]:
    net = Net(tmp_path_factory.mktemp("net6"), 6)
    try:
        net.start()
        swarms = net.wait_ready(2)
        yield net, swarms
    finally:
        net.stop()


# --- one network, several checks ------------------------------------------------------------------

def test_store_on_one_member_retrieve_on_another(net6):
    net, swarms = net6
    acct = account(1)
    members = net.swarm_of(acct, swarms)
    status, body = net.rpc(members[0], "store", store_params(acct, b"hello swarm"))
    assert status == 200, body
    h = message_hash(acct.session_id, 0, b"hello swarm")
    assert body["hash"] == h
    assert sorted(body["swarm"]) == sorted(m.identity.ed25519_hex for m in members)
    assert all(r["hash"] == h and not r.get("failed") for r in body["swarm"].values())
    for m in members[1:]:
        assert retrieved_hashes(net, m, acct) == [h]


def test_wrong_swarm_421(net6):
    net, swarms = net6
    acct = account(2)
    members = net.swarm_of(acct, swarms)
    other = next(n for n in net.nodes if n not in members)
    status, body = net.rpc(other, "store", store_params(acct, b"x"))
    assert status == 421
    assert sorted(s["pubkey_ed25519"] for s in body["snodes"]) == sorted(m.identity.ed25519_hex for m in members)
    assert int(body["swarm"], 16) in swarms and "t" in body and "hf" in body


@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
def test_onion_request_over_three_relays(net6, enc):
    net, swarms = net6
    acct = account(3)
    dest = net.swarm_of(acct, swarms)[0]
    path = [n for n in net.nodes if n is not dest][:3]
    payload = json.dumps({"method": "store", "params": store_params(acct, f"onion {enc}".encode())}).encode()
    req = onion.build_onion_request([hop(n) for n in path], hop(dest), payload, enc)
    r = net.session.post(path[0].url + "/onion_req/v2", data=req.frame, timeout=15)
    assert r.status_code == 200, r.text
    status, inner = onion.decrypt_onion_response(req, r.content)
    assert status == 200, inner
    h = message_hash(acct.session_id, 0, f"onion {enc}".encode())
    assert json.loads(inner)["hash"] == h
    assert h in retrieved_hashes(net, dest, acct)
    obs = requests.get(f"http://{path[1].ip}:{path[1].admin_port}/admin/v1/observations", timeout=2).json()
    assert any(o["channel"] == "onion" and o["hop"] == "relay" and o["next_hop"] == path[2].identity.ed25519_hex
               for o in obs["observations"])


def test_bad_inputs_get_4xx_and_node_keeps_serving(net6):
    net, swarms = net6
    acct = account(4)
    node = net.swarm_of(acct, swarms)[0]
    s = net.session
    assert s.post(node.url + "/storage_rpc/v1", data=b"{oops", timeout=5).status_code == 400
    assert net.rpc(node, "nope", {}) == (400, "no method nope")
    assert net.rpc(node, "store", store_params(acct, b"x", ttl=5))[0] == 403
    p = store_params(acct, b"x")
    p["timestamp"] += 120_000
    assert net.rpc(node, "store", p)[0] == 406
    bad = retrieve_params(acct)
    bad["signature"] = signing.sign_request(account(99), signing.retrieve_message(0, bad["timestamp"]))
    assert net.rpc(node, "retrieve", bad) == (401, "retrieve signature verification failed")
    big = base64.b64encode(b"\0" * 80_000).decode()
    status, body = net.rpc(node, "store", {**store_params(acct, b""), "data": big})
    assert status == 400 and "exceeds maximum" in body
    r = s.post(node.url + "/storage_rpc/v1", data=b"x" * (10 * 1024 * 1024 + 1), timeout=20)
    assert r.status_code == 413
    # garbage onion frames
    r = s.post(node.url + "/onion_req/v2", data=b"\xff" * 7, timeout=5)
    assert r.status_code == 400 and r.text.startswith("Error parsing onion request")
    r = s.post(node.url + "/onion_req/v2", data=onion.encode_frame(os.urandom(80), {"ephemeral_key": "22" * 32}),
               timeout=5)
    assert (r.status_code, r.text) == (400, "Invalid ciphertext")
    status, body = net.rpc(node, "info", {})
    assert status == 200 and len(body["version"]) == 3
    assert node.proc is not None and node.proc.poll() is None


def test_killed_and_restarted_node_keeps_messages(net6):
    net, swarms = net6
    acct = account(5)
    node = net.swarm_of(acct, swarms)[0]
    status, body = net.rpc(node, "store", store_params(acct, b"persist me"))
    assert status == 200
    net.kill_node(node)
    net.start_node(node)
    wait_for("restarted node ready", lambda: node.state()["ready"], 20, net.diag)
    assert body["hash"] in retrieved_hashes(net, node, acct)


def test_swarm_split_rehomes_messages(net6):
    """6 nodes / 2 swarms (min 3, new 3, margin 0); 3 more nodes make a third swarm.  Every message
    must end up on every member of its (possibly new) swarm."""
    net, swarms = net6
    accts = [account(i, "split") for i in range(16)]
    stored: dict[str, str] = {}
    for a in accts:
        status, body = net.rpc(net.swarm_of(a, swarms)[0], "store", store_params(a, b"split " + a.seed[:4]))
        assert status == 200, body
        stored[a.session_id] = body["hash"]
    for _ in range(3):
        net.add_node()
    new_swarms = net.wait_ready(3, timeout=60)
    moved = [a for a in accts
             if swarm_for(swarm_space(a.session_id), new_swarms) != swarm_for(swarm_space(a.session_id), swarms)]
    assert moved, "the new swarm should take over some of the 16 accounts"

    def all_in_place() -> bool:
        for a in accts:
            for m in net.swarm_of(a, new_swarms):
                if stored[a.session_id] not in retrieved_hashes(net, m, a):
                    return False
        return True

    wait_for("messages re-homed to their new swarms", all_in_place, 30, net.diag)
    # old holders answer 421 and drop what they no longer own from their database
    leftovers: list[tuple[NodeProc, str]] = []
    for a in moved:
        for pk in swarms[swarm_for(swarm_space(a.session_id), swarms)]:
            n = net.by_pk(pk)
            if n not in net.swarm_of(a, new_swarms):
                status, body = net.rpc(n, "retrieve", retrieve_params(a))
                assert status == 421
                leftovers.append((n, stored[a.session_id]))
    assert leftovers

    def db_has(n: NodeProc, h: str) -> bool:
        with sqlite3.connect(f"file:{n.data_dir / 'storage.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT 1 FROM messages WHERE hash = ?", (h,)).fetchone() is not None

    wait_for("old holders deleted re-homed messages", lambda: not any(db_has(n, h) for n, h in leftovers),
             20, net.diag)


# --- a separate small network ------------------------------------------------------------------------

def test_joining_node_receives_swarm_messages(tmp_path):
    net = Net(tmp_path, 3)
    try:
        net.start()
        swarms = net.wait_ready(1)
        accts = [account(i, "join") for i in range(5)]
        hashes = {}
        for a in accts:
            status, body = net.rpc(net.nodes[0], "store", store_params(a, b"join " + a.seed[:4]))
            assert status == 200, body
            hashes[a.session_id] = body["hash"]
        newcomer = net.add_node()
        swarms = net.wait_ready(1)
        assert newcomer.identity.ed25519_hex in next(iter(swarms.values()))
        wait_for("newcomer has every message",
                 lambda: all(retrieved_hashes(net, newcomer, a) == [hashes[a.session_id]] for a in accts),
                 20, net.diag)
        # graceful SIGTERM: every node exits 0 after logging "stopped"
        net.stop()
        for n in net.nodes:
            assert n.proc is not None and n.proc.returncode == 0, n.tail()
            events = [json.loads(line)["event"] for line in n.log.read_text().splitlines()]
            assert events[-1] == "stopped" and "shutdown_requested" in events
    finally:
        net.stop()


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
