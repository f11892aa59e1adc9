"""Storage RPC: parsing, validation and handlers for POST /storage_rpc/v1 (PROTOCOL.md §4).

Behaviour, status codes and error strings follow the production storage server
(session-storage-server ``oxenss/rpc/client_rpc_endpoints.cpp`` and ``request_handler.cpp``):

* the body is parsed first; any malformed field is ``400 "invalid request: <reason>"``;
* then the swarm check (421 with the correct swarm), then TTL (403), clock (406) and the
  signature (401), then the operation;
* store/delete*/expire* are "recursive": the entry node fans the request out to its swarm peers
  and answers ``{"swarm": {ed25519_hex: result}}``; a peer runs the same handler with
  ``forwarded=True`` and answers its own result at top level.

Every JSON response carries "t" (node time, ms) and "hf".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nodes.common.values import is_int
from nodes.protocol import signing
from nodes.protocol.constants import (
    CLOCK_TOLERANCE_MS,
    HARDFORK,
    MAX_MESSAGE_DATA,
    SIGNATURE_WINDOW_MS,
    STORAGE_SERVER_VERSION,
    TTL_MAX_PRIVATE_MS,
    TTL_MIN_MS,
    max_ttl_ms,
    namespace_read_needs_auth,
    namespace_store_needs_auth,
)
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, SessionID

from .behaviours import Behaviours
from .clock import Clock
from .storage import Message, Storage
from .swarm_view import NodeInfo, SwarmView

SIGNATURE_WINDOW_FORWARDED_MS = 70_000  # storage server SIGNATURE_TOLERANCE_FORWARDED
RETRIEVE_MAX_SIZE = 7_800_000
BATCH_REQUEST_MAX = 20
MIN_TIMESTAMP_MS = 1_000_000_000  # below this a "timestamp" was given in seconds
MAX_INT64 = 2**63 - 1
NAMESPACE_ALL = "all"

_B64_RE = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")


class ParseError(ValueError):
    """A request field is missing or invalid: 400 "invalid request: <reason>"."""


class MissingSignature(ParseError):
    """A method that always needs auth came without a signature: 401 (PROTOCOL.md §4 lists
    "401 bad/missing signature"; the storage server itself answers 400 for these methods)."""


@dataclass
class Response:
    status: int
    body: dict[str, Any] | str

    @property
    def is_json(self) -> bool:
        return isinstance(self.body, dict)

    def body_text(self) -> str:
        return json.dumps(self.body, separators=(",", ":")) if isinstance(self.body, dict) else self.body


class Forwarder(Protocol):
    async def forward(self, peers: Sequence[NodeInfo], method: str,
                      params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Send a recursive request to `peers`; per-peer result dicts keyed by ed25519 hex."""
        ...


OxendCall = Callable[[str, dict[str, Any] | None], Awaitable[Any]]


# ---------------------------------------------------------------------------------------------
# field parsing (JSON types as the storage server's parse_field checks them)
# ---------------------------------------------------------------------------------------------

def _present(params: Mapping[str, Any], name: str) -> Any:
    return params.get(name)


def _bad(name: str, desc: str) -> ParseError:
    return ParseError(f"Invalid value given for '{name}': expected {desc}")


