"""Storage RPC: parsing, validation and handlers for POST /storage_rpc/v1 (PROTOCOL.md §4).

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

Deviation kept on purpose (PROTOCOL.md §4 "401 bad/missing signature"): a method that requires a
signature and gets none answers 401 with the storage server's text ``invalid request: Required
field 'signature' missing`` (the storage server itself answers 400 there).

Every JSON response carries "t" (node time, ms) and "hf".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import re
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nodes.common.values import is_int
from nodes.protocol import signing
from nodes.protocol.constants import (
    CLOCK_TOLERANCE_MS,
    HARDFORK,
    MAX_MESSAGE_DATA,
    MAX_SUBACCOUNT_TOKENS,
    SIGNATURE_WINDOW_MS,
    STORAGE_SERVER_VERSION,
    SUBACCOUNT_DELETE,
    SUBACCOUNT_READ,
    SUBACCOUNT_WRITE,
    TTL_MAX_PRIVATE_MS,
    TTL_MIN_MS,
    is_noauth_retrieve_namespace,
    is_public_outbox_namespace,
    is_unrevocable_namespace,
    max_ttl_ms,
    namespace_read_needs_auth,
    namespace_store_needs_auth,
)
from nodes.protocol.encoding import b64decode_any, is_base64
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, SessionID, load_user_pubkey, user_pubkey_hex
from nodes.protocol.subaccount import SignedSubaccount, SubaccountError, SubaccountToken
from nodes.protocol.swarm import UNASSIGNED_SWARM

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



class ParseError(ValueError):
    """A request field is missing or invalid: 400 "invalid request: <reason>"."""


class MissingSignature(ParseError):
    """A request that needs a signature came without one.  The storage server answers 400
    "invalid request: Required field 'signature' missing"; PROTOCOL.md §4 ("401 bad/missing
    signature") makes it a 401 here, with the same text."""


MISSING_SIGNATURE_TEXT = "invalid request: Required field 'signature' missing"


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
    pubkey_ed25519: str | bytes | None  # lower-case hex, or the raw 32 bytes
    subaccount: SignedSubaccount | None = None


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


@dataclass
class RevokeReq(Req):
    """revoke_subaccount / unrevoke_subaccount."""
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    tokens: list[SubaccountToken] = field(default_factory=list)
    timestamp: int = 0


@dataclass
class RevokedListReq(Req):
    pubkey: SessionID = None  # type: ignore[assignment]
    auth: Auth = None  # type: ignore[assignment]
    timestamp: int = 0


@dataclass
class IfElseReq(Req):
    hf_at_least: tuple[int, ...] | None = None
    hf_before: tuple[int, ...] | None = None
    v_at_least: tuple[int, ...] | None = None
    v_before: tuple[int, ...] | None = None
    height_at_least: int | None = None
    height_before: int | None = None
    then: Req | None = None
    otherwise: Req | None = None

    def condition(self, hf: Sequence[int], version: Sequence[int], height: int) -> bool:
        """All given conditions hold (storage server load_condition: versions compared as
        zero-padded fixed-size arrays)."""
        hf_t, v_t = tuple(hf), tuple(version)
        ok = True
        if self.hf_at_least is not None:
            ok &= hf_t >= self.hf_at_least
        if self.hf_before is not None:
            ok &= hf_t < self.hf_before
        if self.v_at_least is not None:
            ok &= v_t >= self.v_at_least
        if self.v_before is not None:
            ok &= v_t < self.v_before
        if self.height_at_least is not None:
            ok &= height >= self.height_at_least
        if self.height_before is not None:
            ok &= height < self.height_before
        return ok


def _load_pubkey(p: Mapping[str, Any], alias_ok: bool = False,
                 bad_text: str = "Pubkey must be 66 hex digits (33 bytes) long") -> SessionID:
    """``pubkey`` (``pubKey`` too for store, retrieve and get_swarm), read as a testnet storage
    server reads it: 66 hex, or 64 hex without the prefix = a ``05`` account."""
    pk = f_str(p, "pubkey")
    alt = f_str(p, "pubKey") if alias_ok else None
    if pk is not None and alt is not None:
        raise ParseError("Cannot specify both 'pubkey' and 'pubKey'")
    value = require("pubkey", pk if pk is not None else alt)
    try:
        return load_user_pubkey(value.lower())
    except ValueError:
        raise ParseError(bad_text) from None


def _load_subaccount(p: Mapping[str, Any]) -> SignedSubaccount | None:
    """``subaccount`` (token, base64 or hex) + ``subaccount_sig`` (base64), as the storage
    server's load_subaccount parses them; an absent or empty token means no subaccount."""
    token_text = f_str(p, "subaccount")
    sig_text = f_str(p, "subaccount_sig")
    if not token_text:
        return None
    if sig_text is None:
        raise ParseError("invalid subaccount: subaccount_sig is required when using subaccount")
    try:
        token = SubaccountToken.parse(token_text)
    except SubaccountError:
        raise ParseError("invalid subaccount: expected base64 or hex-encoded subaccount token") from None
    try:
        sig = signing.decode_signature(sig_text)
    except signing.SignatureError:
        raise ParseError(
            "invalid subaccount signature: expected base64 encoded Ed25519 signature") from None
    return SignedSubaccount(token, sig)


def _load_auth(p: Mapping[str, Any], pubkey: SessionID, required: bool = True,
               subaccount: bool = True) -> Auth | None:
    """The storage server's load_pk_signature (+ load_subaccount when the method takes one)."""
    sig = f_str(p, "signature")
    pk_ed = f_str(p, "pubkey_ed25519")
    if sig is None:
        if required:
            raise MissingSignature("Required field 'signature' missing")
        return None
    pk_value: str | bytes | None = None
    try:
        if pk_ed is not None:
            if pubkey.prefix != 0x05:
                raise ParseError("pubkey_ed25519 is only permitted for 05[...] pubkeys")
            raw = signing.decode_pubkey_ed25519(pk_ed)
            pk_value = pk_ed.lower() if len(pk_ed) == 64 else raw
        signing.decode_signature(sig)
    except signing.SignatureError as e:
        raise ParseError(e.reason) from None
    sub = _load_subaccount(p) if subaccount else None
    return Auth(signature=sig, pubkey_ed25519=pk_value, subaccount=sub)


def _parse_tokens(p: Mapping[str, Any], name: str, limit: int | None) -> list[SubaccountToken]:
    values = require(name, f_str_list(p, name))
    if limit is not None and len(values) > limit:
        raise ParseError(f"invalid {name}: cannot revoke more than {limit} subaccounts at once")
    out = []
    for v in values:
        try:
            out.append(SubaccountToken.parse(v))
        except SubaccountError:
            raise ParseError(f"invalid {name}: expected base64 or hex-encoded subaccount tag") from None
    return out


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
    pubkey = _load_pubkey(p, alias_ok=True)
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
    pubkey = _load_pubkey(p, alias_ok=True)
    # the storage server loads (and so requires) a signature as soon as any auth field or a
    # namespace that is not anonymously readable is given
    wants_auth = (p.get("pubkey_ed25519") is not None or p.get("signature") is not None
                  or ts is not None or (ns is not None and not is_noauth_retrieve_namespace(int(ns))))
    auth = _load_auth(p, pubkey, required=True) if wants_auth else None
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
    return PubkeyReq(method, p, pubkey=_load_pubkey(p, alias_ok=True,
                                                    bad_text="Pubkey must be 66 hex digits/33 bytes long"))


def parse_revoke(method: str, p: Mapping[str, Any]) -> RevokeReq:
    """revoke_subaccount (``revoke``, at most 50 tokens) / unrevoke_subaccount (``unrevoke``)."""
    name = "revoke" if method == "revoke_subaccount" else "unrevoke"
    f_str_list(p, name)
    ts = f_ts(p, "timestamp")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey, subaccount=False)
    if name == "revoke":
        tokens = _parse_tokens(p, name, MAX_SUBACCOUNT_TOKENS)
        require("timestamp", ts)
    else:
        require("timestamp", ts)
        tokens = _parse_tokens(p, name, None)
    return RevokeReq(method, p, pubkey=pubkey, auth=auth, tokens=tokens, timestamp=ts)


