"""The typed storage RPC requests (PROTOCOL.md §4): one dataclass per method family, as
:mod:`nodes.snode.requests` builds them from a request's JSON params and :mod:`nodes.snode.rpc`
answers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodes.protocol.keys import SessionID
from nodes.protocol.subaccount import SignedSubaccount, SubaccountToken


@dataclass
class Auth:
    signature: str
    pubkey_ed25519: str | bytes | None  # lower-case hex, or the raw 32 bytes
    subaccount: SignedSubaccount | None = None


@dataclass
class Req:
    method: str
    params: Mapping[str, Any]


@dataclass(kw_only=True)
class StoreReq(Req):
    pubkey: SessionID
    namespace: int = 0
    timestamp: int = 0
    expiry: int = 0
    data: bytes = b""
    auth: Auth | None = None
    sig_ts: int | None = None


@dataclass(kw_only=True)
class RetrieveReq(Req):
    pubkey: SessionID
    namespace: int = 0
    last_hash: str | None = None
    max_count: int | None = None
    max_size: int | None = None
    auth: Auth | None = None
    timestamp: int | None = None


@dataclass(kw_only=True)
class DeleteReq(Req):
    pubkey: SessionID
    auth: Auth
    messages: list[str] = field(default_factory=list)
    required: bool = False


@dataclass(kw_only=True)
class NsTimeReq(Req):
    """delete_all (timestamp), delete_before (before), expire_all (expiry)."""
    pubkey: SessionID
    auth: Auth
    namespace: int | str = 0
    when: int = 0


@dataclass(kw_only=True)
class ExpireReq(Req):
    pubkey: SessionID
    auth: Auth
    messages: list[str] = field(default_factory=list)
    expiry: list[int] = field(default_factory=list)
    shorten: bool = False
    extend: bool = False


@dataclass(kw_only=True)
class GetExpiriesReq(Req):
    pubkey: SessionID
    auth: Auth
    messages: list[str] = field(default_factory=list)
    timestamp: int = 0


@dataclass(kw_only=True)
class PubkeyReq(Req):
    pubkey: SessionID


@dataclass(kw_only=True)
class OxendReq(Req):
    endpoint: str = ""
    oxend_params: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BatchReq(Req):
    subrequests: list[Req] = field(default_factory=list)


@dataclass(kw_only=True)
class RevokeReq(Req):
    """revoke_subaccount / unrevoke_subaccount."""
    pubkey: SessionID
    auth: Auth
    tokens: list[SubaccountToken] = field(default_factory=list)
    timestamp: int = 0


@dataclass(kw_only=True)
class RevokedListReq(Req):
    pubkey: SessionID
    auth: Auth
    timestamp: int = 0


@dataclass(kw_only=True)
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