def f_str(p: Mapping[str, Any], name: str) -> str | None:
    v = _present(p, name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _bad(name, "string")
    return v


def f_bool(p: Mapping[str, Any], name: str) -> bool | None:
    v = _present(p, name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _bad(name, "boolean")
    return v


def f_int(p: Mapping[str, Any], name: str) -> int | None:
    v = _present(p, name)
    if v is None:
        return None
    if not is_int(v):
        raise _bad(name, "integer")
    return v


def _check_ts(name: str, v: int) -> int:
    if v < MIN_TIMESTAMP_MS:
        raise ParseError(f"Invalid timestamp for '{name}': timestamp must be in milliseconds")
    return v


def f_ts(p: Mapping[str, Any], name: str) -> int | None:
    v = _present(p, name)
    if v is None:
        return None
    if not is_int(v) or not 0 <= v <= MAX_INT64:
        raise _bad(name, "integer timestamp (in milliseconds)")
    return _check_ts(name, v)


def f_stringified(p: Mapping[str, Any], name: str, unsigned: bool) -> int | None:
    """ttl / timestamp of store: an integer, or (backwards compat) a stringified integer."""
    v = _present(p, name)
    if v is None:
        return None
    if isinstance(v, str):
        if (not re.fullmatch(r"-?[0-9]{1,19}", v) or (unsigned and v.startswith("-"))
                or abs(int(v)) > MAX_INT64):
            raise ParseError(f"Invalid value given for '{name}': {json.dumps(v)}")
        return int(v)
    if not is_int(v) or (unsigned and v < 0) or abs(v) > MAX_INT64:
        raise _bad(name, "positive integer" if unsigned else "integer")
    return v


def f_namespace(p: Mapping[str, Any], name: str = "namespace", allow_all: bool = False) -> int | str | None:
    v = _present(p, name)
    if v is None:
        return None
    if is_int(v):
        if not -32768 <= v <= 32767:
            raise ParseError(f"Invalid value given for '{name}': value out of range")
        return v
    if allow_all and v == NAMESPACE_ALL:
        return NAMESPACE_ALL
    if allow_all:
        raise ParseError(f"Invalid value given for '{name}': expected integer or \"all\"")
    raise _bad(name, "16-bit integer")


def f_str_list(p: Mapping[str, Any], name: str) -> list[str] | None:
    v = _present(p, name)
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(name, "string array")
    return list(v)


def f_ts_list(p: Mapping[str, Any], name: str) -> list[int] | None:
    v = _present(p, name)
    if v is None:
        return None
    vals = [v] if not isinstance(v, list) else v
    if not all(is_int(x) and 0 <= x <= MAX_INT64 for x in vals):
        raise _bad(name, "timestamp array")
    return [int(x) for x in vals]


def require(name: str, v: Any) -> Any:
    if v is None:
        raise ParseError(f"Required field '{name}' missing")
    return v


def is_base64(s: str) -> bool:
    if not _B64_RE.match(s):
        return False
    stripped = s.rstrip("=")
    if len(s) != len(stripped) and len(s) % 4 != 0:
        return False
    return len(stripped) % 4 != 1


def b64decode_any(s: str) -> bytes:
    s = s.rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_valid_hash(h: str) -> bool:
    return len(h) == 43 and is_base64(h)


def ns_sig_str(ns: int | str) -> str:
    return signing.namespace_str(ns)


def ns_key(ns: int) -> str:
    return str(ns)


# ---------------------------------------------------------------------------------------------
# parsed requests
# ---------------------------------------------------------------------------------------------

@dataclass
class Auth:
    signature: str
    pubkey_ed25519: str | None


@dataclass
class Req:
    method: str
    params: Mapping[str, Any]


@dataclass
class StoreReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    namespace: int = 0
    timestamp: int = 0
    expiry: int = 0
    data: bytes = b""
    auth: Auth | None = None
    sig_ts: int | None = None


@dataclass
class RetrieveReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    namespace: int = 0
    last_hash: str | None = None
    max_count: int | None = None
    max_size: int | None = None
    auth: Auth | None = None
    timestamp: int | None = None


@dataclass
class DeleteReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    messages: list[str] = field(default_factory=list)
    required: bool = False


@dataclass
class NsTimeReq(Req):
    """delete_all (timestamp), delete_before (before), expire_all (expiry)."""
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    namespace: int | str = 0
    when: int = 0


@dataclass
class ExpireReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    messages: list[str] = field(default_factory=list)
    expiry: list[int] = field(default_factory=list)
    shorten: bool = False
    extend: bool = False


@dataclass
class GetExpiriesReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    messages: list[str] = field(default_factory=list)
    timestamp: int = 0


@dataclass
class PubkeyReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]


@dataclass
class OxendReq(Req):
    endpoint: str = ""
    oxend_params: dict[str, Any] | None = None


@dataclass
class BatchReq(Req):
    subrequests: list[Req] = field(default_factory=list)


def _load_pubkey(p: Mapping[str, Any], alias_ok: bool = True) -> SessionID:
    pk = f_str(p, "pubkey")
    alt = f_str(p, "pubKey") if alias_ok else None
    if pk is not None and alt is not None:
        raise ParseError("Cannot specify both 'pubkey' and 'pubKey'")
    value = require("pubkey", pk if pk is not None else alt)
    try:
        return SessionID.parse(value.lower())
    except ValueError:
        raise ParseError("Pubkey must be 66 hex digits (33 bytes) long") from None


def _load_auth(p: Mapping[str, Any], pubkey: SessionID, required: bool = True) -> Auth | None:
    sig = f_str(p, "signature")
    pk_ed = f_str(p, "pubkey_ed25519")
    if sig is None:
        if required:
            raise MissingSignature("Required field 'signature' missing")
        return None
    try:
        if pk_ed:
            if pubkey.prefix != 0x05:
                raise ParseError("pubkey_ed25519 is only permitted for 05[...] pubkeys")
            signing.decode_pubkey_ed25519(pk_ed)
        signing.decode_signature(sig)
    except signing.SignatureError as e:
        raise ParseError(e.reason) from None
    return Auth(signature=sig, pubkey_ed25519=pk_ed.lower() if pk_ed else None)


def parse_store(method: str, p: Mapping[str, Any]) -> StoreReq:
    data = f_str(p, "data")
    expiry = f_ts(p, "expiry")
    ns = f_namespace(p)
    sig_ts = f_ts(p, "sig_timestamp")
    timestamp = f_stringified(p, "timestamp", unsigned=False)
    ttl = f_stringified(p, "ttl", unsigned=True)
    require("timestamp", timestamp)
    if expiry is not None and ttl is not None:
        raise ParseError("Cannot specify both 'expiry' and 'ttl'")
    if expiry is None and ttl is None:
        raise ParseError("Required field 'expiry' or 'ttl' missing")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey, required=False)
    require("data", data)
    if not is_base64(data):
        raise ParseError("Invalid 'data' value: not base64 encoded")
    if len(data) > MAX_MESSAGE_DATA // 3 * 4:
        raise ParseError(f"Message body exceeds maximum allowed length of {MAX_MESSAGE_DATA} bytes")
    try:
        raw = b64decode_any(data)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid 'data' value: not base64 encoded") from None
    return StoreReq(method, p, pubkey=pubkey, namespace=int(ns or 0), timestamp=timestamp,
                    expiry=expiry if expiry is not None else timestamp + ttl, data=raw, auth=auth,
                    sig_ts=(sig_ts if sig_ts is not None else timestamp) if auth else None)


