"""Authenticated node<->node requests: POST /internal/v1/swarm on the storage port (HTTPS).

Headers (docs/DESIGN.md "node<->node"):
  X-Snode-Pubkey     sender's Ed25519 public key, hex
  X-Snode-Timestamp  sender's time in ms (system clock, not the admin-skewed node clock)
  X-Snode-Signature  base64 Ed25519 signature over ``timestamp ‖ "\n" ‖ body``
The receiver accepts only senders listed by the seed, within ±AUTH_WINDOW_MS.

Every node→node connection (fan-out, replication and re-homing pushes, onion relays) goes through
:class:`PeerClient`, which connects to a peer at its *peer override* (``PUT
/admin/v1/peer_overrides``, used by link faults: a dedicated proxy per link) when one is set and
at the address the seed lists otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodes.common.http1 import Http1Client
from nodes.common.tls import insecure_client_context
from nodes.common.values import parse_hex32, parse_ipv4_port
from nodes.protocol.keys import Identity, verify_ed25519

from .swarm_view import NodeInfo, SwarmView

SWARM_PATH = "/internal/v1/swarm"
H_PUBKEY = "X-Snode-Pubkey"
H_TIMESTAMP = "X-Snode-Timestamp"
H_SIGNATURE = "X-Snode-Signature"
AUTH_WINDOW_MS = 60_000


class PeerAuthError(Exception):
    """The node<->node request is not authentic (401)."""


def signed_message(timestamp: int | str, body: bytes) -> bytes:
    return str(timestamp).encode("ascii") + b"\n" + body


def auth_headers(identity: Identity, body: bytes, timestamp_ms: int | None = None) -> dict[str, str]:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    sig = identity.sign(signed_message(ts, body))
    return {H_PUBKEY: identity.ed25519_hex, H_TIMESTAMP: str(ts),
            H_SIGNATURE: base64.b64encode(sig).decode("ascii")}


def verify_peer(headers: Mapping[str, str], body: bytes, view: SwarmView,
                now_ms: int | None = None) -> NodeInfo:
    """Return the sending node or raise PeerAuthError saying why it is rejected."""
    pk = (headers.get(H_PUBKEY) or "").lower()
    ts_text = headers.get(H_TIMESTAMP) or ""
    sig_text = headers.get(H_SIGNATURE) or ""
    if not pk or not ts_text or not sig_text:
        raise PeerAuthError(f"missing {H_PUBKEY}/{H_TIMESTAMP}/{H_SIGNATURE} headers")
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
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise PeerAuthError(f"invalid {H_SIGNATURE}: not base64") from None
    if not verify_ed25519(bytes.fromhex(pk), signed_message(ts_text, body), sig):
        raise PeerAuthError("signature verification failed")
    return node


@dataclass(frozen=True)
class SignedRequest:
    """A signed node<->node request: the JSON body and the X-Snode-* headers over it."""

    body: bytes
    headers: Mapping[str, str]


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

    def signed_swarm_request(self, method: str, params: Mapping[str, Any]) -> SignedRequest:
        """The body and auth headers of a swarm request, built and signed once: the signature
        covers only the sender's time and the body, so one serves every peer of a fan-out."""
        body = json.dumps({"method": method, "params": params}, separators=(",", ":")).encode()
        headers = auth_headers(self.identity, body)
        headers["Content-Type"] = "application/json"
        return SignedRequest(body, headers)

    async def swarm_request(self, node: NodeInfo, method: str, params: Mapping[str, Any],
                            timeout: float) -> PeerReply:
        """POST {"method", "params"} to a peer; raises TimeoutError / OSError."""
        return await self.send_signed(node, self.signed_swarm_request(method, params), timeout)

    async def send_signed(self, node: NodeInfo, request: SignedRequest, timeout: float) -> PeerReply:
        """POST a request from :meth:`signed_swarm_request` to a peer (over a pooled keep-alive
        connection); raises TimeoutError / OSError (:class:`~nodes.common.http1.PeerHttpError`)."""
        ip, port = self.address(node)
        answer = await self.http.post(ip, port, SWARM_PATH, request.body, request.headers, timeout)
        return PeerReply(answer.status, answer.body.decode("utf-8", "replace"))

    async def post_raw(self, node: NodeInfo, path: str, body: bytes,
                       timeout: float) -> tuple[int, bytes, str]:
        """POST bytes (an onion frame) to a peer: (status, body, Content-Type); raises
        TimeoutError / OSError."""
        ip, port = self.address(node)
        answer = await self.http.post(ip, port, path, body, _RAW_HEADERS, timeout)
        return answer.status, answer.body, answer.headers.get("content-type", "text/plain")


_RAW_HEADERS = {"Content-Type": "application/octet-stream"}
