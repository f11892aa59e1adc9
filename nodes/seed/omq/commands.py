"""The six oxend commands a real storage server (v2.8.0) calls, answered from the seed's registry.

Pure logic: :meth:`OxendCommands.handle` takes a decoded request and returns the reply frames;
the sockets are :mod:`nodes.seed.omq.server`.  Bodies (from the server's source, see
``../shared/real-storage-server/README.md``):

1. ``admin.get_service_node_privkey`` → ``200`` + the node's three private keys (hex);
2. ``rpc.get_service_nodes`` → ``200`` + oxend's listing (``unchanged`` on the same poll hash);
3. ``rpc.get_block_hash`` ``{"height": [h]}`` → ``200`` + the hash as a bare JSON string
   (several heights: ``{"<h>": hash, ...}``);
4. ``admin.storage_server_ping`` → ``200`` + ``{"status": "OK"}`` (recorded);
5. ``sub.block`` → ``OK`` (new subscription) or ``ALREADY``, no status frame; the subscriber then
   gets ``notify.block`` on every block;
6. ``admin.report_peer_status`` ``{"type": "storage", "pubkey", "passed"}`` → ``200`` +
   ``{"status": "OK"}`` (recorded).

Per-viewer addresses: a node's ``peer_ips`` (see :mod:`.config`) change where *its* node list puts
those peers (:func:`viewer_listing`); every other field, and every other viewer's list, is the
registry's. The harness uses it to route each real node's traffic to each peer through a link
proxy of its own (per-link faults).

Every command from a node's endpoint is a sign of life: it registers the node (if it was
deregistered) or refreshes it (docs/nodes.md, "Real storage servers").

The first-list guard: a server whose *first* node list (a request without ``poll_block_hash``)
holds fewer than 10 nodes on testnet asks hard-coded public seed nodes for help.  The seed holds
such a request unanswered (:meth:`OxendCommands.first_list_held`) until the list is long enough, so
a real server never has a reason to reach outside the testnet.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

from nodes.common.values import is_int
from nodes.protocol.keys import Identity

from ..records import NodeRecord
from ..registry import InvalidParams, SeedCore
from .config import RealNodeSpec, node_identity, oxend_privkeys
from .observations import Observations

GET_PRIVKEY = "admin.get_service_node_privkey"
GET_SERVICE_NODES = "rpc.get_service_nodes"
GET_BLOCK_HASH = "rpc.get_block_hash"
STORAGE_SERVER_PING = "admin.storage_server_ping"
SUB_BLOCK = "sub.block"
REPORT_PEER_STATUS = "admin.report_peer_status"
NOTIFY_BLOCK = "notify.block"
COMMANDS = (GET_PRIVKEY, GET_SERVICE_NODES, GET_BLOCK_HASH, STORAGE_SERVER_PING, SUB_BLOCK, REPORT_PEER_STATUS)

OK = b"200"
BAD_REQUEST = b"400"
# the 2.8.0 server falls back to public bootstrap nodes when its first list holds fewer nodes
# (testnet) or more than 3 % of them lack contact information
SERVER_BOOTSTRAP_THRESHOLD = 10
MISSING_CONTACT_PERCENT = 3


def contactable(node: NodeRecord) -> bool:
    """Does the listing give the server all it needs to reach ``node`` (its ``contact`` is valid)?"""
    return node.public_ip != "0.0.0.0" and node.storage_port > 0 and node.storage_lmq_port > 0


def viewer_listing(listing: dict[str, Any], peer_ips: dict[str, str]) -> dict[str, Any]:
    """``listing`` (a ``get_service_nodes`` answer) as one viewer sees it: every entry whose
    ``service_node_pubkey`` (the Ed25519 key) is in ``peer_ips`` (pubkey -> IPv4) shows that
    address as its ``public_ip``. The input is not modified."""
    states = listing.get("service_node_states")
    if not peer_ips or not isinstance(states, list):
        return listing
    out = []
    for entry in states:
        ip = peer_ips.get(entry.get("service_node_pubkey", ""))
        out.append({**entry, "public_ip": ip} if ip is not None and "public_ip" in entry else entry)
    return {**listing, "service_node_states": out}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _error(message: str) -> list[bytes]:
    # oxend answers a failed RPC with a non-200 status; "status" is what the server logs
    return [BAD_REQUEST, _json({"status": message, "error": message})]


def _body(data: list[bytes], command: str) -> Any:
    """The JSON body of a request (absent = {}); raises ValueError with a readable message."""
    if not data or data[0] == b"":
        return {}
    try:
        return json.loads(data[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{command}: body is not JSON: {exc}") from None


class OxendCommands:
    """Answers the real servers' oxend requests from ``core``; one instance per seed."""

    def __init__(self, core: SeedCore, specs: list[RealNodeSpec], testnet_seed: str,
                 observations: Observations | None = None,
                 rng_factory: Callable[[], random.Random] | None = None,
                 min_first_list: int = SERVER_BOOTSTRAP_THRESHOLD) -> None:
        if min_first_list < 0:
            raise ValueError(f"min_first_list must be >= 0, got {min_first_list}")
        self.core = core
        self.min_first_list = min_first_list
        self.specs = {s.name: s for s in specs}
        self.identities: dict[str, Identity] = {s.name: node_identity(testnet_seed, s.name) for s in specs}
        # viewer name -> {peer Ed25519 pubkey: the address that viewer's list gives the peer}
        self.peer_views: dict[str, dict[str, str]] = {
            s.name: {self.identities[peer].ed25519_hex: ip for peer, ip in s.peer_ips} for s in specs}
        self.observations = observations or Observations()
        self._rng_factory = rng_factory or (lambda: random.Random(os.urandom(16)))
        # node name -> routing ids subscribed to notify.block on that node's endpoint
        self.subscribers: dict[str, set[bytes]] = {s.name: set() for s in specs}

    # --- registry --------------------------------------------------------------------------
    def contact(self, name: str, version: tuple[int, int, int] | None = None) -> None:
        """Node ``name`` showed life: register or refresh it in the registry."""
        spec, ident = self.specs[name], self.identities[name]
        if version is None and ident.ed25519_hex not in self.core.nodes:
            version = spec.version  # listed until the node's own ping says otherwise
        self.core.oxenmq_contact(pubkey_ed25519=ident.ed25519_hex, pubkey_x25519=ident.x25519_hex,
                                 public_ip=spec.public_ip, storage_port=spec.storage_port,
                                 storage_lmq_port=spec.storage_lmq_port, version=version)

    def register_all(self) -> None:
        """At start: list every configured node, so that each server's first node list already holds
        all of them (a real server that sees fewer than 10 nodes first asks public seed nodes)."""
        for name in self.specs:
            self.contact(name)

    # --- dispatch --------------------------------------------------------------------------
    def first_list_held(self, command: str, data: list[bytes]) -> str | None:
        """Why a request must wait for a longer node list (None: answer it now).

        Only a server's first ``rpc.get_service_nodes`` (no ``poll_block_hash``) is held, while the
        list would make the server fall back to public bootstrap nodes: fewer than
        ``min_first_list`` nodes, or more than 3 % of them without contact information (IP, HTTPS
        port, OxenMQ port; 2.8.0 ``process_snodes_update``)."""
        if command != GET_SERVICE_NODES or self.min_first_list == 0:
            return None
        total = len(self.core.nodes)
        missing = sum(1 for n in self.core.nodes.values() if not contactable(n))
        if total >= self.min_first_list and missing <= MISSING_CONTACT_PERCENT * total // 100:
            return None
        try:
            body = _body(data, command)
        except ValueError:
            return None  # answered (with its error) at once
        if isinstance(body, dict) and body.get("poll_block_hash"):
            return None
        return (f"first node list held: {total} node(s) listed, {missing} without contact info; a real server "
                f"asks public bootstrap nodes below {self.min_first_list} or above {MISSING_CONTACT_PERCENT}% missing")

    def handle(self, name: str, route: bytes, command: str, data: list[bytes]) -> list[bytes] | None:
        """The reply frames (after ``REPLY, TAG``) to ``command`` from node ``name``'s endpoint,
        or None if the command is unknown (→ ``UNKNOWNCOMMAND``)."""
        if command not in COMMANDS:
            return None
        now = self.core.clock()
        self.observations.command(name, command, now)
        self.contact(name)  # before answering: a node back from silence sees itself listed
        try:
            body = _body(data, command)
            if command == GET_PRIVKEY:
                result = [OK, _json(oxend_privkeys(self.identities[name]))]
            elif command == GET_SERVICE_NODES:
                result = self._service_nodes(name, body)
            elif command == GET_BLOCK_HASH:
                result = self._block_hash(body)
            elif command == STORAGE_SERVER_PING:
                result = self._ping(name, body, now)
            elif command == SUB_BLOCK:
                subs = self.subscribers[name]
                result = [b"ALREADY" if route in subs else b"OK"]
                subs.add(route)
            else:
                result = self._peer_report(name, body, now)
        except ValueError as exc:
            result = _error(str(exc))
        return result

    def _service_nodes(self, name: str, body: Any) -> list[bytes]:
        try:
            listing = self.core.get_service_nodes(body, self._rng_factory())
        except InvalidParams as exc:
            raise ValueError(f"{GET_SERVICE_NODES}: {exc}") from None
        return [OK, _json(viewer_listing(listing, self.peer_views[name]))]

    def _block_hash(self, body: Any) -> list[bytes]:
        heights = body.get("height") if isinstance(body, dict) else None
        if not isinstance(heights, list) or not heights or not all(is_int(h) for h in heights):
            raise ValueError(f"{GET_BLOCK_HASH}: body must be {{\"height\": [h, ...]}} with integer heights")
        top = self.core.height
        bad = [h for h in heights if not 0 <= h <= top]
        if bad:
            raise ValueError(f"{GET_BLOCK_HASH}: no block at height(s) {bad}; the chain is at {top}")
        hashes = {str(h): self.core.block_hash_at(h).hex() for h in heights}
        return [OK, _json(hashes[str(heights[0])] if len(heights) == 1 else hashes)]

    def _ping(self, name: str, body: Any, now: float) -> list[bytes]:
        if not isinstance(body, dict):
            raise ValueError(f"{STORAGE_SERVER_PING}: body must be a JSON object")
        self.observations.ping(name, body, now)
        expected = self.identities[name].ed25519_hex
        if body.get("pubkey_ed25519") != expected:
            raise ValueError(f"{STORAGE_SERVER_PING}: pubkey_ed25519 {body.get('pubkey_ed25519')!r} is not the key "
                             f"this endpoint serves ({name}: {expected})")
        v = body.get("version")
        if isinstance(v, list) and len(v) == 3 and all(is_int(x) and 0 <= x <= 65535 for x in v):
            self.contact(name, (v[0], v[1], v[2]))
        return [OK, _json({"status": "OK"})]

    def _peer_report(self, name: str, body: Any, now: float) -> list[bytes]:
        if not isinstance(body, dict):
            raise ValueError(f"{REPORT_PEER_STATUS}: body must be a JSON object")
        subject, passed, kind = body.get("pubkey"), body.get("passed"), body.get("type")
        if kind != "storage" or not isinstance(subject, str) or not isinstance(passed, bool):
            raise ValueError(f"{REPORT_PEER_STATUS}: body must be {{\"type\": \"storage\", \"pubkey\": hex, "
                             f"\"passed\": bool}}, got {body!r}")
        self.observations.peer_report(name, subject.lower(), passed, now)
        return [OK, _json({"status": "OK"})]

    # --- pushes ----------------------------------------------------------------------------
    def block_notification(self) -> list[bytes]:
        """``notify.block`` data frames for the current top block: height (decimal), 32-byte hash."""
        return [str(self.core.height).encode("ascii"), self.core.block_hash_at(self.core.height)]

    def unsubscribe(self, name: str, route: bytes) -> None:
        self.subscribers[name].discard(route)

    # --- inspection ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """``GET /internal/v1/oxend``: per real node, its registry status and what it sent."""
        now = self.core.clock()
        nodes = []
        for name, spec in self.specs.items():
            ident = self.identities[name]
            record = self.core.nodes.get(ident.ed25519_hex)
            about = self.observations.reports_about(ident.ed25519_hex)
            nodes.append({
                "name": name, "pubkey_ed25519": ident.ed25519_hex, "endpoint": spec.endpoint,
                "status": record.status if record else "deregistered",
                "swarm_id": record.swarm_id if record else None,
                "subscribed": len(self.subscribers[name]),
                "peer_ips": dict(spec.peer_ips),
                **self.observations.node_json(name, now),
                "peer_reports_received": about.to_json(now),
            })
        return {"hardfork": list(self.core.config.hardfork), "height": self.core.height, "nodes": nodes}
