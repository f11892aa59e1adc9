"""Storage RPC handlers for POST /storage_rpc/v1 (PROTOCOL.md §4); requests are parsed and
validated by :mod:`nodes.snode.requests`.

Behaviour, status codes and error strings follow the production storage server
(session-storage-server ``oxenss/rpc/client_rpc_endpoints.cpp`` and ``request_handler.cpp``):

* the body is parsed first; any malformed field is ``400 "invalid request: <reason>"``;
* then the swarm check (421 with the correct swarm), then TTL (403), clock (406) and the
  signature (401), then the operation;
* store/delete*/expire*/(un)revoke_subaccount are "recursive": the entry node fans the request
  out to its swarm peers and answers ``{"swarm": {ed25519_hex: result}}``; a peer runs the same
  handler with ``forwarded=True`` and answers its own result at top level;
* group subaccounts (``subaccount`` / ``subaccount_sig``) authenticate every method that takes
  them, with the permission the storage server requires (read: retrieve, get_expiries; write:
  store, expire; delete: delete*, expire_all, shortening expiries, storing to a public outbox);
  a revoked token fails with the method's usual 401 (except retrieve from -(100n+11));
* pubkeys are read as a testnet storage server reads them: 66 hex, or 64 hex = a ``05`` account;
* ``active_nodes_bin`` answers binary (``Response.body`` is bytes): octet-stream directly, base64
  text inside batch / sequence / ifelse results and onion answers;
* ``ifelse`` runs its "then" or "else" request depending on hf / version / height conditions;
  the height is the seed's block height.

A method that requires a signature and gets none answers 400 ``invalid request: Required field
'signature' missing``, as the storage server's parser does (PROTOCOL.md §4); an unsigned
``retrieve`` without ``namespace`` is the handler's 401 ``retrieve: request signature required``.

"t" (node time, ms) and "hf" are added per method as the storage server's request handler adds
them: info, get_swarm, retrieve, oxend_request, revoked_subaccounts, the 421 answer and the entry
node's answer of the recursive methods; not get_expiries, batch or sequence; ifelse carries "hf"
(with "v", "height", "condition") but no "t".  docs/conformance.md lists them.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nodes.protocol import jsonin, signing
from nodes.protocol.constants import (
    CLOCK_TOLERANCE_MS,
    HARDFORK,
    SIGNATURE_WINDOW_MS,
    STORAGE_SERVER_VERSION,
    SUBACCOUNT_DELETE,
    SUBACCOUNT_READ,
    SUBACCOUNT_WRITE,
    TTL_MAX_PRIVATE_MS,
    TTL_MIN_MS,
    is_public_outbox_namespace,
    is_unrevocable_namespace,
    max_ttl_ms,
    namespace_read_needs_auth,
    namespace_store_needs_auth,
)
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, SessionID, user_pubkey_hex
from nodes.protocol.swarm import UNASSIGNED_SWARM

from .behaviours import Behaviours
from .clock import Clock
from .request_fields import MISSING_SIGNATURE_TEXT, NAMESPACE_ALL, MissingSignature, ParseError
from .request_types import (
    Auth,
    BatchReq,
    DeleteReq,
    ExpireReq,
    GetExpiriesReq,
    IfElseReq,
    NsTimeReq,
    OxendReq,
    PubkeyReq,
    Req,
    RetrieveReq,
    RevokedListReq,
    RevokeReq,
    StoreReq,
)
from .requests import PARSERS, RECURSIVE_METHODS, accounts_of, parse_request
from .storage import Message, Storage
from .swarm_view import NodeInfo, SwarmView

SIGNATURE_WINDOW_FORWARDED_MS = 70_000  # storage server SIGNATURE_TOLERANCE_FORWARDED
RETRIEVE_MAX_SIZE = 7_800_000


@dataclass
class Response:
    """A storage RPC answer: JSON (dict), an error string (str) or binary data (bytes)."""

    status: int
    body: dict[str, Any] | str | bytes

    @property
    def is_json(self) -> bool:
        return isinstance(self.body, dict)

    @property
    def is_binary(self) -> bool:
        return isinstance(self.body, (bytes, bytearray))

    def body_text(self) -> str:
        """The body as text; binary bodies become base64 (what the storage server does wherever
        binary cannot travel: batch results, onion answers)."""
        if isinstance(self.body, dict):
            return json.dumps(self.body, separators=(",", ":"))
        if isinstance(self.body, (bytes, bytearray)):
            return b64(bytes(self.body))
        return self.body

    def json_value(self) -> Any:
        """The body as it is embedded in a batch / sequence / ifelse result."""
        return self.body if isinstance(self.body, dict) else self.body_text()


class Forwarder(Protocol):
    async def forward(self, peers: Sequence[NodeInfo], method: str,
                      params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Send a recursive request to `peers`; per-peer result dicts keyed by ed25519 hex."""
        ...


