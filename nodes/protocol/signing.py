"""Storage-RPC request signatures (PROTOCOL.md §4 "Signatures").

Every authenticated storage RPC carries an Ed25519 signature over an ASCII message that starts
with the method name, followed by method-specific fields concatenated without separators:

=================  ================================================================
method             signed message
=================  ================================================================
store              ``"store" ‖ ns ‖ sig_timestamp``
retrieve           ``"retrieve" ‖ ns ‖ timestamp``
delete             ``"delete" ‖ hash₁ ‖ hash₂ …``
delete_all         ``"delete_all" ‖ ns ‖ timestamp``
delete_before      ``"delete_before" ‖ ns ‖ before``
expire_all         ``"expire_all" ‖ ns ‖ expiry``
expire             ``"expire" ‖ ("" | "shorten" | "extend") ‖ expiry ‖ hash₁ …``
get_expiries       ``"get_expiries" ‖ timestamp ‖ hash₁ …``
revoke_subaccount  ``"revoke_subaccount" ‖ timestamp ‖ token₁ bytes …``
unrevoke_subacc…   ``"unrevoke_subaccount" ‖ timestamp ‖ token₁ bytes …``
revoked_subacc…    ``"revoked_subaccounts" ‖ timestamp``
=================  ================================================================

``ns`` is "" for namespace 0, ``all`` for all namespaces, else the decimal namespace.  Integers are
decimal milliseconds.

Verification (storage server ``load_pk_signature`` / ``verify_signature``):

* ``signature`` in JSON is base64 of the 64-byte signature: 86 characters unpadded or 88 with
  ``==``; oxenc's base64 decoder accepts the standard and the URL-safe alphabet.
* with a group subaccount (``subaccount`` + ``subaccount_sig``) the request is signed by the
  subaccount's key; see :mod:`nodes.protocol.subaccount`.  Hex signatures
  are *not* accepted by the storage server, so they are rejected here too.
* ``pubkey_ed25519`` (64 hex) is only permitted for ``05`` pubkeys; its X25519 conversion must
  equal the account's key and the signature is verified with it.  Without it the signature is
  checked against the 32 key bytes themselves, for every prefix.  That is right for ``03`` groups;
  for a normal ``05`` account (an X25519 key) it fails, so real ``05`` clients always send
  ``pubkey_ed25519`` -- but the storage server's own network tests use ``05`` + an *Ed25519* key
  without ``pubkey_ed25519`` and expect success, so that case is accepted here too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from .constants import validate_namespace
from .encoding import is_base64
from .keys import PREFIX_X25519, Identity, SessionID, ed25519_pk_to_x25519, verify_ed25519
from .subaccount import SignedSubaccount, SubaccountError, SubaccountToken

EXPIRE_MODES = ("", "shorten", "extend")


class SignatureError(ValueError):
    """A request signature is missing, malformed or does not verify.

    ``status`` is the HTTP status the storage server answers with: 400 for a malformed field
    (bad base64, bad pubkey_ed25519, pubkey_ed25519 on a non-05 key), 401 when the signature
    simply does not verify.
    """

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --- message builders --------------------------------------------------------------------------

def namespace_str(ns: int | str | None) -> str:
    """Namespace as it appears in signed messages: "" for 0/None, "all", else decimal."""
    if ns is None:
        return ""
    if isinstance(ns, str):
        if ns == "all":
            return "all"
        try:
            ns = int(ns, 10)
        except ValueError:
            raise ValueError(f"invalid namespace {ns!r}: expected an integer or \"all\"") from None
    validate_namespace(ns)
    return "" if ns == 0 else str(ns)


def _int(value: int, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer (milliseconds), got {value!r}")
    return str(value)


def _hashes(hashes: Iterable[str] | str) -> str:
    if isinstance(hashes, str):
        return hashes
    return "".join(hashes)


def store_message(namespace: int | str | None, sig_timestamp: int) -> bytes:
    return f"store{namespace_str(namespace)}{_int(sig_timestamp, 'sig_timestamp')}".encode("ascii")


def retrieve_message(namespace: int | str | None, timestamp: int) -> bytes:
    return f"retrieve{namespace_str(namespace)}{_int(timestamp, 'timestamp')}".encode("ascii")


def delete_message(hashes: Iterable[str] | str) -> bytes:
    return f"delete{_hashes(hashes)}".encode("ascii")


def delete_all_message(namespace: int | str | None, timestamp: int) -> bytes:
    return f"delete_all{namespace_str(namespace)}{_int(timestamp, 'timestamp')}".encode("ascii")


def delete_before_message(namespace: int | str | None, before: int) -> bytes:
    return f"delete_before{namespace_str(namespace)}{_int(before, 'before')}".encode("ascii")


def expire_all_message(namespace: int | str | None, expiry: int) -> bytes:
    return f"expire_all{namespace_str(namespace)}{_int(expiry, 'expiry')}".encode("ascii")


def expire_message(mode: str | None, expiry: int, hashes: Iterable[str] | str) -> bytes:
    mode = mode or ""
    if mode not in EXPIRE_MODES:
        raise ValueError(f"invalid expire mode {mode!r}: expected \"\", \"shorten\" or \"extend\"")
    return f"expire{mode}{_int(expiry, 'expiry')}{_hashes(hashes)}".encode("ascii")


def get_expiries_message(timestamp: int, hashes: Iterable[str] | str) -> bytes:
    return f"get_expiries{_int(timestamp, 'timestamp')}{_hashes(hashes)}".encode("ascii")


def _tokens(tokens: Iterable[bytes | SubaccountToken] | bytes | SubaccountToken) -> bytes:
    if isinstance(tokens, (bytes, bytearray, SubaccountToken)):
        tokens = [tokens]
    return b"".join(t.raw if isinstance(t, SubaccountToken) else bytes(t) for t in tokens)


def revoke_subaccount_message(timestamp: int,
                              tokens: Iterable[bytes | SubaccountToken] | bytes | SubaccountToken) -> bytes:
    """``"revoke_subaccount" ‖ timestamp ‖ token bytes…`` (raw 36-byte tokens, request order)."""
    return f"revoke_subaccount{_int(timestamp, 'timestamp')}".encode("ascii") + _tokens(tokens)


def unrevoke_subaccount_message(timestamp: int,
                                tokens: Iterable[bytes | SubaccountToken] | bytes | SubaccountToken) -> bytes:
    """``"unrevoke_subaccount" ‖ timestamp ‖ token bytes…``."""
    return f"unrevoke_subaccount{_int(timestamp, 'timestamp')}".encode("ascii") + _tokens(tokens)


def revoked_subaccounts_message(timestamp: int) -> bytes:
    """``"revoked_subaccounts" ‖ timestamp``."""
    return f"revoked_subaccounts{_int(timestamp, 'timestamp')}".encode("ascii")


# --- signing / verification --------------------------------------------------------------------

def sign_request(identity: Identity, message: bytes) -> str:
    """Sign a request message; returns the standard padded base64 the clients send."""
    return base64.b64encode(identity.sign(message)).decode("ascii")


def decode_signature(signature_b64: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padded or not) Ed25519 signature.

    Raises SignatureError(status=400) with the storage server's text unless it is 86 base64
    characters (88 with ``==``).
    """
    bad = "invalid signature: expected base64 encoded Ed25519 signature"
    if not isinstance(signature_b64, str):
        raise SignatureError(bad, 400)
    s = signature_b64
    if not (len(s) == 86 or (len(s) == 88 and s.endswith("=="))) or not is_base64(s):
        raise SignatureError(bad, 400)
    s = s[:86].replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(s + "==", validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(bad, 400) from None
    if len(raw) != 64:  # pragma: no cover - 86 valid chars always decode to 64 bytes
        raise SignatureError(bad, 400)
    return raw


def decode_pubkey_ed25519(pubkey_ed25519: str) -> bytes:
    """Decode the ``pubkey_ed25519`` field: 64 hex characters (either case) or, as the storage
    server also allows, a 32-byte string of the raw key.  SignatureError(400) with the storage
    server's texts otherwise."""
    if isinstance(pubkey_ed25519, str):
        if len(pubkey_ed25519) == 64:
            try:
                return bytes.fromhex(pubkey_ed25519)
            except ValueError:
                raise SignatureError("invalid pubkey_ed25519: value is not hex", 400) from None
        raw = pubkey_ed25519.encode("utf-8", "surrogatepass")
        if len(raw) == 32:
            return raw
    raise SignatureError("Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey", 400)


def verify_request(
    pubkey: SessionID | str,
    pubkey_ed25519_hex: str | bytes | None,
    message: bytes,
    signature_b64: str,
    subaccount: SignedSubaccount | None = None,
    required_access: int = 0,
) -> None:
    """Check a request signature the way the storage server does; raise SignatureError if bad.

    ``pubkey_ed25519_hex`` is the request's ``pubkey_ed25519`` (hex text or the decoded 32
    bytes).  With ``subaccount`` the owner key (``pubkey_ed25519`` or the account key) must have
    signed the token, the token must grant ``required_access`` (SUBACCOUNT_* flags) for this
    account's prefix, and the request signature is checked with the token's key instead.
    (Revocation is checked by the caller, which owns the revocation list.)
    """
    sid = pubkey if isinstance(pubkey, SessionID) else SessionID.parse(pubkey)
    sig = decode_signature(signature_b64)
    if pubkey_ed25519_hex:
        if sid.prefix != PREFIX_X25519:
            raise SignatureError("pubkey_ed25519 is only permitted for 05[...] pubkeys", 400)
        ed_pk = (bytes(pubkey_ed25519_hex) if isinstance(pubkey_ed25519_hex, (bytes, bytearray))
                 else decode_pubkey_ed25519(pubkey_ed25519_hex))
        try:
            x_pk = ed25519_pk_to_x25519(ed_pk)
        except ValueError:
            raise SignatureError("invalid pubkey_ed25519: not a valid Ed25519 public key") from None
        if x_pk != sid.key:
            raise SignatureError(
                f"pubkey_ed25519 {ed_pk.hex()} does not correspond to pubkey {sid.hex}")
        verify_key = ed_pk
    else:
        verify_key = sid.key
    if subaccount is not None:
        try:
            subaccount.verify(sid.prefix, verify_key, required_access)
        except SubaccountError as e:
            raise SignatureError(e.reason) from None
        verify_key = subaccount.token.pubkey
    if not verify_ed25519(verify_key, bytes(message), sig):
        if sid.prefix == PREFIX_X25519 and not pubkey_ed25519_hex and subaccount is None:
            raise SignatureError(
                f"signature verification failed: no pubkey_ed25519 given for 05 pubkey {sid.hex}, "
                "so its key bytes were used as the Ed25519 key; a normal 05 account must send "
                "pubkey_ed25519")
        raise SignatureError("signature verification failed")
