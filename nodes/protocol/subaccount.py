"""Group subaccount tokens (storage server ``oxenss/common/subaccount_token.h`` and
``crypto/subaccount.cpp``; libsession groups hand them to members).

A token is 36 bytes: network prefix (e.g. ``03`` for groups) ‖ permission flags ‖ two reserved
bytes ‖ the subaccount's Ed25519 public key.  The account owner signs the 36 token bytes; a
request made with the subaccount carries the token (``subaccount``, base64 or hex in JSON), the
owner's signature of it (``subaccount_sig``, base64) and a request ``signature`` made with the
*subaccount's* key instead of the owner's.  Verification (:meth:`SignedSubaccount.verify`):

* the token's prefix equals the account's network prefix, unless the token has ``ANY_PREFIX``;
* the token has every permission flag the method needs (read / write / delete);
* the owner's signature over the token verifies with the owner's Ed25519 key (for a ``05``
  account the ``pubkey_ed25519`` it sent, otherwise the account key itself);
* then the request signature is checked with the token's public key.

Whether a token is revoked is the storage node's business (its database); see ``revoke_subaccount``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from .constants import (
    SUBACCOUNT_ANY_PREFIX,
    SUBACCOUNT_DELETE,
    SUBACCOUNT_READ,
    SUBACCOUNT_TOKEN_LENGTH,
    SUBACCOUNT_WRITE,
)
from .encoding import b64decode_any, is_base64
from .keys import KEY_BYTES, SIGNATURE_BYTES, Identity, verify_ed25519

__all__ = ["ANY_PREFIX", "DELETE", "READ", "WRITE", "SignedSubaccount", "SubaccountError",
           "SubaccountToken", "sign_token"]

READ, WRITE, DELETE, ANY_PREFIX = SUBACCOUNT_READ, SUBACCOUNT_WRITE, SUBACCOUNT_DELETE, SUBACCOUNT_ANY_PREFIX



class SubaccountError(ValueError):
    """A subaccount token is malformed or does not authorise the request (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SubaccountToken:
    """The 36 raw token bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, (bytes, bytearray)) or len(self.raw) != SUBACCOUNT_TOKEN_LENGTH:
            raise SubaccountError(f"a subaccount token is {SUBACCOUNT_TOKEN_LENGTH} bytes")
        object.__setattr__(self, "raw", bytes(self.raw))

    @classmethod
    def make(cls, prefix: int, flags: int, pubkey_ed25519: bytes) -> SubaccountToken:
        if not 0 <= prefix <= 0xFF or not 0 <= flags <= 0xFF or len(pubkey_ed25519) != KEY_BYTES:
            raise SubaccountError("token needs a one-byte prefix, one byte of flags and a 32-byte key")
        return cls(bytes([prefix, flags, 0, 0]) + bytes(pubkey_ed25519))

    @classmethod
    def parse(cls, text: str) -> SubaccountToken:
        """A token as JSON carries it: 48 base64 characters or 72 hex characters (ValueError
        otherwise)."""
        if not isinstance(text, str):
            raise SubaccountError("expected a base64 or hex-encoded subaccount token string")
        if len(text) == SUBACCOUNT_TOKEN_LENGTH * 4 // 3 and is_base64(text):
            try:
                return cls(b64decode_any(text))
            except (binascii.Error, ValueError):
                pass
        if len(text) == SUBACCOUNT_TOKEN_LENGTH * 2:
            try:
                return cls(bytes.fromhex(text))
            except ValueError:
                pass
        raise SubaccountError("expected base64 or hex-encoded subaccount token")

    @property
    def prefix(self) -> int:
        return self.raw[0]

    @property
    def flags(self) -> int:
        return self.raw[1]

    @property
    def pubkey(self) -> bytes:
        return self.raw[4:]

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    def prefix_allowed(self, net_prefix: int) -> bool:
        return self.prefix == net_prefix or self.has(ANY_PREFIX)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")


@dataclass(frozen=True)
class SignedSubaccount:
    """A token plus the account owner's signature of its 36 bytes."""

    token: SubaccountToken
    signature: bytes

    def verify(self, net_prefix: int, owner_ed25519: bytes, required: int) -> None:
        """Raise SubaccountError unless the token may act for the account (see module doc)."""
        if not self.token.prefix_allowed(net_prefix):
            raise SubaccountError("subaccount network prefix mismatch")
        if not self.token.has(required):
            raise SubaccountError("subaccount is missing the required permissions")
        if len(self.signature) != SIGNATURE_BYTES or not verify_ed25519(
                owner_ed25519, self.token.raw, self.signature):
            raise SubaccountError("subaccount token signature verification failed")


def sign_token(owner: Identity, token: SubaccountToken) -> bytes:
    """The owner's ``subaccount_sig`` (raw 64 bytes) for ``token``."""
    return owner.sign(token.raw)