def parse_retrieve(method: str, p: Mapping[str, Any]) -> RetrieveReq:
    last_alt = f_str(p, "lastHash")
    last = f_str(p, "last_hash")
    max_count = f_int(p, "max_count")
    max_size = f_int(p, "max_size")
    ns = f_namespace(p)
    ts = f_ts(p, "timestamp")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey, required=False)
    if auth is not None and ts is None:
        raise ParseError("Required field 'timestamp' missing")
    if last is not None and last_alt is not None:
        raise ParseError("Cannot specify both 'last_hash' and 'lastHash'")
    last = last if last is not None else last_alt
    if last == "":
        last = None
    if last is not None:
        if len(last) != 43:
            raise ParseError("Invalid last_hash: expected base64 (43 chars)")
        if not is_base64(last):
            raise ParseError("Invalid last_hash: not base64")
    return RetrieveReq(method, p, pubkey=pubkey, namespace=int(ns or 0), last_hash=last,
                       max_count=max_count, max_size=max_size, auth=auth, timestamp=ts)


def _parse_hashes(p: Mapping[str, Any]) -> list[str]:
    msgs = require("messages", f_str_list(p, "messages"))
    if not msgs:
        raise ParseError("messages does not contain any message hashes")
    return msgs


def parse_delete(method: str, p: Mapping[str, Any]) -> DeleteReq:
    required = f_bool(p, "required")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey)
    msgs = _parse_hashes(p)
    for m in msgs:
        if not is_valid_hash(m):
            raise ParseError("invalid message hash: " + m)
    return DeleteReq(method, p, pubkey=pubkey, auth=auth, messages=msgs, required=bool(required))


