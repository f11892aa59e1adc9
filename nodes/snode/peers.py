"""Authenticated node<->node requests: POST /internal/v1/swarm on the storage port (HTTPS).

Headers (docs/DESIGN.md "node<->node"):
  X-Snode-Pubkey     sender's Ed25519 public key, hex
  X-Snode-Timestamp  sender's time in ms (system clock, not the admin-skewed node clock)
  X-Snode-Auth       base64 MAC: keyed BLAKE2b-256 over ``receiver's Ed25519 key ‖ timestamp ‖
                     "\n" ‖ body``, under the key the two nodes share (:class:`PeerAuth`)
  X-Snode-Signature  base64 Ed25519 signature over ``timestamp ‖ "\n" ‖ body``
The receiver accepts only senders listed by the seed, within ±AUTH_WINDOW_MS, and checks the MAC
when there is one, else the signature.

The shared key of two nodes is BLAKE2b-256 (personalised) of their X25519 Diffie-Hellman secret,
from each one's X25519 key as the seed lists it: made once per peer and kept, so checking a
request costs one MAC (~2 µs) instead of an Ed25519 check (~100 µs, one per peer of every
fan-out), and the receiver's key in the MAC stops a request from being reflected back to its
sender. The signature (made once per body, whatever the number of peers) is still sent because
nodes of earlier versions of this project (``python@REF`` node groups) check only it.

Every node→node connection (fan-out, replication and re-homing pushes, onion relays) goes through
:class:`PeerClient`, which connects to a peer at its *peer override* (``PUT
/admin/v1/peer_overrides``, used by link faults: a dedicated proxy per link) when one is set and
at the address the seed lists otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodes.common.http1 import Http1Client
from nodes.common.tls import insecure_client_context
from nodes.common.values import parse_hex32, parse_ipv4_port
from nodes.protocol.keys import Identity, verify_ed25519
from nodes.protocol.onion import OnionError, shared_secret

from .swarm_view import NodeInfo, SwarmView

SWARM_PATH = "/internal/v1/swarm"
H_PUBKEY = "X-Snode-Pubkey"
H_TIMESTAMP = "X-Snode-Timestamp"
H_AUTH = "X-Snode-Auth"
H_SIGNATURE = "X-Snode-Signature"
AUTH_WINDOW_MS = 60_000
#: personalisation of the pair key's hash (BLAKE2b takes at most 16 bytes)
PAIR_KEY_PERSON = b"st-snode-pairkey"
#: pair keys a node keeps (one per peer it talked to; the oldest go first beyond this)
MAX_PAIR_KEYS = 4096


class PeerAuthError(Exception):
    """The node<->node request is not authentic (401)."""


def signed_message(timestamp: int | str, body: bytes) -> bytes:
    """What X-Snode-Signature signs."""
    return str(timestamp).encode("ascii") + b"\n" + body


@dataclass(frozen=True)
class SwarmRequest:
    """A swarm request's body with its sender's time and signature, made once for every peer of
    a fan-out; :meth:`PeerAuth.headers` adds each peer's MAC."""

    body: bytes
    timestamp_ms: int
    signature: str  #: base64 Ed25519 over ``timestamp ‖ "\n" ‖ body``


def auth_mac(key: bytes, receiver_ed25519: bytes, timestamp: int | str, body: bytes) -> bytes:
    """The MAC of one request: keyed BLAKE2b-256 over receiver ‖ timestamp ‖ "\n" ‖ body."""
    h = hashlib.blake2b(key=key, digest_size=32)
    h.update(receiver_ed25519)
    h.update(str(timestamp).encode("ascii") + b"\n")
    h.update(body)
    return h.digest()


