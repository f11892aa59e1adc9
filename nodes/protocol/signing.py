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
=================  ================================================================

``ns`` is "" for namespace 0, ``all`` for all namespaces, else the decimal namespace.  Integers are
decimal milliseconds.

Verification (storage server ``load_pk_signature`` / ``verify_signature``):

* ``signature`` in JSON is base64 of the 64-byte signature: 86 characters unpadded or 88 with
  ``==``; oxenc's base64 decoder accepts the standard and the URL-safe alphabet.  Hex signatures
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
from .keys import PREFIX_X25519, Identity, SessionID, ed25519_pk_to_x25519, verify_ed25519

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


# --- signing / verification --------------------------------------------------------------------

def sign_request(identity: Identity, message: bytes) -> str:
    """Sign a request message; returns the standard padded base64 the clients send."""
    return base64.b64encode(identity.sign(message)).decode("ascii")


def decode_signature(signature_b64: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padded or not) Ed25519 signature.

    Raises SignatureError(status=400) unless it is exactly 64 bytes of valid base64.
    """
    if not isinstance(signature_b64, str):
        raise SignatureError("invalid signature: expected base64 encoded Ed25519 signature", 400)
    s = signature_b64
    if len(s) == 88 and s.endswith("=="):
        s = s[:86]
    if len(s) != 86:
        raise SignatureError(
            "invalid signature: expected base64 encoded Ed25519 signature (86 characters, or 88 "
            f"with == padding), got {len(signature_b64)} characters", 400)
    s = s.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(s + "==", validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("invalid signature: not base64", 400) from None
    if len(raw) != 64:  # pragma: no cover - 86 valid chars always decode to 64 bytes
        raise SignatureError("invalid signature: expected 64 bytes", 400)
    return raw


def decode_pubkey_ed25519(pubkey_ed25519_hex: str) -> bytes:
    """Decode the 64-hex-character ``pubkey_ed25519`` field (SignatureError(400) otherwise)."""
    if not isinstance(pubkey_ed25519_hex, str) or len(pubkey_ed25519_hex) != 64:
        raise SignatureError("Invalid pubkey_ed25519: expected 64 hex char pubkey", 400)
    try:
        return bytes.fromhex(pubkey_ed25519_hex)
    except ValueError:
        raise SignatureError("invalid pubkey_ed25519: value is not hex", 400) from None


def verify_request(
    pubkey: SessionID | str,
    pubkey_ed25519_hex: str | None,
    message: bytes,
    signature_b64: str,
) -> None:
    """Check a request signature the way the storage server does; raise SignatureError if bad."""
    sid = pubkey if isinstance(pubkey, SessionID) else SessionID.parse(pubkey)
    sig = decode_signature(signature_b64)
    if pubkey_ed25519_hex:
        if sid.prefix != PREFIX_X25519:
            raise SignatureError("pubkey_ed25519 is only permitted for 05[...] pubkeys", 400)
        ed_pk = decode_pubkey_ed25519(pubkey_ed25519_hex)
        try:
            x_pk = ed25519_pk_to_x25519(ed_pk)
        except ValueError:
            raise SignatureError("invalid pubkey_ed25519: not a valid Ed25519 public key") from None
        if x_pk != sid.key:
            raise SignatureError(
                f"pubkey_ed25519 {pubkey_ed25519_hex} does not correspond to pubkey {sid.hex}")
        verify_key = ed_pk
    else:
        verify_key = sid.key
    if not verify_ed25519(verify_key, bytes(message), sig):
        if sid.prefix == PREFIX_X25519 and not pubkey_ed25519_hex:
            raise SignatureError(
                f"signature verification failed: no pubkey_ed25519 given for 05 pubkey {sid.hex}, "
                "so its key bytes were used as the Ed25519 key; a normal 05 account must send "
                "pubkey_ed25519")
        raise SignatureError("signature verification failed")