def _parse_ns_time(method: str, p: Mapping[str, Any], time_field: str) -> NsTimeReq:
    when = f_ts(p, time_field)
    ns = f_namespace(p, allow_all=True)
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey)
    require(time_field, when)
    return NsTimeReq(method, p, pubkey=pubkey, auth=auth, namespace=ns if ns is not None else 0, when=when)


def parse_expire(method: str, p: Mapping[str, Any]) -> ExpireReq:
    expiry = f_ts_list(p, "expiry")
    extend = f_bool(p, "extend")
    shorten = f_bool(p, "shorten")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey)
    require("expiry", expiry)
    if not expiry:
        raise ParseError("'expiry' does not contain any expiration timestamps")
    for e in expiry:
        _check_ts("expiry", e)
    if shorten and extend:
        raise ParseError("cannot specify both 'shorten' and 'extend'")
    msgs = _parse_hashes(p)
    if len(expiry) > 1 and len(expiry) != len(msgs):
        raise ParseError("'expiry' must be a single expiry, or the same length as 'messages'")
    for m in msgs:
        if not is_valid_hash(m):
            raise ParseError("invalid message hash: " + m)
    return ExpireReq(method, p, pubkey=pubkey, auth=auth, messages=msgs, expiry=expiry,
                     shorten=bool(shorten), extend=bool(extend))


def parse_get_expiries(method: str, p: Mapping[str, Any]) -> GetExpiriesReq:
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey)
    ts = require("timestamp", f_ts(p, "timestamp"))
    msgs = _parse_hashes(p)
    return GetExpiriesReq(method, p, pubkey=pubkey, auth=auth, messages=msgs, timestamp=ts)


def parse_get_swarm(method: str, p: Mapping[str, Any]) -> PubkeyReq:
    return PubkeyReq(method, p, pubkey=_load_pubkey(p))


def parse_info(method: str, p: Mapping[str, Any]) -> Req:
    return Req(method, p)


ALLOWED_OXEND_ENDPOINTS = ("get_service_nodes",)


def parse_oxend_request(method: str, p: Mapping[str, Any]) -> OxendReq:
    endpoint = require("endpoint", f_str(p, "endpoint"))
    if endpoint not in ALLOWED_OXEND_ENDPOINTS:
        raise ParseError(f"Invalid oxend endpoint '{endpoint}'")
    params = p.get("params")
    if params is not None and not isinstance(params, dict):
        raise ParseError("Invalid value given for 'params': expected an object")
    return OxendReq(method, p, endpoint=endpoint, oxend_params=params)


def parse_batch(method: str, p: Mapping[str, Any]) -> BatchReq:
    reqs = p.get("requests")
    if not isinstance(reqs, list) or not reqs:
        raise ParseError('Invalid batch request: no valid "requests" field')
    if len(reqs) > BATCH_REQUEST_MAX:
        raise ParseError("Invalid batch request: subrequest limit exceeded")
    subs: list[Req] = []
    for r in reqs:
        if not isinstance(r, dict):
            raise ParseError("Invalid batch request: requests must be objects")
        m, sp = r.get("method"), r.get("params")
        if not isinstance(m, str) or not isinstance(sp, dict):
            raise ParseError("Invalid batch request: subrequests must have method/params keys")
        if m not in PARSERS:
            raise ParseError(f'Invalid batch subrequest: invalid method "{m}"')
        if m in META_METHODS:
            raise ParseError("Invalid batch subrequest: subrequests may not contain meta-requests")
        try:
            subs.append(PARSERS[m](m, sp))
        except MissingSignature as e:  # the whole batch is rejected, as the storage server does
            raise ParseError(f"{m}: {e}") from None
    return BatchReq(method, p, subrequests=subs)


