"""nodes.protocol.keys and nodes.protocol.constants."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from nodes.protocol import constants as c
from nodes.protocol.keys import (
    Identity,
    SessionID,
    derive_seed,
    ed25519_pk_to_x25519,
    load_user_pubkey,
    user_pubkey_hex,
    verify_ed25519,
)

pytestmark = pytest.mark.unit

SEED_0_31 = bytes(range(32))
ED_0_31 = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
X_0_31 = "4701d08488451f545a409fb58ae3e58581ca40ac3f7f114698cd71deac73ca01"


# --- derive_seed -------------------------------------------------------------------------------

def test_derive_seed_is_blake2b_256_of_the_documented_string():
    expected = hashlib.blake2b(b"session-testnet/node/alpha/sn01", digest_size=32).digest()
    assert derive_seed("alpha", "node", "sn01") == expected
    # pinned so that a change of the formula (and so of every testnet's keys) is noticed
    assert expected.hex() == "93fd2b29e1792ee66f426e3916560f08ed4d8918e6a14df4a6d6e954afaf7f29"


def test_derive_seed_separates_kind_seed_and_name():
    values = {
        derive_seed("alpha", "node", "sn01"),
        derive_seed("alpha", "block", "sn01"),
        derive_seed("beta", "node", "sn01"),
        derive_seed("alpha", "node", "sn02"),
    }
    assert len(values) == 4
    assert all(len(v) == 32 for v in values)


# --- Identity ----------------------------------------------------------------------------------

def test_identity_from_fixed_seed_pins_keys():
    ident = Identity.from_seed(SEED_0_31)
    assert ident.ed25519_hex == ED_0_31
    assert ident.x25519_hex == X_0_31
    assert ident.session_id == "05" + X_0_31
    assert ident.seed_hex == SEED_0_31.hex()


def test_identity_x25519_secret_matches_public_independently():
    ident = Identity.generate()
    # cryptography's X25519 derives the public key from our converted secret on its own
    pub = X25519PrivateKey.from_private_bytes(ident.x25519_secret).public_key()
    assert pub.public_bytes(Encoding.Raw, PublicFormat.Raw) == ident.x25519_public
    assert ed25519_pk_to_x25519(ident.ed25519_public) == ident.x25519_public


def test_identity_constructors_agree_and_are_frozen():
    a = Identity.from_seed(SEED_0_31)
    b = Identity.from_seed_hex(SEED_0_31.hex().upper())
    assert a == b and a.session_id == b.session_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.seed = bytes(32)  # type: ignore[misc]
    assert Identity.generate().seed != Identity.generate().seed


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "00" * 32])
def test_identity_rejects_bad_seed(bad):
    with pytest.raises(ValueError):
        Identity.from_seed(bad)  # type: ignore[arg-type]


def test_identity_from_seed_hex_rejects_non_hex():
    with pytest.raises(ValueError, match="hex"):
        Identity.from_seed_hex("zz" * 32)


def test_sign_produces_verifiable_detached_signature():
    ident = Identity.from_seed(SEED_0_31)
    sig = ident.sign(b"hello")
    assert len(sig) == 64
    assert verify_ed25519(ident.ed25519_public, b"hello", sig)
    assert not verify_ed25519(ident.ed25519_public, b"hellO", sig)
    other = Identity.generate()
    assert not verify_ed25519(other.ed25519_public, b"hello", sig)


@pytest.mark.parametrize(
    "pk,msg,sig",
    [
        (b"", b"m", bytes(64)),
        (bytes(31), b"m", bytes(64)),
        (bytes.fromhex(ED_0_31), b"m", bytes(63)),
        (None, b"m", bytes(64)),
        (bytes.fromhex(ED_0_31), None, bytes(64)),
        ("not bytes", b"m", "x" * 64),
    ],
)
def test_verify_ed25519_never_raises(pk, msg, sig):
    assert verify_ed25519(pk, msg, sig) is False


def test_ed25519_pk_to_x25519_rejects_wrong_length():
    with pytest.raises(ValueError):
        ed25519_pk_to_x25519(bytes(31))


# --- SessionID ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sid",
    [
        "05" + "00" * 24 + "0123456789abcdef",  # PROTOCOL.md §2 vectors
        "053506f4a71324b7dd114eddbf4e311f39dde243e1f2cb97c40db1961f70ebaae8",
        "05fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe",
    ],
)
def test_session_id_parses_protocol_vectors(sid):
    parsed = SessionID.parse(sid)
    assert parsed.prefix == 0x05
    assert parsed.key == bytes.fromhex(sid[2:])
    assert parsed.raw == parsed.key
    assert parsed.hex == sid and str(parsed) == sid


@pytest.mark.parametrize("prefix", [0x03, 0x15, 0x25, 0xFF, 0x00])
def test_session_id_accepts_any_one_byte_prefix(prefix):
    sid = SessionID.parse(f"{prefix:02x}" + "ab" * 32)
    assert sid.prefix == prefix
    assert sid.prefixed == bytes([prefix]) + bytes.fromhex("ab" * 32)


def test_session_id_normalises_uppercase():
    assert SessionID.parse("05" + "AB" * 32).hex == "05" + "ab" * 32


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("05" + "00" * 31, "66 hex"),
        ("05" + "00" * 33, "66 hex"),
        ("05" + "zz" * 32, "not valid hex"),
        ("", "66 hex"),
    ],
)
def test_session_id_rejects_with_clear_message(bad, reason):
    with pytest.raises(ValueError, match=reason):
        SessionID.parse(bad)


def test_session_id_rejects_non_string():
    with pytest.raises(ValueError):
        SessionID.parse(b"05" + b"00" * 32)  # type: ignore[arg-type]


def test_session_id_validates_fields():
    with pytest.raises(ValueError):
        SessionID(prefix=256, key=bytes(32))
    with pytest.raises(ValueError):
        SessionID(prefix=5, key=bytes(31))


# --- constants ---------------------------------------------------------------------------------

def test_constant_values():
    assert (c.STORAGE_PORT, c.LMQ_PORT, c.ADMIN_PORT, c.SEED_PORT, c.SEED_HTTPS_PORT) == (
        22021, 22020, 22030, 22023, 22024)
    assert c.MAX_MESSAGE_DATA == 76_800
    assert c.MAX_REQUEST_BODY == 10 * 1024 * 1024
    assert c.TTL_MIN_MS == 10_000
    assert c.TTL_MAX_PUBLIC_MS == 14 * 24 * 3600 * 1000
    assert c.TTL_MAX_PRIVATE_MS == 30 * 24 * 3600 * 1000
    assert c.CLOCK_TOLERANCE_MS == 10_000
    assert c.SIGNATURE_WINDOW_MS == 60_000


def test_versions_are_accepted_by_current_clients():
    major, minor = c.HARDFORK
    # session-desktop's hard-fork check: hf[0] >= 19 and hf[1] >= 1
    assert major >= 19 and minor >= 1
    assert len(c.STORAGE_SERVER_VERSION) == 3 and c.STORAGE_SERVER_VERSION[0] == 2
    # libsession picks the final path hop among nodes >= 2.8.0
    assert c.STORAGE_SERVER_VERSION >= (2, 8, 0)


@pytest.mark.parametrize(
    "ns,store_auth,read_auth,ttl",
    [
        (0, False, True, c.TTL_MAX_PUBLIC_MS),
        (10, False, True, c.TTL_MAX_PUBLIC_MS),
        (-20, False, True, c.TTL_MAX_PUBLIC_MS),
        (-10, False, False, c.TTL_MAX_PUBLIC_MS),
        (2, True, True, c.TTL_MAX_PRIVATE_MS),
        (-42, True, True, c.TTL_MAX_PRIVATE_MS),
        (11, True, True, c.TTL_MAX_PRIVATE_MS),
        # public outboxes -(20n+1): signed stores, anonymous retrieval (namespace.h)
        (-1, True, False, c.TTL_MAX_PRIVATE_MS),
        (-21, True, False, c.TTL_MAX_PRIVATE_MS),
        (-981, True, False, c.TTL_MAX_PRIVATE_MS),
        (-41, True, False, c.TTL_MAX_PRIVATE_MS),
        # close to outboxes but not of the form -(20n+1)
        (1, True, True, c.TTL_MAX_PRIVATE_MS),
        (21, True, True, c.TTL_MAX_PRIVATE_MS),
        (-11, True, True, c.TTL_MAX_PRIVATE_MS),
        (-19, True, True, c.TTL_MAX_PRIVATE_MS),
    ],
)
def test_namespace_rules(ns, store_auth, read_auth, ttl):
    assert c.namespace_store_needs_auth(ns) is store_auth
    assert c.namespace_read_needs_auth(ns) is read_auth
    assert c.is_noauth_retrieve_namespace(ns) is (not read_auth)
    assert c.max_ttl_ms(ns) == ttl


@pytest.mark.parametrize("ns,outbox,unrevocable", [
    (-1, True, False), (-21, True, False), (-32761, True, False), (-20, False, False),
    (1, False, False), (21, False, False), (-11, False, True), (-111, False, True),
    (-12311, False, True), (11, False, False), (-211, False, True), (-10, False, False),
])
def test_outbox_and_unrevocable_namespaces(ns, outbox, unrevocable):
    assert c.is_public_outbox_namespace(ns) is outbox
    assert c.is_unrevocable_namespace(ns) is unrevocable


@pytest.mark.parametrize("ns", [-32768, 0, 32767])
def test_validate_namespace_accepts_int16(ns):
    assert c.validate_namespace(ns) == ns


@pytest.mark.parametrize("ns", [-32769, 32768, 1.0, "1", True, None])
def test_validate_namespace_rejects(ns):
    with pytest.raises(ValueError):
        c.validate_namespace(ns)  # type: ignore[arg-type]


# --- account pubkeys as a testnet storage server reads them (oxenss/common/pubkey.cpp) ---------

def test_load_user_pubkey_accepts_unprefixed_keys_as_05_on_testnet():
    key = "ab" * 32
    assert load_user_pubkey(key) == SessionID(prefix=0x05, key=bytes.fromhex(key))
    assert load_user_pubkey("03" + key) == SessionID(prefix=0x03, key=bytes.fromhex(key))
    with pytest.raises(ValueError):
        load_user_pubkey(key, testnet=False)  # mainnet needs the prefix
    for bad in ("ab" * 31, "ab" * 33 + "a", "zz" * 32, "05" + "zz" * 32):
        with pytest.raises(ValueError):
            load_user_pubkey(bad)


def test_user_pubkey_hex_omits_a_00_prefix_on_testnet():
    key = bytes(range(32))
    assert user_pubkey_hex(SessionID(0x05, key)) == "05" + key.hex()
    assert user_pubkey_hex(SessionID(0x00, key)) == key.hex()
    assert user_pubkey_hex(SessionID(0x00, key), testnet=False) == "00" + key.hex()
