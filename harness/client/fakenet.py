"""An in-process simulated Session network, usable as the client's transport in pure unit tests.

It implements the client-visible protocol with the real protocol library: the seed's
``get_n_service_nodes``, onion peeling and relaying (``nodes.protocol.onion``), ``info``,
``get_swarm`` / ``get_snodes_for_pubkey``, ``store`` (fan-out to the swarm, per-member signed
hashes) and signed ``retrieve`` with ``last_hash``, 421 for the wrong swarm and 406 for clock
errors.  It is *not* the testnet's storage node; integration tests run the real nodes.

Knobs for failure tests: ``FakeNode.up`` (connection refused), ``hang`` (direct requests time out),
``frozen`` (a paused node: it times out directly, as a relay's next hop and as a swarm member in
a store's fan-out), ``not_ready`` (a decommissioned node: 503 "Service node is not ready" to
direct requests, "Snode not ready: <its key>" relayed),
``clock_offset_ms``,
``drop_stores``, ``drop_relays`` (relays answer 504), ``corrupt_relays`` (the next hop answers
400), ``hook`` (answer a storage RPC yourself),
``FakeNetwork.file_server`` (a :class:`~harness.client.fakefiles.FakeFileServer` the exit node of
an onion request to a server forwards to), ``FakeNetwork.unlisted`` (nodes the relays no longer know: ``Next node not found``),
``FakeNetwork.relay_timeout_on_down`` (a relay whose next hop is down answers 504 ``Request time
out``, as the storage server does when its request to the next node fails, instead of 502 ``Next
node is currently unreachable``, which it only says of a node it has no address for).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from nodes.protocol.constants import CLOCK_TOLERANCE_MS, HARDFORK, SIGNATURE_WINDOW_MS
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, SessionID, derive_seed
from nodes.protocol.onion import OnionError, encode_frame, encrypt_response, peel_layer, relay_info
from nodes.protocol.onion_server import is_server_route, parse_server_route
from nodes.protocol.signing import SignatureError, retrieve_message, verify_request
from nodes.protocol.swarm import swarm_for, swarm_space

from .fakefiles import FakeFileServer
from .snode import Snode
from .transport import CONNECT, TIMEOUT, HttpResult, TransportError

NOT_READY = b"Service node is not ready: this node is not active (decommissioned)\n"

Hook = Callable[["FakeNode", str, dict[str, Any]], "tuple[int, Any] | None"]


@dataclass
class FakeNode:
    name: str
    identity: Identity
    ip: str
    port: int
    swarm_id: int
    up: bool = True
    clock_offset_ms: int = 0
    drop_stores: bool = False
    drop_relays: bool = False
    #: a relay that garbles what it passes on: the next hop answers 400 "Invalid ciphertext"
    corrupt_relays: bool = False
    #: requests sent to this node directly never get an answer (TransportError TIMEOUT)
    hang: bool = False
    #: a frozen (paused) node: as ``hang``, and relays' requests to it and fan-out to it time out
    frozen: bool = False
    #: a decommissioned node: direct requests get 503 "Service node is not ready: …", a relay's
    #: request to it 503 "Snode not ready: <its ed25519>" (the storage server's node<->node
    #: answer, which our relays give too); the seed's list (active nodes) leaves it out
    not_ready: bool = False
    #: called for every storage RPC this node answers as destination; a (status, body) return
    #: value replaces the normal answer
    hook: Hook | None = None
    #: pubkey -> list of {"hash", "namespace", "timestamp", "expiration", "data"}
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: every request this node answered as destination: (method, params)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def ed25519(self) -> str:
        return self.identity.ed25519_hex

    @property
    def snode(self) -> Snode:
        return Snode(self.identity.ed25519_hex, self.identity.x25519_hex, self.ip, self.port, self.swarm_id)

    def swarm_json(self) -> dict[str, Any]:
        return {"address": "", "pubkey_legacy": self.ed25519, "pubkey_x25519": self.identity.x25519_hex,
                "pubkey_ed25519": self.ed25519, "port": str(self.port), "port_https": self.port,
                "port_omq": 22020, "ip": self.ip}


class FakeNetwork:
    """``swarms`` × ``swarm_size`` nodes; each node on its own /24 unless ``same_subnet``."""

    seed_url = "http://seed.fake:22023"

    def __init__(self, *, swarms: int = 2, swarm_size: int = 3, seed: str = "fake",
                 same_subnet: bool = False, now_ms: Callable[[], int] | None = None) -> None:
        self._now = now_ms or (lambda: int(time.time() * 1000))
        self.nodes: list[FakeNode] = []
        ids = [(2**64 // max(swarms, 1)) * i for i in range(swarms)]
        i = 0
        for s in range(swarms):
            for _ in range(swarm_size):
                i += 1
                ip = f"10.0.0.{i}" if same_subnet else f"10.0.{i}.1"
                ident = Identity.from_seed(derive_seed(seed, "node", f"sn{i:02d}"))
                self.nodes.append(FakeNode(f"sn{i:02d}", ident, ip, 22021, ids[s]))
        #: node names the relays treat as unknown ("Next node not found")
        self.unlisted: set[str] = set()
        #: (kind, url) of every HTTP request, kind in {"seed", "direct", "onion"}
        self.log: list[tuple[str, str]] = []
        self.seed_up = True
        #: a down next hop: 504 "Request time out" (the storage server when its request to the
        #: next node fails: a killed node) instead of 502 "Next node is currently unreachable"
        self.relay_timeout_on_down = False
        #: the file server an exit node forwards onion requests for servers to
        self.file_server = FakeFileServer(seed=seed)

    # -- lookups -------------------------------------------------------------------------------
    def node(self, name_or_ed: str) -> FakeNode:
        for n in self.nodes:
            if name_or_ed in (n.name, n.ed25519):
                return n
        raise KeyError(name_or_ed)

    def _by_addr(self, host: str, port: int) -> FakeNode | None:
        return next((n for n in self.nodes if n.ip == host and n.port == port), None)

    def swarm_ids(self) -> list[int]:
        return sorted({n.swarm_id for n in self.nodes})

    def swarm_of(self, pubkey: str) -> list[FakeNode]:
        """The swarm's members; a not-ready (decommissioned) node has left its swarm."""
        sid = swarm_for(swarm_space(pubkey), self.swarm_ids())
        return [n for n in self.nodes if n.swarm_id == sid and not n.not_ready]

    def stored(self, pubkey: str) -> dict[str, set[str]]:
        """node name -> hashes it holds for ``pubkey``."""
        return {n.name: {m["hash"] for m in n.messages.get(pubkey, [])} for n in self.nodes}

    # -- transport interface --------------------------------------------------------------------
    async def post(self, url: str, data: bytes, *, timeout: float,
                   content_type: str = "application/octet-stream") -> HttpResult:
        u = urlparse(url)
        if url.startswith(self.seed_url):
            self.log.append(("seed", url))
            if not self.seed_up:
                raise TransportError(CONNECT, url, "connection refused")
            return self._seed(data)
        node = self._by_addr(u.hostname or "", u.port or 443)
        if node is None or not node.up:
            raise TransportError(CONNECT, url, "connection refused")
        if node.not_ready:
            return HttpResult(503, NOT_READY)
        if node.hang or node.frozen:
            raise TransportError(TIMEOUT, url, f"no answer within {timeout:g}s")
        if u.path == "/onion_req/v2":
            self.log.append(("onion", url))
            return self._onion(node, data, 0)
        if u.path == "/storage_rpc/v1":
            self.log.append(("direct", url))
            status, body = self._rpc(node, data)
            return HttpResult(status, (body if isinstance(body, str) else json.dumps(body)).encode())
        return HttpResult(404, b"not found")

    async def close(self) -> None:
        return None

    # -- seed -----------------------------------------------------------------------------------
    def _seed(self, data: bytes) -> HttpResult:
        req = json.loads(data)
        if req.get("method") not in ("get_n_service_nodes", "get_service_nodes"):
            return HttpResult(200, json.dumps({"error": {"code": -32601, "message": "Method not found"}}).encode())
        states = [{"public_ip": n.ip, "storage_port": n.port, "pubkey_ed25519": n.ed25519,
                   "pubkey_x25519": n.identity.x25519_hex, "swarm_id": n.swarm_id,
                   "storage_server_version": [2, 11, 3]}
                  for n in self.nodes if n.name not in self.unlisted and not n.not_ready]
        return HttpResult(200, json.dumps({"jsonrpc": "2.0", "id": 0, "result": {
            "service_node_states": states, "height": 100, "block_hash": "00" * 32}}).encode())

    # -- onion ----------------------------------------------------------------------------------
    def _onion(self, node: FakeNode, frame: bytes, hops: int) -> HttpResult:
        try:
            layer = peel_layer(frame, node.identity.x25519_secret, node.identity.x25519_public)
        except OnionError:
            return HttpResult(400, b"Invalid ciphertext")
        if layer.is_destination:
            status, body = self._rpc(node, layer.blob)
            body_s = body if isinstance(body, str) else json.dumps(body)
            return HttpResult(200, encrypt_response(layer.enc_type, layer.key, status, body_s))
        if is_server_route(layer.meta):
            return self._exit(node, layer.blob, layer.meta)
        info = relay_info(layer)
        nxt = next((n for n in self.nodes if n.ed25519 == info.next_ed25519_hex), None)
        if nxt is None or nxt.name in self.unlisted:
            return HttpResult(502, f"Next node not found: {info.next_ed25519_hex}".encode())
        if node.drop_relays:
            return HttpResult(504, b"Request time out")
        if nxt.not_ready:
            return HttpResult(503, f"Snode not ready: {nxt.ed25519}".encode())
        if nxt.frozen:  # a frozen next hop: nothing comes back before the client gives up
            raise TransportError(TIMEOUT, f"onion via {node.name}", f"{nxt.name} does not answer")
        if not nxt.up and self.relay_timeout_on_down:
            return HttpResult(504, b"Request time out")
        if not nxt.up:
            return HttpResult(502, f"Next node is currently unreachable: {info.next_ed25519_hex}".encode())
        frame = info.frame
        if node.corrupt_relays:  # flip a ciphertext byte (after the 4-byte size): the next hop
            frame = frame[:5] + bytes([frame[5] ^ 0xFF]) + frame[6:]  # cannot decrypt its layer
        return self._onion(nxt, frame, hops + 1)

    def _exit(self, node: FakeNode, blob: bytes, meta: dict[str, Any]) -> HttpResult:
        """An exit node forwards its decrypted layer to the file server (502 when it is down)."""
        try:
            route = parse_server_route(meta)
        except OnionError:
            return HttpResult(400, b"Invalid json")
        fs = self.file_server
        if not route.allowed:
            return HttpResult(400, b"Invalid url")
        if not fs.up or (route.host, route.port) != (fs.host, fs.port):
            return HttpResult(502, f"Failed to connect to {route.host} port {route.port}: "
                                   "Connection refused".encode())
        return fs.handle(encode_frame(blob, meta), node.ip)

    # -- storage RPC ----------------------------------------------------------------------------
    def _misc(self, node: FakeNode, body: dict[str, Any]) -> dict[str, Any]:
        body["t"] = self._now() + node.clock_offset_ms
        body["hf"] = list(HARDFORK)
        return body

    def _wrong_swarm(self, node: FakeNode, pubkey: str) -> tuple[int, Any]:
        members = self.swarm_of(pubkey)
        return 421, self._misc(node, {"snodes": [m.swarm_json() for m in members],
                                      "swarm": f"{members[0].swarm_id:016x}"})

    def _rpc(self, node: FakeNode, raw: bytes) -> tuple[int, Any]:
        try:
            req = json.loads(raw)
            method, params = req["method"], req.get("params", {})
        except (ValueError, KeyError, TypeError):
            return 400, "invalid request body"
        node.requests.append((method, params))
        if node.hook is not None:
            res = node.hook(node, method, params)
            if res is not None:
                return res
        now = self._now() + node.clock_offset_ms
        if method == "info":
            return 200, self._misc(node, {"version": [2, 11, 3], "timestamp": now})
        if method in ("get_swarm", "get_snodes_for_pubkey"):
            pk = str(params.get("pubkey", params.get("pubKey", "")))
            members = self.swarm_of(pk)
            return 200, self._misc(node, {"snodes": [m.swarm_json() for m in members],
                                          "swarm": f"{members[0].swarm_id:016x}"})
        if method == "store":
            return self._store(node, params, now)
        if method == "retrieve":
            return self._retrieve(node, params, now)
        return 400, f"unknown method {method}"

    def _store(self, node: FakeNode, p: dict[str, Any], now: int) -> tuple[int, Any]:
        pk = str(p.get("pubkey", ""))
        if node not in self.swarm_of(pk):
            return self._wrong_swarm(node, pk)
        ts, ttl, ns = int(p["timestamp"]), int(p["ttl"]), int(p.get("namespace", 0))
        if ts > now + CLOCK_TOLERANCE_MS or ts + ttl < now - CLOCK_TOLERANCE_MS:
            return 406, "Timestamp error: check your clock"
        data = base64.b64decode(p["data"])
        h = message_hash(pk, ns, data)
        msg = {"hash": h, "namespace": ns, "timestamp": ts, "expiration": ts + ttl, "data": p["data"]}

        def put(member: FakeNode) -> dict[str, Any]:
            box = member.messages.setdefault(pk, [])
            already = any(m["hash"] == h for m in box)
            if not already:
                box.append(dict(msg))
            res = {"hash": h, "signature": base64.b64encode(member.identity.sign(h.encode())).decode(),
                   "expiry": ts + ttl}
            if already:
                res["already"] = True
            return res

        if node.drop_stores:
            swarm = {node.ed25519: {"hash": h, "expiry": ts + ttl,
                                    "signature": base64.b64encode(node.identity.sign(h.encode())).decode()}}
        else:
            swarm = {}
            for member in self.swarm_of(pk):
                swarm[member.ed25519] = (put(member) if member.up and not member.frozen
                                         else {"failed": True, "timeout": True})
        return 200, self._misc(node, {"swarm": swarm, "hash": h})

    def _retrieve(self, node: FakeNode, p: dict[str, Any], now: int) -> tuple[int, Any]:
        pk = str(p.get("pubkey", ""))
        if node not in self.swarm_of(pk):
            return self._wrong_swarm(node, pk)
        ns = int(p.get("namespace", 0))
        ts = int(p.get("timestamp", 0))
        if abs(ts - now) > SIGNATURE_WINDOW_MS:
            return 406, "retrieve timestamp too far from current time"
        try:
            verify_request(SessionID.parse(pk), p.get("pubkey_ed25519"), retrieve_message(ns, ts), p.get("signature", ""))
        except SignatureError as exc:
            return 401, f"retrieve signature verification failed: {exc}"
        box = [m for m in node.messages.get(pk, []) if m["namespace"] == ns]
        last = p.get("last_hash", p.get("lastHash", ""))
        idx = next((i for i, m in enumerate(box) if m["hash"] == last), None)
        out = box[idx + 1:] if idx is not None else box
        return 200, self._misc(node, {"messages": [{"hash": m["hash"], "timestamp": m["timestamp"],
                                                    "expiration": m["expiration"], "data": m["data"]}
                                                   for m in out], "more": False})