def parse_revoked_subaccounts(method: str, p: Mapping[str, Any]) -> RevokedListReq:
    ts = f_ts(p, "timestamp")
    pubkey = _load_pubkey(p)
    auth = _load_auth(p, pubkey, subaccount=False)
    return RevokedListReq(method, p, pubkey=pubkey, auth=auth, timestamp=require("timestamp", ts))


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
        # any sub-request that does not parse rejects the whole batch (storage server behaviour);
        # a missing signature stays a MissingSignature (401, PROTOCOL.md)
        sub = PARSERS[m](m, sp)
        if m in META_METHODS:
            raise ParseError("Invalid batch subrequest: subrequests may not contain meta-requests")
        subs.append(sub)
    return BatchReq(method, p, subrequests=subs)


def _condition_ints(p: Mapping[str, Any], name: str, size: int) -> tuple[int, ...] | None:
    """A version condition: an integer array (or one integer), zero-padded / cut to ``size``;
    an empty array counts as absent."""
    v = p.get(name)
    if v is None:
        return None
    vals = v if isinstance(v, list) else [v]
    if not all(is_int(x) for x in vals):
        raise _bad(name, "integer array")
    if not vals:
        return None
    return tuple((list(vals) + [0] * size)[:size])


def _ifelse_branch(p: Mapping[str, Any], key: str) -> Req | None:
    if key not in p:
        return None
    r = p[key]
    if not isinstance(r, dict):
        raise ParseError(f"Invalid ifelse request: {key} must be an object")
    m = r.get("method")
    if not isinstance(m, str) or "params" not in r:
        raise ParseError(f"Invalid ifelse request: {key} must have method/params keys")
    if m not in PARSERS:
        raise ParseError(f'Invalid ifelse request method "{key}"')
    sp = r["params"]
    return PARSERS[m](m, sp if isinstance(sp, dict) else {})