OxendCall = Callable[[str, dict[str, Any] | None], Awaitable[Any]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ns_key(ns: int) -> str:
    return str(ns)


# ---------------------------------------------------------------------------------------------
# handler
# ---------------------------------------------------------------------------------------------

class RpcHandler:
    """Runs parsed storage RPCs against the local store, fanning out recursive ones."""

    def __init__(self, identity: Identity, storage: Storage, clock: Clock,
                 get_view: Callable[[], SwarmView], forwarder: Forwarder | None = None,
                 oxend: OxendCall | None = None, behaviours: Behaviours | None = None,
                 log: Any = None) -> None:
        self.identity = identity
        self.storage = storage
        self.clock = clock
        self.get_view = get_view
        self.forwarder = forwarder
        self.oxend = oxend
        self.behaviours = behaviours or Behaviours()
        self.log = log
        self.my_ed = identity.ed25519_hex

    # --- helpers -------------------------------------------------------------------------------
    def misc(self, body: dict[str, Any], now: int | None = None) -> dict[str, Any]:
        body["t"] = self.clock.now_ms() if now is None else now
        body["hf"] = list(HARDFORK)
        return body

    def sign_b64(self, *parts: Any) -> str:
        """This node's signature over the concatenated parts (text as ASCII, bytes as is)."""
        msg = b"".join(bytes(x) if isinstance(x, (bytes, bytearray)) else str(x).encode("ascii")
                       for x in parts)
        return b64(self.identity.sign(msg))

    def wrong_swarm(self, view: SwarmView, pubkey: SessionID) -> Response:
        return Response(421, self.misc(view.swarm_json(pubkey)))

    async def _verify(self, pubkey: SessionID, auth: Auth, message: bytes, access: int = 0,
                      skip_revoke: bool = False) -> bool:
        """The storage server's verify_signature: a revoked subaccount token fails (unless
        ``skip_revoke``), the token must grant ``access``, then the signature must verify."""
        sub = auth.subaccount
        if sub is not None and not skip_revoke and await self.storage.subaccount_revoked(
                pubkey.hex, sub.token.raw):
            return False
        try:
            signing.verify_request(pubkey, auth.pubkey_ed25519, message, auth.signature,
                                   subaccount=sub, required_access=access)
            return True
        except signing.SignatureError:
            return False

    # --- entry points --------------------------------------------------------------------------
    async def handle_body(self, body: bytes | str) -> tuple[Response, str | None, list[str]]:
        """Parse a /storage_rpc/v1 body and run it.  Returns (response, method, accounts)."""
        try:
            doc = jsonin.loads(body)
        except jsonin.JsonSyntaxError:
            return Response(400, "invalid json"), None, []  # the storage server's exact answer
        except jsonin.JsonInputError as e:  # nesting / encoding: say which
            return Response(400, f"invalid json: {e}"), None, []
        if not isinstance(doc, dict):
            return Response(400, "invalid json: no `method` field"), None, []
        method = doc.get("method")
        if not isinstance(method, str):
            return Response(400, "invalid json: no `method` field"), None, []
        params = doc.get("params")
        if not isinstance(params, dict):
            return Response(400, "invalid json: no `params` field"), method, []
        return await self.handle(method, params), method, accounts_of(method, params)

    async def handle(self, method: str, params: Mapping[str, Any], *, forwarded: bool = False) -> Response:
        if method not in PARSERS:
            return Response(400, f"no method {method}")
        if forwarded and method not in RECURSIVE_METHODS:
            return Response(400, "invalid request: received invalid forwarded non-forwardable request")
        try:
            req = parse_request(method, params)
        except MissingSignature:
            return Response(400, MISSING_SIGNATURE_TEXT)
        except ParseError as e:
            return Response(400, f"invalid request: {e}")
        except RecursionError:
            return Response(400, "invalid request: requests are nested too deeply")
        try:
            return await self.process(req, forwarded=forwarded)
        except Exception as e:  # noqa: BLE001 - the client gets a generic 500, the log the cause
            if self.log:
                self.log.error("rpc_exception", method=method, error=repr(e))
            return Response(500, "request failed")

    async def process(self, req: Req, *, forwarded: bool = False) -> Response:
        fn = {
            "store": self.do_store,
            "retrieve": self.do_retrieve,
            "delete": self.do_delete,
            "delete_all": self.do_delete_all,
            "delete_before": self.do_delete_before,
            "expire_all": self.do_expire_all,
            "expire": self.do_expire,
            "get_expiries": self.do_get_expiries,
            "get_swarm": self.do_get_swarm,
            "get_snodes_for_pubkey": self.do_get_swarm,
            "info": self.do_info,
            "oxend_request": self.do_oxend,
            "active_nodes_bin": self.do_active_nodes_bin,
            "revoke_subaccount": self.do_revoke,
            "unrevoke_subaccount": self.do_revoke,
            "revoked_subaccounts": self.do_revoked_subaccounts,
            "batch": self.do_batch,
            "sequence": self.do_sequence,
            "ifelse": self.do_ifelse,
        }[req.method]
        if req.method in RECURSIVE_METHODS:
            return await fn(req, forwarded)  # type: ignore[operator,no-any-return]
        return await fn(req)  # type: ignore[operator,no-any-return]

    # --- recursion -----------------------------------------------------------------------------
    async def recurse(self, req: Req, forwarded: bool, now: int,
                      local: Callable[[], Awaitable[dict[str, Any]]],
                      extra: Callable[[dict[str, Any]], None] | None = None,
                      fan_out: bool = True) -> Response:
        """Run `local` here and (unless forwarded) on every peer; build the swarm response."""
        if forwarded:
            # A peer answers its own result at top level, without t/hf (storage server
            # behaviour for forwarded requests); the entry node files it under "swarm".
            mine = await local()
            return Response(500 if mine.get("failed") else 200, mine)
        peers = self.get_view().peers() if fan_out and self.forwarder is not None else []
        remote_task = None
        if peers:
            remote_task = asyncio.ensure_future(
                self.forwarder.forward(peers, req.method, dict(req.params)))  # type: ignore[union-attr]
        try:
            mine = await local()
        except Exception as e:  # noqa: BLE001
            if self.log:
                self.log.error("local_operation_failed", method=req.method, error=repr(e))
            mine = {"failed": True, "query_failure": True, "reason": str(e)}
        swarm: dict[str, Any] = {self.my_ed: mine}
        if remote_task is not None:
            swarm.update(await remote_task)
        body: dict[str, Any] = {"swarm": swarm}
        if extra is not None:
            extra(body)
        self.misc(body, now)
        status = 200 if any(not r.get("failed") for r in swarm.values()) else 500
        return Response(status, body)

    # --- store ---------------------------------------------------------------------------------
    async def do_store(self, req: StoreReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        ttl = req.expiry - req.timestamp
        if ttl < TTL_MIN_MS or ttl > max_ttl_ms(req.namespace):
            return Response(403, "Provided expiry/TTL is not valid.")
        now = self.clock.now_ms()
        if req.timestamp > now + CLOCK_TOLERANCE_MS or req.expiry < now - CLOCK_TOLERANCE_MS:
            return Response(406, "Timestamp error: check your clock")
        if namespace_store_needs_auth(req.namespace):
            if req.auth is None:
                return Response(401, f"store: signature required to store to namespace {req.namespace}")
            assert req.sig_ts is not None
            if abs(req.sig_ts - now) > SIGNATURE_WINDOW_MS:
                return Response(406, "store signature timestamp too far from current time")
            # a store replaces what a public outbox holds, so a subaccount also needs delete
            access = SUBACCOUNT_WRITE | (SUBACCOUNT_DELETE if is_public_outbox_namespace(req.namespace) else 0)
            if not await self._verify(req.pubkey, req.auth,
                                      signing.store_message(req.namespace, req.sig_ts), access):
                return Response(401, "store signature verification failed")

        h = message_hash(req.pubkey, req.namespace, req.data)
        dropping = self.behaviours.drop_stores

        async def local() -> dict[str, Any]:
            if dropping:
                new, expiry = True, req.expiry
            else:
                new, expiry = await self.storage.store(Message(
                    req.pubkey.hex, req.namespace, h, req.timestamp, req.expiry, req.data))
            mine: dict[str, Any] = {"hash": h, "signature": self.sign_b64(h)}
            if not new:
                # 2.8.0: the entry node's own answer says true; a peer's travels bt-encoded over
                # OxenMQ sn.storage_cc, and bencode has no booleans, so it arrives as 1
                mine["already"] = 1 if forwarded else True
            mine["expiry"] = expiry
            if not forwarded:
                mine["t"] = now
            return mine

        def extra(body: dict[str, Any]) -> None:
            body["hash"] = h

        return await self.recurse(req, forwarded, now, local, extra, fan_out=not dropping)

    # --- retrieve ------------------------------------------------------------------------------
    async def do_retrieve(self, req: RetrieveReq) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        if namespace_read_needs_auth(req.namespace) and req.auth is None:
            return Response(401, "retrieve: request signature required")
        if req.auth is not None:
            assert req.timestamp is not None
            if abs(req.timestamp - now) > SIGNATURE_WINDOW_MS:
                return Response(406, "retrieve timestamp too far from current time")
            if not await self._verify(req.pubkey, req.auth,
                                      signing.retrieve_message(req.namespace, req.timestamp),
                                      SUBACCOUNT_READ, skip_revoke=is_unrevocable_namespace(req.namespace)):
                return Response(401, "retrieve signature verification failed")
        max_count = req.max_count or None
        max_size = req.max_size or None
        if max_count is None and max_size is None:
            max_size = -5
        if max_size is not None and max_size < 0:
            max_size = RETRIEVE_MAX_SIZE // -max_size
        elif max_size is None or max_size > RETRIEVE_MAX_SIZE:
            max_size = RETRIEVE_MAX_SIZE
        if max_count is not None and max_count < 1:
            max_count = 1
        msgs, more = await self.storage.retrieve(req.pubkey.hex, req.namespace, req.last_hash,
                                                 max_count, max_size, now)
        return Response(200, self.misc({
            "messages": [{"hash": m.hash, "timestamp": m.timestamp, "expiration": m.expiry,
                          "data": b64(m.data)} for m in msgs],
            "more": more,
        }, now))

    # --- delete family -------------------------------------------------------------------------
    async def do_delete(self, req: DeleteReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        if not await self._verify(req.pubkey, req.auth, signing.delete_message(req.messages),
                                  SUBACCOUNT_DELETE):
            return Response(401, "delete_msgs signature verification failed")
        now = self.clock.now_ms()

        async def local() -> dict[str, Any]:
            deleted = sorted(await self.storage.delete_by_hash(req.pubkey.hex, req.messages))
            sig = self.sign_b64(user_pubkey_hex(req.pubkey), "".join(req.messages), "".join(deleted))
            return {"deleted": deleted, "signature": sig}

        res = await self.recurse(req, forwarded, now, local)
        if req.required and not forwarded and res.status == 200 and isinstance(res.body, dict):
            if not any(r.get("deleted") for r in res.body["swarm"].values()):
                res.status = 404
        return res

    def _ns_result(self, key: str, affected: list[tuple[int, str]], ns: int | str,
                   sig_prefix: Sequence[Any]) -> dict[str, Any]:
        affected = sorted(affected, key=lambda x: x[1])
        hashes = [h for _, h in affected]
        mine: dict[str, Any] = {"signature": self.sign_b64(*sig_prefix, "".join(hashes))}
        if ns == NAMESPACE_ALL:
            grouped: dict[str, list[str]] = {}
            for n, h in affected:
                grouped.setdefault(ns_key(n), []).append(h)
            mine[key] = grouped
        else:
            mine[key] = hashes
        return mine

    @staticmethod
    def _ns_arg(ns: int | str) -> int | None:
        return None if ns == NAMESPACE_ALL else int(ns)

    async def do_delete_all(self, req: NsTimeReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        tol = SIGNATURE_WINDOW_FORWARDED_MS if forwarded else SIGNATURE_WINDOW_MS
        if abs(req.when - now) > tol:
            return Response(406, "delete_all timestamp too far from current time")
        if not await self._verify(req.pubkey, req.auth,
                                  signing.delete_all_message(req.namespace, req.when), SUBACCOUNT_DELETE):
            return Response(401, "delete_all signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.delete_all(req.pubkey.hex, self._ns_arg(req.namespace))
            return self._ns_result("deleted", affected, req.namespace,
                                   (user_pubkey_hex(req.pubkey), req.when))

        return await self.recurse(req, forwarded, now, local)

    async def do_delete_before(self, req: NsTimeReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        if req.when > now + 60_000:
            return Response(401, "delete_before timestamp too far in the future")
        if not await self._verify(req.pubkey, req.auth,
                                  signing.delete_before_message(req.namespace, req.when), SUBACCOUNT_DELETE):
            return Response(401, "delete_before signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.delete_before(req.pubkey.hex, self._ns_arg(req.namespace), req.when)
            return self._ns_result("deleted", affected, req.namespace,
                                   (user_pubkey_hex(req.pubkey), req.when))

        return await self.recurse(req, forwarded, now, local)

    # --- expire family -------------------------------------------------------------------------
    async def do_expire_all(self, req: NsTimeReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        tol = SIGNATURE_WINDOW_FORWARDED_MS if forwarded else SIGNATURE_WINDOW_MS
        if req.when < now - tol:
            return Response(406, "expire_all timestamp should be >= current time")
        if not await self._verify(req.pubkey, req.auth,
                                  signing.expire_all_message(req.namespace, req.when), SUBACCOUNT_DELETE):
            return Response(401, "expire_all signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.update_all_expiries(
                req.pubkey.hex, self._ns_arg(req.namespace), req.when)
            return self._ns_result("updated", affected, req.namespace,
                                   (user_pubkey_hex(req.pubkey), req.when))

        return await self.recurse(req, forwarded, now, local)

    async def do_expire(self, req: ExpireReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        tol = SIGNATURE_WINDOW_FORWARDED_MS if forwarded else SIGNATURE_WINDOW_MS
        applied: list[int] = []
        for e in req.expiry:
            if e < now - tol:
                return Response(401, "expire: timestamp should be >= current time")
            applied.append(min(now + TTL_MAX_PRIVATE_MS, e))
        mode = "shorten" if req.shorten else "extend" if req.extend else ""
        signed = (f"expire{mode}" + "".join(str(e) for e in req.expiry) + "".join(req.messages)).encode("ascii")
        if len(req.expiry) == 1:
            signed = signing.expire_message(mode, req.expiry[0], req.messages)
        if not await self._verify(req.pubkey, req.auth, signed, SUBACCOUNT_WRITE):
            return Response(401, "expire: signature verification failed")
        extend_only = req.extend
        sub = req.auth.subaccount
        if sub is not None and not sub.token.has(SUBACCOUNT_DELETE):
            # write without delete: may extend, never shorten (shortening is almost deleting)
            if req.shorten:
                return Response(400, "expire: shorten parameter cannot be used with this subaccount "
                                     "token (missing delete access)")
            extend_only = True

        async def local() -> dict[str, Any]:
            updated = sorted(await self.storage.update_expiry(
                req.pubkey.hex, req.messages, applied, extend_only, req.shorten))
            updated_hashes = [h for h, _ in updated]
            unchanged: dict[str, int] = {}
            if req.extend or req.shorten:
                rest = [m for m in req.messages if m not in set(updated_hashes)]
                if rest:
                    unchanged = await self.storage.get_expiries(req.pubkey.hex, rest)
            exp_part = "".join(str(e) for _, e in updated) if len(req.expiry) > 1 else str(applied[0])
            unchanged_part = "".join(f"{h}{unchanged[h]}" for h in sorted(unchanged))
            sig = self.sign_b64(user_pubkey_hex(req.pubkey), exp_part, "".join(req.messages),
                                "".join(updated_hashes), unchanged_part)
            mine: dict[str, Any] = {
                "expiry": [e for _, e in updated] if len(req.expiry) > 1 else applied[0],
                "updated": updated_hashes,
            }
            if req.shorten or req.extend:
                mine["unchanged"] = unchanged
            mine["signature"] = sig
            return mine

        return await self.recurse(req, forwarded, now, local)

    async def do_get_expiries(self, req: GetExpiriesReq) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        if abs(req.timestamp - now) > SIGNATURE_WINDOW_MS:
            return Response(406, "get_expiries timestamp too far from current time")
        if not await self._verify(req.pubkey, req.auth,
                                  signing.get_expiries_message(req.timestamp, req.messages), SUBACCOUNT_READ):
            return Response(401, "get_expiries signature verification failed")
        hashes = None if req.messages == ["all"] else req.messages
        exp = await self.storage.get_expiries(req.pubkey.hex, hashes)
        return Response(200, {"expiries": exp})  # the storage server adds no t/hf here

    # --- simple methods ------------------------------------------------------------------------
    async def do_get_swarm(self, req: PubkeyReq) -> Response:
        return Response(200, self.misc(self.get_view().swarm_json(req.pubkey)))

    async def do_info(self, req: Req) -> Response:
        now = self.clock.now_ms()
        return Response(200, self.misc({"version": list(STORAGE_SERVER_VERSION), "timestamp": now}, now))

    async def do_active_nodes_bin(self, req: Req) -> Response:
        return Response(200, active_nodes_blob(self.get_view()))

    # --- subaccount revocation -----------------------------------------------------------------
    async def do_revoke(self, req: RevokeReq, forwarded: bool) -> Response:
        """revoke_subaccount / unrevoke_subaccount: owner-signed (no subaccount), recursive; each
        member answers its signature of PUBKEY_HEX ‖ timestamp ‖ token bytes…, and for unrevoke
        also ``count`` (2.8.0: revoke's per-member answer is the signature only)"""
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        revoke = req.method == "revoke_subaccount"
        now = self.clock.now_ms()
        if abs(req.timestamp - now) > SIGNATURE_WINDOW_MS:
            return Response(406, f"{req.method} timestamp too far from current time")
        message = (signing.revoke_subaccount_message if revoke
                   else signing.unrevoke_subaccount_message)(req.timestamp, req.tokens)
        if not await self._verify(req.pubkey, req.auth, message):
            return Response(401, f"{req.method} signature verification failed")
        raw = [t.raw for t in req.tokens]

        async def local() -> dict[str, Any]:
            signature = self.sign_b64(user_pubkey_hex(req.pubkey), req.timestamp, *raw)
            if revoke:
                await self.storage.revoke_subaccounts(req.pubkey.hex, raw, now)
                return {"signature": signature}
            count = await self.storage.unrevoke_subaccounts(req.pubkey.hex, raw)
            return {"count": count, "signature": signature}

        return await self.recurse(req, forwarded, now, local)

    async def do_revoked_subaccounts(self, req: RevokedListReq) -> Response:
        """The revoked tokens (base64), signed by the account key itself: the storage server
        ignores pubkey_ed25519 here and accepts no subaccount."""
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        if abs(req.timestamp - now) > SIGNATURE_WINDOW_MS:
            return Response(406, "revoked_subaccounts timestamp too far from current time")
        owner_only = Auth(signature=req.auth.signature, pubkey_ed25519=None)
        if not await self._verify(req.pubkey, owner_only, signing.revoked_subaccounts_message(req.timestamp)):
            return Response(401, "revoked_subaccounts signature verification failed")
        tokens = await self.storage.revoked_subaccounts(req.pubkey.hex)
        return Response(200, self.misc({"revoked_subaccounts": [b64(t) for t in tokens]}, now))

    async def do_oxend(self, req: OxendReq) -> Response:
        if self.oxend is None:
            return Response(400, "Unknown oxend error")
        try:
            result = await self.oxend(req.endpoint, req.oxend_params)
        except Exception as e:  # noqa: BLE001 - reported to the caller like oxend's error string
            return Response(400, str(e) or "Unknown oxend error")
        return Response(200, self.misc({"result": result}))

    async def _sub(self, sub: Req) -> dict[str, Any]:
        try:
            r = await self.process(sub)
        except Exception as e:  # noqa: BLE001
            if self.log:
                self.log.error("rpc_exception", method=sub.method, error=repr(e))
            r = Response(500, "request failed")
        return {"code": r.status, "body": r.json_value()}

    async def do_batch(self, req: BatchReq) -> Response:
        results = await asyncio.gather(*(self._sub(s) for s in req.subrequests))
        return Response(200, {"results": list(results)})

    async def do_sequence(self, req: BatchReq) -> Response:
        results: list[dict[str, Any]] = []
        for s in req.subrequests:
            r = await self._sub(s)
            results.append(r)
            if not 200 <= r["code"] <= 299:
                break
        return Response(200, {"results": results})

    async def do_ifelse(self, req: IfElseReq) -> Response:
        """``{"hf", "v", "height", "condition"[, "result": {"code", "body"}]}`` (no "t"); the
        height is the block height the seed reported with the node list."""
        view = self.get_view()
        cond = req.condition(HARDFORK, STORAGE_SERVER_VERSION, view.height)
        body: dict[str, Any] = {"hf": list(HARDFORK), "v": list(STORAGE_SERVER_VERSION),
                                "height": view.height, "condition": cond}
        branch = req.then if cond else req.otherwise
        if branch is not None:
            body["result"] = await self._sub(branch)
        return Response(200, body)


ACTIVE_NODE_RECORD = 51


def active_nodes_blob(view: SwarmView) -> bytes:
    """``active_nodes_bin``: one 51-byte record per active node in a swarm, ordered by swarm id
    then legacy pubkey: Ed25519 key (32) ‖ swarm id (u64 BE) ‖ IPv4 (4) ‖ HTTPS port (u16 BE) ‖
    OMQ/QUIC port (u16 BE) ‖ version (3 bytes, each capped at 255).  A node without a known
    address is listed with zero ip/ports (storage server Network::all_nodes_blob)."""
    out = bytearray()
    nodes = sorted((n for n in view.nodes.values() if n.active and n.swarm_id != UNASSIGNED_SWARM),
                   key=lambda n: (n.swarm_id, n.pubkey_legacy or n.pubkey_ed25519))
    for n in nodes:
        try:
            ed = bytes.fromhex(n.pubkey_ed25519)
            ip = ipaddress.IPv4Address(n.public_ip).packed if n.has_address else bytes(4)
        except ValueError:
            continue
        if len(ed) != 32:
            continue
        https = n.storage_port if n.has_address else 0
        omq = n.lmq_port if n.has_address else 0
        version = bytes(min(max(v, 0), 255) for v in (tuple(n.version) + (0, 0, 0))[:3])
        out += ed + struct.pack(">Q4sHH", n.swarm_id, ip, https & 0xFFFF, omq & 0xFFFF) + version
    return bytes(out)
