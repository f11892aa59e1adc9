"""Authenticated node<->node requests: POST /internal/v1/swarm on the storage port (HTTPS).

Headers (docs/DESIGN.md "node<->node"):
  X-Snode-Pubkey     sender's Ed25519 public key, hex
  X-Snode-Timestamp  sender's time in ms (system clock, not the admin-skewed node clock)
  X-Snode-Signature  base64 Ed25519 signature over ``timestamp ‖ "\n" ‖ body``
The receiver accepts only senders listed by the seed, within ±AUTH_WINDOW_MS.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from nodes.protocol.keys import Identity, verify_ed25519

from .swarm_view import NodeInfo, SwarmView
from .tls import insecure_client_context

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


@dataclass
class PeerReply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class PeerClient:
    """HTTPS client for other nodes (self-signed certificates are not verified)."""

    def __init__(self, identity: Identity, scheme: str = "https") -> None:
        self.identity = identity
        self.scheme = scheme  # "http" only for in-process tests without TLS
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=insecure_client_context(), limit=256),
                timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, node: NodeInfo, path: str) -> str:
        return f"{self.scheme}://{node.public_ip}:{node.storage_port}{path}"

    async def swarm_request(self, node: NodeInfo, method: str, params: Mapping[str, Any],
                            timeout: float) -> PeerReply:
        """POST {"method", "params"} to a peer; raises asyncio.TimeoutError / aiohttp.ClientError."""
        body = json.dumps({"method": method, "params": params}, separators=(",", ":")).encode()
        headers = auth_headers(self.identity, body)
        headers["Content-Type"] = "application/json"
        async with self.session.post(self.url(node, SWARM_PATH), data=body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return PeerReply(resp.status, await resp.text())

    async def post_raw(self, node: NodeInfo, path: str, body: bytes,
                       timeout: float) -> tuple[int, bytes, str]:
        async with self.session.post(self.url(node, path), data=body,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "text/plain")