class PeerAuth:
    """One node's side of node<->node authentication: the pair keys it shares with its peers
    (made on first use from the two X25519 keys, kept up to :data:`MAX_PAIR_KEYS`), the headers
    of a request to a peer and the check of a request from one."""

    def __init__(self, identity: Identity, max_keys: int = MAX_PAIR_KEYS) -> None:
        self.identity = identity
        self.max_keys = max_keys
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def pair_key(self, peer_x25519_hex: str) -> bytes:
        """The key this node shares with the node of X25519 key ``peer_x25519_hex`` (raises
        PeerAuthError for a key that is not a valid X25519 public key)."""
        key = self._keys.get(peer_x25519_hex)
        if key is not None:
            self._keys.move_to_end(peer_x25519_hex)
            return key
        try:
            secret = shared_secret(self.identity.x25519_secret, parse_hex32(peer_x25519_hex))
        except (ValueError, OnionError) as e:
            raise PeerAuthError(f"no pair key with X25519 key {peer_x25519_hex[:64]!r}: {e}") from None
        key = hashlib.blake2b(secret, digest_size=32, person=PAIR_KEY_PERSON).digest()
        self._keys[peer_x25519_hex] = key
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return key

    def request(self, body: bytes, timestamp_ms: int | None = None) -> SwarmRequest:
        """``body`` with this node's time and signature (once per body)."""
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        sig = base64.b64encode(self.identity.sign(signed_message(ts, body))).decode("ascii")
        return SwarmRequest(body, ts, sig)

    def headers(self, peer: NodeInfo, request: SwarmRequest) -> dict[str, str]:
        """The X-Snode-* headers of ``request`` to ``peer``."""
        mac = auth_mac(self.pair_key(peer.pubkey_x25519), bytes.fromhex(peer.pubkey_ed25519),
                       request.timestamp_ms, request.body)
        return {H_PUBKEY: self.identity.ed25519_hex, H_TIMESTAMP: str(request.timestamp_ms),
                H_AUTH: base64.b64encode(mac).decode("ascii"), H_SIGNATURE: request.signature}

    def verify(self, headers: Mapping[str, str], body: bytes, view: SwarmView,
               now_ms: int | None = None) -> NodeInfo:
        """Return the sending node or raise PeerAuthError saying why it is rejected."""
        pk = (headers.get(H_PUBKEY) or "").lower()
        ts_text = headers.get(H_TIMESTAMP) or ""
        mac_text = headers.get(H_AUTH) or ""
        sig_text = headers.get(H_SIGNATURE) or ""
        if not pk or not ts_text or not (mac_text or sig_text):
            raise PeerAuthError(f"missing {H_PUBKEY}/{H_TIMESTAMP}/{H_AUTH} headers")
        node = view.nodes.get(pk)
        if node is None:
            raise PeerAuthError(f"unknown sender {pk[:64]}: not a registered service node")
        try:
            ts = int(ts_text)
        except ValueError:
            raise PeerAuthError(f"invalid {H_TIMESTAMP}: {ts_text[:32]!r}") from None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now - ts) > AUTH_WINDOW_MS:
            raise PeerAuthError(f"{H_TIMESTAMP} {ts} is more than {AUTH_WINDOW_MS} ms from now ({now})")
        name = H_AUTH if mac_text else H_SIGNATURE
        try:
            proof = base64.b64decode(mac_text or sig_text, validate=True)
        except (binascii.Error, ValueError):
            raise PeerAuthError(f"invalid {name}: not base64") from None
        if mac_text:
            expected = auth_mac(self.pair_key(node.pubkey_x25519), self.identity.ed25519_public, ts_text, body)
            ok = hmac.compare_digest(proof, expected)
        else:  # a node of an earlier version
            ok = verify_ed25519(bytes.fromhex(pk), signed_message(ts_text, body), proof)
        if not ok:
            raise PeerAuthError(f"{name} does not match: not from {pk[:64]} for this node, "
                                "or the body was changed")
        return node