def parse_ifelse(method: str, p: Mapping[str, Any]) -> IfElseReq:
    cond = p.get("if")
    if not isinstance(cond, dict):
        raise ParseError('Invalid ifelse request: no valid "if" field')
    height_ge, height_lt = f_int(cond, "height_at_least"), f_int(cond, "height_before")
    req = IfElseReq(method, p, height_at_least=height_ge, height_before=height_lt,
                    hf_at_least=_condition_ints(cond, "hf_at_least", 2),
                    hf_before=_condition_ints(cond, "hf_before", 2),
                    v_at_least=_condition_ints(cond, "v_at_least", 3),
                    v_before=_condition_ints(cond, "v_before", 3))
    if all(x is None for x in (req.height_at_least, req.height_before, req.hf_at_least,
                               req.hf_before, req.v_at_least, req.v_before)):
        raise ParseError('Invalid ifelse request: must specify at least one "if" condition')
    req.then = _ifelse_branch(p, "then")
    req.otherwise = _ifelse_branch(p, "else")
    if req.then is None and req.otherwise is None:
        raise ParseError('Invalid ifelse request: at least one of "then"/"else" required')
    return req


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
    "active_nodes_bin": parse_info,
    "revoke_subaccount": parse_revoke,
    "unrevoke_subaccount": parse_revoke,
    "revoked_subaccounts": parse_revoked_subaccounts,
    "batch": parse_batch,
    "sequence": parse_batch,
    "ifelse": parse_ifelse,
}
META_METHODS = frozenset({"batch", "sequence", "ifelse"})
RECURSIVE_METHODS = frozenset({"store", "delete", "delete_all", "delete_before", "expire", "expire_all",
                               "revoke_subaccount", "unrevoke_subaccount"})


def parse_request(method: str, params: Mapping[str, Any]) -> Req:
    """Parse a client request; raises ParseError (400) or KeyError for an unknown method."""
    return PARSERS[method](method, params)


def accounts_of(method: str | None, params: Any) -> list[str]:
    """Session IDs a request touches (for observations); never raises."""
    out: list[str] = []
    if not isinstance(params, dict):
        return out
    if method in META_METHODS:
        subs = params.get("requests") if method != "ifelse" else [params.get("then"), params.get("else")]
        for r in subs if isinstance(subs, list) else []:
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
        try:
            out.append(load_user_pubkey(pk.lower()).hex)
        except ValueError:
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
            return Response(401, MISSING_SIGNATURE_TEXT)
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
        applied: list[int] = []
        for e in req.expiry:
            if e < now - 60_000:
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
        return Response(200, self.misc({"expiries": exp}, now))

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
        member answers ``count`` and its signature of PUBKEY_HEX ‖ timestamp ‖ token bytes…"""
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
            if revoke:
                count = await self.storage.revoke_subaccounts(req.pubkey.hex, raw, now)
            else:
                count = await self.storage.unrevoke_subaccounts(req.pubkey.hex, raw)
            return {"count": count,
                    "signature": self.sign_b64(user_pubkey_hex(req.pubkey), req.timestamp, *raw)}

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
        return Response(200, self.misc({"results": list(results)}))

    async def do_sequence(self, req: BatchReq) -> Response:
        results: list[dict[str, Any]] = []
        for s in req.subrequests:
            r = await self._sub(s)
            results.append(r)
            if not 200 <= r["code"] <= 299:
                break
        return Response(200, self.misc({"results": results}))

    async def do_ifelse(self, req: IfElseReq) -> Response:
        """``{"hf", "v", "height", "condition"[, "result": {"code", "body"}]}`` (+ "t"); the
        height is the block height the seed reported with the node list."""
        view = self.get_view()
        cond = req.condition(HARDFORK, STORAGE_SERVER_VERSION, view.height)
        body: dict[str, Any] = {"hf": list(HARDFORK), "v": list(STORAGE_SERVER_VERSION),
                                "height": view.height, "condition": cond}
        branch = req.then if cond else req.otherwise
        if branch is not None:
            body["result"] = await self._sub(branch)
        return Response(200, self.misc(body))


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
