"""POST /onion_req/v2 (PROTOCOL.md §5), as the storage server's onion processing does it.

* outer frame unparsable / bad ephemeral_key / bad enc_type -> 400 "Error parsing onion request: …"
* hop counter above 15                                     -> 400 "onion request max path length exceeded"
* layer does not decrypt                                     -> 400 "Invalid ciphertext"
* decrypted layer is not a frame / bad routing JSON          -> 400 "Invalid json", encrypted (200 + b64)
* destination (JSON has "headers"): run the storage RPC in the blob and answer
  ``{"status", "body"}`` encrypted with the same key and scheme, base64, HTTP 200
* relay: next hop unknown -> 502 "Next node not found: <hex>"; no answer -> 504 "Request time out";
  next hop not ready -> 503 "Snode not ready: <its ed25519 hex>" (see below); otherwise the next
  hop's status and body are passed back unchanged.
* server route (JSON has "host", docs/fileserver.md): bad fields -> 400 "Invalid json"; a
  protocol/target production does not forward to, or a host outside the testnet -> 400
  "Invalid url" (both encrypted); otherwise the whole decrypted layer is POSTed to the server
  (:mod:`.server_forward`) and its answer passed back; unreachable -> plaintext 502/504 with
  curl's text.

A not-ready next hop: the storage server relays over OxenMQ (``sn.onion_request``), where a node
that is not ready answers ``503 "Snode not ready: <its own ed25519 hex>"`` (RequestHandler::
process_onion_req); only the edge, reached over HTTPS, answers ``"Service node is not ready:
<reason>"`` (HTTPS::check_ready). Our relays reach the next hop over HTTPS, so its readiness
answer is the edge's; the relay gives the client what the OxenMQ channel would have: the
not-ready node named, which clients strike (libsession ``SnodeNotReady``) instead of blaming the
edge (``EdgeNotReady``) for a node behind it.

Hop counter: like the storage server (which carries ``hop_no`` in its node<->node onion message
and also accepts a fake starting ``hop_no`` in the guard's JSON), a relay adds
``"hop_no": n + 1`` to the outer JSON of the frame it POSTs to the next hop's /onion_req/v2;
a node receiving ``hop_no`` > 15 rejects the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from nodes.common.values import is_int, parse_hex32
from nodes.protocol import onion, onion_server
from nodes.protocol.keys import Identity

from .behaviours import Behaviours
from .peers import PeerClient
from .rpc import RpcHandler
from .server_forward import ForwardRefused, ServerForwarder
from .swarm_view import SwarmView

ONION_PATH = "/onion_req/v2"
#: the HTTPS readiness answer (server.py ``_not_ready``, oxen-storage HTTPS::check_ready)
HTTPS_NOT_READY_PREFIX = b"Service node is not ready:"
#: what a not-ready node answers on the node<->node channel (oxen-storage process_onion_req)
SNODE_NOT_READY = "Snode not ready: {}"


@dataclass
class OnionOutcome:
    status: int
    body: bytes
    content_type: str = "text/plain"
    hop: str | None = None  # "relay" | "destination" | None (rejected before the role was known)
    next_hop: str | None = None
    method: str | None = None
    accounts: list[str] = field(default_factory=list)
    inner_status: int | None = None  # destination: status of the storage RPC inside
    server: str | None = None  # exit to a server: the URL it named


def _plain(status: int, text: str, **kw: Any) -> OnionOutcome:
    return OnionOutcome(status, text.encode("utf-8"), **kw)


class OnionHandler:
    def __init__(self, identity: Identity, get_view: Callable[[], SwarmView], rpc: RpcHandler,
                 client: PeerClient | None, behaviours: Behaviours, relay_timeout: float = 10.0,
                 log: Any = None, forwarder: ServerForwarder | None = None) -> None:
        self.identity = identity
        self.get_view = get_view
        self.rpc = rpc
        self.client = client
        self.behaviours = behaviours
        self.relay_timeout = relay_timeout
        self.log = log
        self.forwarder = forwarder

    async def handle(self, frame: bytes) -> OnionOutcome:
        # 1. outer frame
        try:
            ciphertext, outer = onion.decode_frame(frame)
            try:
                eph = parse_hex32(outer.get("ephemeral_key"))
            except ValueError:
                raise onion.OnionError("invalid ephemeral_key: expected 64 hex characters") from None
            enc_type = onion.parse_enc_type(outer.get("enc_type"))
            hop_no = outer.get("hop_no", 0)
            if not is_int(hop_no):
                raise onion.OnionError("invalid hop_no: expected an integer")
            hop_no = max(0, hop_no)
        except onion.OnionError as e:
            return _plain(400, f"Error parsing onion request: {e}")
        if hop_no > onion.MAX_HOPS:
            return _plain(400, "onion request max path length exceeded")

        # 2. decrypt this node's layer
        try:
            shared = onion.shared_secret(self.identity.x25519_secret, eph)
            key = onion.layer_key(enc_type, shared, eph, self.identity.x25519_public)
            plaintext = onion.decrypt_layer(enc_type, key, ciphertext)
        except onion.OnionError:
            return _plain(400, "Invalid ciphertext")

        def encrypted(status: int, body: str, hop: str | None, **kw: Any) -> OnionOutcome:
            data = onion.encrypt_response(enc_type, key, status, body)
            return OnionOutcome(200, data, hop=hop, inner_status=status, **kw)

        # 3. inner frame
        try:
            blob, meta = onion.decode_frame(plaintext)
        except onion.OnionError:
            return encrypted(400, "Invalid json", None)

        if "headers" in meta:
            return await self._destination(blob, meta, enc_type, key)
        if "host" in meta:
            try:
                route = onion_server.parse_server_route(meta)
            except onion.OnionError:
                return encrypted(400, "Invalid json", "relay")
            if not route.allowed:
                return encrypted(400, onion_server.INVALID_URL, "relay", server=route.url)
            return await self._to_server(route, plaintext, encrypted)
        try:
            next_ed = parse_hex32(meta.get("destination")).hex()
            next_eph = parse_hex32(meta.get("ephemeral_key")).hex()
            next_enc = onion.parse_enc_type(meta.get("enc_type"))
        except (ValueError, onion.OnionError):
            return encrypted(400, "Invalid json", "relay")
        return await self._relay(blob, next_ed, next_eph, next_enc, hop_no)

    async def _destination(self, blob: bytes, meta: dict[str, Any], enc_type: str,
                           key: bytes) -> OnionOutcome:
        embed_json = meta.get("json") is True
        b64 = meta.get("base64", True) is not False
        resp, method, accounts = await self.rpc.handle_body(blob)
        data = onion.encrypt_response(enc_type, key, resp.status, resp.body_text(),
                                      embed_json=embed_json and resp.is_json, base64_encode=b64)
        return OnionOutcome(200, data, hop="destination", method=method, accounts=accounts,
                            inner_status=resp.status)

    async def _to_server(self, route: onion_server.ServerRoute, plaintext: bytes,
                         encrypted: Callable[..., OnionOutcome]) -> OnionOutcome:
        url = route.url
        if self.forwarder is None:
            return encrypted(400, onion_server.INVALID_URL, "relay", server=url)
        try:
            self.forwarder.policy.address_for(route.host)
        except ForwardRefused as e:
            if self.log:
                self.log.warning("onion_server_refused", server=url, reason=str(e))
            return encrypted(400, onion_server.INVALID_URL, "relay", server=url)
        if self.behaviours.drop_relays:
            return _plain(504, "Request time out", hop="relay", server=url)
        if self.behaviours.corrupt_relays and len(plaintext) > 4:
            i = 4 + (len(plaintext) - 4) // 2
            plaintext = plaintext[:i] + bytes([plaintext[i] ^ 0x01]) + plaintext[i + 1:]
        answer = await self.forwarder.forward(route, plaintext)
        if answer.status >= 500 and self.log:
            self.log.info("onion_server_failed", server=url, status=answer.status,
                          error=answer.body[:200].decode("utf-8", "replace"))
        return OnionOutcome(answer.status, answer.body, content_type=answer.content_type,
                            hop="relay", server=url)

    async def _relay(self, blob: bytes, next_ed: str, next_eph: str, next_enc: str,
                     hop_no: int) -> OnionOutcome:
        node = self.get_view().find_node(next_ed)
        if node is None:
            return _plain(502, f"Next node not found: {next_ed}", hop="relay", next_hop=next_ed)
        if self.behaviours.drop_relays or self.client is None:
            return _plain(504, "Request time out", hop="relay", next_hop=next_ed)
        if self.behaviours.corrupt_relays and blob:
            i = len(blob) // 2
            blob = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]
        frame = onion.encode_frame(blob, {"ephemeral_key": next_eph, "enc_type": next_enc,
                                          "hop_no": hop_no + 1})
        try:
            status, body, ctype = await self.client.post_raw(node, ONION_PATH, frame, self.relay_timeout)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            if self.log:
                self.log.info("onion_relay_failed", next_hop=next_ed, error=repr(e))
            return _plain(504, "Request time out", hop="relay", next_hop=next_ed)
        if status == 503 and body.startswith(HTTPS_NOT_READY_PREFIX):
            return _plain(503, SNODE_NOT_READY.format(next_ed), hop="relay", next_hop=next_ed)
        return OnionOutcome(status, body, content_type=ctype.split(";")[0] or "text/plain",
                            hop="relay", next_hop=next_ed)
