"""Identities and key conversions (PROTOCOL.md §1).

An account or service node is a 32-byte Ed25519 seed.  The X25519 keypair is derived from the
Ed25519 one with libsodium's ``crypto_sign_ed25519_{pk,sk}_to_curve25519`` (what Session,
oxen-core and the storage server use), so a node's ``pubkey_x25519`` and an account's ``05``
Session ID are both conversions of an Ed25519 key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property

from nacl import bindings
from nacl.exceptions import CryptoError

SEED_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
SESSION_ID_HEX_LEN = 66

PREFIX_X25519 = 0x05  # normal account: key = X25519 public key
PREFIX_GROUP = 0x03  # closed group (libsession groups): key = Ed25519 public key


def derive_seed(testnet_seed: str, kind: str, name: str) -> bytes:
    """Deterministic 32 bytes for `kind`/`name` of a testnet (DESIGN.md "Determinism").

    BLAKE2b-256 of ``f"session-testnet/{kind}/{testnet_seed}/{name}"`` (UTF-8).
    """
    text = f"session-testnet/{kind}/{testnet_seed}/{name}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).digest()


def ed25519_pk_to_x25519(pk: bytes) -> bytes:
    """Convert an Ed25519 public key to its X25519 (Montgomery) form.

    Raises ValueError if `pk` is not 32 bytes or not a valid Ed25519 point.
    """
    if not isinstance(pk, (bytes, bytearray)) or len(pk) != KEY_BYTES:
        raise ValueError(f"Ed25519 public key must be {KEY_BYTES} bytes")
    try:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(bytes(pk))
    except (CryptoError, RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid Ed25519 public key {bytes(pk).hex()}: {exc}") from exc


def verify_ed25519(pk: bytes, msg: bytes, sig: bytes) -> bool:
    """Verify a detached Ed25519 signature.  Returns False on any bad input; never raises."""
    try:
        if len(pk) != KEY_BYTES or len(sig) != SIGNATURE_BYTES:
            return False
        bindings.crypto_sign_open(bytes(sig) + bytes(msg), bytes(pk))
        return True
    except Exception:  # noqa: BLE001 - contract: never raise, any bad input is "not valid"
        return False


@dataclass(frozen=True)
class Identity:
    """An Ed25519 identity (account or service node) given by its 32-byte seed."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (bytes, bytearray)) or len(self.seed) != SEED_BYTES:
            raise ValueError(f"Identity seed must be {SEED_BYTES} bytes")
        if isinstance(self.seed, bytearray):
            object.__setattr__(self, "seed", bytes(self.seed))

    # --- constructors ----------------------------------------------------------------------
    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if not isinstance(seed, (bytes, bytearray, memoryview)):
            raise ValueError(f"Identity seed must be {SEED_BYTES} bytes, got {type(seed).__name__}")
        return cls(seed=bytes(seed))

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> Identity:
        try:
            seed = bytes.fromhex(seed_hex.strip())
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"Identity seed must be {SEED_BYTES * 2} hex characters: {exc}") from exc
        return cls(seed=seed)

    @classmethod
    def generate(cls) -> Identity:
        return cls(seed=os.urandom(SEED_BYTES))

    # --- derived keys ----------------------------------------------------------------------
    @cached_property
    def _ed25519_keypair(self) -> tuple[bytes, bytes]:
        return bindings.crypto_sign_seed_keypair(self.seed)

    @cached_property
    def ed25519_public(self) -> bytes:
        return self._ed25519_keypair[0]

    @cached_property
    def ed25519_secret(self) -> bytes:
        """libsodium's 64-byte Ed25519 secret key (seed ‖ public key)."""
        return self._ed25519_keypair[1]

    @cached_property
    def x25519_public(self) -> bytes:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(self.ed25519_public)

    @cached_property
    def x25519_secret(self) -> bytes:
        return bindings.crypto_sign_ed25519_sk_to_curve25519(self.ed25519_secret)

    @cached_property
    def ed25519_hex(self) -> str:
        return self.ed25519_public.hex()

    @cached_property
    def x25519_hex(self) -> str:
        return self.x25519_public.hex()

    @cached_property
    def seed_hex(self) -> str:
        return self.seed.hex()

    @cached_property
    def session_id(self) -> str:
        """The account's ``05`` Session ID (66 hex chars)."""
        return f"{PREFIX_X25519:02x}{self.x25519_hex}"

    def sign(self, msg: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature of `msg`."""
        return bindings.crypto_sign(bytes(msg), self.ed25519_secret)[:SIGNATURE_BYTES]


@dataclass(frozen=True)
class SessionID:
    """A one-byte prefix plus a 32-byte key (``05`` = X25519 account, ``03`` = Ed25519 group)."""

    prefix: int
    key: bytes

    def __post_init__(self) -> None:
        if isinstance(self.prefix, bool) or not isinstance(self.prefix, int) or not 0 <= self.prefix <= 0xFF:
            raise ValueError(f"Session ID prefix must be one byte (0-255), got {self.prefix!r}")
        if not isinstance(self.key, (bytes, bytearray)) or len(self.key) != KEY_BYTES:
            raise ValueError(f"Session ID key must be {KEY_BYTES} bytes")
        if isinstance(self.key, bytearray):
            object.__setattr__(self, "key", bytes(self.key))

    @classmethod
    def parse(cls, s: object) -> SessionID:
        """Parse 66 hex characters: a one-byte prefix followed by a 32-byte key (a SessionID is
        returned as is; anything else raises ValueError saying what is wrong)."""
        if isinstance(s, SessionID):
            return s
        if not isinstance(s, str):
            raise ValueError(f"Session ID must be a string of {SESSION_ID_HEX_LEN} hex characters, "
                             f"got {type(s).__name__}")
        if len(s) != SESSION_ID_HEX_LEN:
            raise ValueError(f"Session ID must be {SESSION_ID_HEX_LEN} hex characters "
                             f"(1 prefix byte + 32 key bytes), got {len(s)}: {s[:80]!r}")
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raise ValueError(f"Session ID is not valid hex: {s!r}") from None
        return cls(prefix=raw[0], key=raw[1:])

    @property
    def raw(self) -> bytes:
        """The 32 key bytes (without the prefix)."""
        return self.key

    @property
    def prefixed(self) -> bytes:
        """The 33 bytes prefix ‖ key."""
        return bytes([self.prefix]) + self.key

    @property
    def hex(self) -> str:
        return f"{self.prefix:02x}{self.key.hex()}"

    def __str__(self) -> str:
        return self.hex


def load_user_pubkey(text: str, *, testnet: bool = True) -> SessionID:
    """An account pubkey as the storage server reads it (``user_pubkey::load``, hex forms).

    66 hex characters are a one-byte network prefix and the 32-byte key.  A storage server that
    does not run on mainnet (``!is_mainnet``: a testnet, which is what this project runs) also
    accepts the 64-hex key without a prefix and treats it as a ``05`` account.  Raises ValueError
    for anything else.
    """
    if isinstance(text, str) and testnet and len(text) == SESSION_ID_HEX_LEN - 2:
        try:
            return SessionID(prefix=PREFIX_X25519, key=bytes.fromhex(text))
        except ValueError:
            raise ValueError(f"pubkey is not valid hex: {text!r}") from None
    return SessionID.parse(text)


def user_pubkey_hex(sid: SessionID, *, testnet: bool = True) -> str:
    """The storage server's ``prefixed_hex()`` of an account (what it puts in the signatures of
    its answers): prefix + key in hex, except that a testnet server omits a ``00`` prefix."""
    if testnet and sid.prefix == 0:
        return sid.key.hex()
    return sid.hex
