"""Storage RPC requests (POST /storage_rpc/v1, PROTOCOL.md §4): reading and validating the
JSON params of every method into a typed request (:mod:`nodes.snode.request_types`), as the
production storage server parses them (``oxenss/rpc/client_rpc_endpoints.cpp``).

Any malformed field raises :class:`~nodes.snode.request_fields.ParseError` (the handler answers
``400 "invalid request: <reason>"``); a method that needs a signature and gets none raises
:class:`~nodes.snode.request_fields.MissingSignature` (the field readers are in
:mod:`nodes.snode.request_fields`).
Fields are checked in the storage server's order, so the first error reported is the same.
:func:`parse_request` is the entry point; :func:`accounts_of` names the accounts a request
touches (for observations). The handlers are in :mod:`nodes.snode.rpc`.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

from nodes.common.values import is_int
from nodes.protocol import signing
from nodes.protocol.constants import MAX_MESSAGE_DATA, MAX_SUBACCOUNT_TOKENS, is_noauth_retrieve_namespace
from nodes.protocol.encoding import b64decode_any, is_base64
from nodes.protocol.keys import SessionID, load_user_pubkey
from nodes.protocol.subaccount import SignedSubaccount, SubaccountError, SubaccountToken

from .request_fields import (
    MissingSignature,
    ParseError,
    f_bool,
    f_int,
    f_namespace,
    f_str,
    f_str_list,
    f_stringified,
    f_ts,
    f_ts_list,
    invalid_value,
    is_valid_hash,
    require,
)
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

BATCH_REQUEST_MAX = 20
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


@overload
def _load_auth(p: Mapping[str, Any], pubkey: SessionID, required: Literal[True] = True,
               subaccount: bool = True) -> Auth: ...


@overload
def _load_auth(p: Mapping[str, Any], pubkey: SessionID, required: bool,
               subaccount: bool = True) -> Auth | None: ...


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
    timestamp = require("timestamp", timestamp)
    if expiry is not None and ttl is not None:
        raise ParseError("Cannot specify both 'expiry' and 'ttl'")
    if expiry is None:
        if ttl is None:
            raise ParseError("Required field 'expiry' or 'ttl' missing")
        expiry = timestamp + ttl
    pubkey = _load_pubkey(p, alias_ok=True)
    auth = _load_auth(p, pubkey, required=False)
    data = require("data", data)
    if not is_base64(data):
        raise ParseError("Invalid 'data' value: not base64 encoded")
    if len(data) > MAX_MESSAGE_DATA // 3 * 4:
        raise ParseError(f"Message body exceeds maximum allowed length of {MAX_MESSAGE_DATA} bytes")
    try:
        raw = b64decode_any(data)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid 'data' value: not base64 encoded") from None
    return StoreReq(method, p, pubkey=pubkey, namespace=int(ns or 0), timestamp=timestamp,
                    expiry=expiry, data=raw, auth=auth,
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
    when = require(time_field, when)
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
        ts = require("timestamp", ts)
    else:
        ts = require("timestamp", ts)
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
        # a missing signature stays a MissingSignature (400 with its own text)
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
        raise invalid_value(name, "integer array")
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