@dataclass
class PeerReply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class PeerOverrides:
    """Per-peer address overrides: ed25519 hex -> (ip, port), kept in memory only (a restarted
    node has none; whoever set them sets them again)."""

    def __init__(self) -> None:
        self._map: dict[str, tuple[str, int]] = {}

    def get(self, pubkey_ed25519: str) -> tuple[str, int] | None:
        return self._map.get(pubkey_ed25519.lower())

    def to_json(self) -> dict[str, str]:
        return {pk: f"{ip}:{port}" for pk, (ip, port) in sorted(self._map.items())}

    def update(self, changes: Any) -> None:
        """Apply ``{"<ed25519 hex>": "ip:port" | null, ...}`` (null removes); validates every
        entry before changing anything and raises ValueError naming the bad one."""
        if not isinstance(changes, dict):
            raise ValueError('expected a JSON object {"<peer ed25519 hex>": "ip:port" | null, ...}')
        parsed: dict[str, tuple[str, int] | None] = {}
        for key, value in changes.items():
            try:
                parse_hex32(key)
            except ValueError as e:
                raise ValueError(f"peer key {key!r}: {e}") from None
            try:
                parsed[key.lower()] = None if value is None else parse_ipv4_port(value)
            except ValueError as e:
                raise ValueError(f"override for {key}: {e}") from None
        for pk, addr in parsed.items():
            if addr is None:
                self._map.pop(pk, None)
            else:
                self._map[pk] = addr

    def __len__(self) -> int:
        return len(self._map)


class PeerClient:
    """HTTPS client for other nodes (self-signed certificates are not verified), over the lean
    keep-alive HTTP/1.1 client of :mod:`nodes.common.http1` (docs/nodes.md, "Performance")."""

    def __init__(self, identity: Identity, scheme: str = "https",
                 overrides: PeerOverrides | None = None) -> None:
        self.identity = identity
        self.scheme = scheme  # "http" only for in-process tests without TLS
        self.overrides = overrides if overrides is not None else PeerOverrides()
        self.auth = PeerAuth(identity)
        self._http: Http1Client | None = None

    @property
    def http(self) -> Http1Client:
        """The connection pool, made on first use (tests set :attr:`scheme` before)."""
        if self._http is None:
            self._http = Http1Client(insecure_client_context() if self.scheme == "https" else None)
        return self._http

    @property
    def requests_sent(self) -> int:
        return self._http.requests if self._http is not None else 0

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def address(self, node: NodeInfo) -> tuple[str, int]:
        """Where to connect to ``node``: its override if one is set, else the seed's address."""
        return self.overrides.get(node.pubkey_ed25519) or (node.public_ip, node.storage_port)

    def url(self, node: NodeInfo, path: str) -> str:
        ip, port = self.address(node)
        return f"{self.scheme}://{ip}:{port}{path}"

    def swarm_request(self, method: str, params: Mapping[str, Any]) -> SwarmRequest:
        """A swarm request, serialised and signed once for every peer of a fan-out (each peer's
        request differs only in its MAC, :meth:`PeerAuth.headers`)."""
        body = json.dumps({"method": method, "params": params}, separators=(",", ":")).encode()
        return self.auth.request(body)

    async def send_swarm(self, node: NodeInfo, request: SwarmRequest, timeout: float) -> PeerReply:
        """POST a request from :meth:`swarm_request` to a peer with this node's auth headers for
        it (over a pooled keep-alive connection); raises TimeoutError / OSError
        (:class:`~nodes.common.http1.PeerHttpError`) or PeerAuthError (the peer's X25519 key
        as listed is unusable)."""
        ip, port = self.address(node)
        headers = self.auth.headers(node, request)
        headers["Content-Type"] = "application/json"
        answer = await self.http.post(ip, port, SWARM_PATH, request.body, headers, timeout)
        return PeerReply(answer.status, answer.body.decode("utf-8", "replace"))

    async def post_raw(self, node: NodeInfo, path: str, body: bytes,
                       timeout: float) -> tuple[int, bytes, str]:
        """POST bytes (an onion frame) to a peer: (status, body, Content-Type); raises
        TimeoutError / OSError."""
        ip, port = self.address(node)
        answer = await self.http.post(ip, port, path, body, _RAW_HEADERS, timeout)
        return answer.status, answer.body, answer.headers.get("content-type", "text/plain")


_RAW_HEADERS = {"Content-Type": "application/octet-stream"}