PARSERS: dict[str, Callable[[str, Mapping[str, Any]], Req]] = {
    "store": parse_store,
    "retrieve": parse_retrieve,
    "delete": parse_delete,
    "delete_all": lambda m, p: _parse_ns_time(m, p, "timestamp"),
    "delete_before": lambda m, p: _parse_ns_time(m, p, "before"),
    "expire_all": lambda m, p: _parse_ns_time(m, p, "expiry"),
    "expire": parse_expire,
    "get_expiries": parse_get_expiries,
    "get_swarm": parse_get_swarm,
    "get_snodes_for_pubkey": parse_get_swarm,
    "info": parse_info,
    "oxend_request": parse_oxend_request,
    "batch": parse_batch,
    "sequence": parse_batch,
}
META_METHODS = frozenset({"batch", "sequence"})
RECURSIVE_METHODS = frozenset({"store", "delete", "delete_all", "delete_before", "expire", "expire_all"})


def parse_request(method: str, params: Mapping[str, Any]) -> Req:
    """Parse a client request; raises ParseError (400) or KeyError for an unknown method."""
    return PARSERS[method](method, params)


def accounts_of(method: str | None, params: Any) -> list[str]:
    """Session IDs a request touches (for observations); never raises."""
    out: list[str] = []
    if not isinstance(params, dict):
        return out
    if method in META_METHODS:
        for r in params.get("requests") or []:
            if isinstance(r, dict):
                for a in accounts_of(r.get("method"), r.get("params")):
                    if a not in out:
                        out.append(a)
        return out
    if method == "push":
        for m in params.get("messages") or []:
            if isinstance(m, dict) and isinstance(m.get("pubkey"), str) and m["pubkey"] not in out:
                out.append(m["pubkey"])
        return out
    pk = params.get("pubkey", params.get("pubKey"))
    if isinstance(pk, str):
        out.append(pk.lower())
    return out


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
        msg = "".join(str(x) for x in parts).encode("ascii")
        return b64(self.identity.sign(msg))

    def wrong_swarm(self, view: SwarmView, pubkey: SessionID) -> Response:
        return Response(421, self.misc(view.swarm_json(pubkey)))

    @staticmethod
    def _verify(pubkey: SessionID, auth: Auth, message: bytes) -> bool:
        try:
            signing.verify_request(pubkey, auth.pubkey_ed25519, message, auth.signature)
            return True
        except signing.SignatureError:
            return False

    # --- entry points --------------------------------------------------------------------------
    async def handle_body(self, body: bytes | str) -> tuple[Response, str | None, list[str]]:
        """Parse a /storage_rpc/v1 body and run it.  Returns (response, method, accounts)."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Response(400, "invalid json"), None, []
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
            return Response(401, f"{method}: request signature required")
        except ParseError as e:
            return Response(400, f"invalid request: {e}")
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
            "batch": self.do_batch,
            "sequence": self.do_sequence,
        }[req.method]
        if req.method in RECURSIVE_METHODS:
            return await fn(req, forwarded)  # type: ignore[operator]
        return await fn(req)  # type: ignore[operator]

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
            if not self._verify(req.pubkey, req.auth, signing.store_message(req.namespace, req.sig_ts)):
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
                mine["already"] = True
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
            if not self._verify(req.pubkey, req.auth, signing.retrieve_message(req.namespace, req.timestamp)):
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
        if not self._verify(req.pubkey, req.auth, signing.delete_message(req.messages)):
            return Response(401, "delete_msgs signature verification failed")
        now = self.clock.now_ms()

        async def local() -> dict[str, Any]:
            deleted = sorted(await self.storage.delete_by_hash(req.pubkey.hex, req.messages))
            sig = self.sign_b64(req.pubkey.hex, "".join(req.messages), "".join(deleted))
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
        if not self._verify(req.pubkey, req.auth, signing.delete_all_message(req.namespace, req.when)):
            return Response(401, "delete_all signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.delete_all(req.pubkey.hex, self._ns_arg(req.namespace))
            return self._ns_result("deleted", affected, req.namespace, (req.pubkey.hex, req.when))

        return await self.recurse(req, forwarded, now, local)

    async def do_delete_before(self, req: NsTimeReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        if req.when > now + 60_000:
            return Response(401, "delete_before timestamp too far in the future")
        if not self._verify(req.pubkey, req.auth, signing.delete_before_message(req.namespace, req.when)):
            return Response(401, "delete_before signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.delete_before(req.pubkey.hex, self._ns_arg(req.namespace), req.when)
            return self._ns_result("deleted", affected, req.namespace, (req.pubkey.hex, req.when))

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
        if not self._verify(req.pubkey, req.auth, signing.expire_all_message(req.namespace, req.when)):
            return Response(401, "expire_all signature verification failed")

        async def local() -> dict[str, Any]:
            affected = await self.storage.update_all_expiries(
                req.pubkey.hex, self._ns_arg(req.namespace), req.when)
            return self._ns_result("updated", affected, req.namespace, (req.pubkey.hex, req.when))

        return await self.recurse(req, forwarded, now, local)

    async def do_expire(self, req: ExpireReq, forwarded: bool) -> Response:
        view = self.get_view()
        if not view.is_mine(req.pubkey):
            return self.wrong_swarm(view, req.pubkey)
        now = self.clock.now_ms()
        applied: list[int] = []
        for e in req.expiry:
            if e < now - 60_000:
                return Response(401, "expire: timestamp should be >= current time")
            applied.append(min(now + TTL_MAX_PRIVATE_MS, e))
        mode = "shorten" if req.shorten else "extend" if req.extend else ""
        signed = (f"expire{mode}" + "".join(str(e) for e in req.expiry) + "".join(req.messages)).encode("ascii")
        if len(req.expiry) == 1:
            signed = signing.expire_message(mode, req.expiry[0], req.messages)
        if not self._verify(req.pubkey, req.auth, signed):
            return Response(401, "expire: signature verification failed")

        async def local() -> dict[str, Any]:
            updated = sorted(await self.storage.update_expiry(
                req.pubkey.hex, req.messages, applied, req.extend, req.shorten))
            updated_hashes = [h for h, _ in updated]
            unchanged: dict[str, int] = {}
            if req.extend or req.shorten:
                rest = [m for m in req.messages if m not in set(updated_hashes)]
                if rest:
                    unchanged = await self.storage.get_expiries(req.pubkey.hex, rest)
            exp_part = "".join(str(e) for _, e in updated) if len(req.expiry) > 1 else str(applied[0])
            unchanged_part = "".join(f"{h}{unchanged[h]}" for h in sorted(unchanged))
            sig = self.sign_b64(req.pubkey.hex, exp_part, "".join(req.messages),
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
        if not self._verify(req.pubkey, req.auth, signing.get_expiries_message(req.timestamp, req.messages)):
            return Response(401, "get_expiries signature verification failed")
        hashes = None if req.messages == ["all"] else req.messages
        exp = await self.storage.get_expiries(req.pubkey.hex, hashes)
        return Response(200, self.misc({"expiries": exp}, now))

    # --- simple methods ------------------------------------------------------------------------
    async def do_get_swarm(self, req: PubkeyReq) -> Response:
        return Response(200, self.misc(self.get_view().swarm_json(req.pubkey)))

    async def do_info(self, req: Req) -> Response:
        now = self.clock.now_ms()
        return Response(200, self.misc({"version": list(STORAGE_SERVER_VERSION), "timestamp": now}, now))

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
        return {"code": r.status, "body": r.body}

    async def do_batch(self, req: BatchReq) -> Response:
        results = await asyncio.gather(*(self._sub(s) for s in req.subrequests))
        return Response(200, self.misc({"results": list(results)}))

    async def do_sequence(self, req: BatchReq) -> Response:
        results: list[dict[str, Any]] = []
        for s in req.subrequests:
            r = await self._sub(s)
            results.append(r)
            if not 200 <= r["code"] <= 299:
                break
        return Response(200, self.misc({"results": results}))
