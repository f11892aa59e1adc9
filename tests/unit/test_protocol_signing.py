"""nodes.protocol.signing: signed-message builders and request verification."""

from __future__ import annotations

import base64

import pytest
from nacl.signing import SigningKey

from nodes.protocol.keys import Identity, SessionID
from nodes.protocol.signing import (
    SignatureError,
    decode_pubkey_ed25519,
    delete_all_message,
    delete_before_message,
    delete_message,
    expire_all_message,
    expire_message,
    get_expiries_message,
    namespace_str,
    retrieve_message,
    revoke_subaccount_message,
    revoked_subaccounts_message,
    sign_request,
    store_message,
    unrevoke_subaccount_message,
    verify_request,
)
from nodes.protocol.subaccount import (
    ANY_PREFIX,
    DELETE,
    READ,
    WRITE,
    SignedSubaccount,
    SubaccountError,
    SubaccountToken,
    sign_token,
)

pytestmark = pytest.mark.unit

TS = 1_700_000_000_123
H1 = "YvS9lqyqRXv+lb1q0AdCHzJ22GEMpXownDIsVwxAArg"
H2 = "Xvot3idOBMt7HIjVFXez5f33BYUVxAy5ej/yQYcZwxA"


@pytest.mark.parametrize(
    "ns,expected",
    [(0, ""), (None, ""), ("all", "all"), (5, "5"), (-10, "-10"), ("42", "42"), (-32768, "-32768")],
)
def test_namespace_str(ns, expected):
    assert namespace_str(ns) == expected


@pytest.mark.parametrize("ns", [32768, "abc", "ALL"])
def test_namespace_str_rejects(ns):
    with pytest.raises(ValueError):
        namespace_str(ns)


@pytest.mark.parametrize(
    "built,expected",
    [
        (store_message(0, TS), b"store1700000000123"),
        (store_message(-42, TS), b"store-421700000000123"),  # network-tests: f"store-42{ts}"
        (retrieve_message(40, TS), b"retrieve401700000000123"),
        (retrieve_message(None, TS), b"retrieve1700000000123"),
        (delete_message([H1, H2]), f"delete{H1}{H2}".encode()),
        (delete_message(H1), f"delete{H1}".encode()),
        (delete_all_message("all", TS), b"delete_allall1700000000123"),
        (delete_all_message(0, TS), b"delete_all1700000000123"),
        (delete_before_message(3, TS), b"delete_before31700000000123"),
        (expire_all_message(0, TS), b"expire_all1700000000123"),
        (expire_all_message("all", TS), b"expire_allall1700000000123"),
        (expire_message("", TS, [H1]), f"expire1700000000123{H1}".encode()),
        (expire_message("shorten", TS, [H1, H2]), f"expireshorten1700000000123{H1}{H2}".encode()),
        (expire_message("extend", TS, [H1]), f"expireextend1700000000123{H1}".encode()),
        (get_expiries_message(TS, [H1, H2]), f"get_expiries1700000000123{H1}{H2}".encode()),
    ],
)
def test_message_builders(built, expected):
    assert isinstance(built, bytes)
    assert built == expected


def test_builders_reject_bad_values():
    with pytest.raises(ValueError):
        expire_message("longer", TS, [H1])
    with pytest.raises(ValueError):
        store_message(0, "1700000000123")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        retrieve_message(0, True)  # type: ignore[arg-type]


# --- 05 accounts -------------------------------------------------------------------------------

@pytest.fixture
def alice() -> Identity:
    return Identity.from_seed(bytes(range(32)))


def test_05_request_with_pubkey_ed25519_verifies(alice):
    msg = store_message(0, TS)
    sig = sign_request(alice, msg)
    assert len(base64.b64decode(sig)) == 64
    verify_request(SessionID.parse(alice.session_id), alice.ed25519_hex, msg, sig)
    # string pubkey, uppercase pubkey_ed25519 (session-desktop sends toUpperCase())
    verify_request(alice.session_id, alice.ed25519_hex.upper(), msg, sig)


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: base64.b64encode(s).decode(),
        lambda s: base64.b64encode(s).decode().rstrip("="),
        lambda s: base64.urlsafe_b64encode(s).decode(),
        lambda s: base64.urlsafe_b64encode(s).decode().rstrip("="),
    ],
    ids=["std", "std-unpadded", "urlsafe", "urlsafe-unpadded"],
)
def test_base64_variants_accepted(alice, encode):
    msg = retrieve_message(0, TS)
    raw = alice.sign(msg)
    verify_request(alice.session_id, alice.ed25519_hex, msg, encode(raw))


def test_hex_signature_rejected_like_the_storage_server(alice):
    msg = retrieve_message(0, TS)
    with pytest.raises(SignatureError) as exc:
        verify_request(alice.session_id, alice.ed25519_hex, msg, alice.sign(msg).hex())
    assert exc.value.status == 400


@pytest.mark.parametrize("bad", ["", "abc", "!" * 86, "A" * 87, "A" * 86 + "=", None])
def test_malformed_signature_is_400(alice, bad):
    with pytest.raises(SignatureError) as exc:
        verify_request(alice.session_id, alice.ed25519_hex, b"x", bad)  # type: ignore[arg-type]
    assert exc.value.status == 400


def test_wrong_pubkey_ed25519_rejected(alice):
    mallory = Identity.generate()
    msg = store_message(0, TS)
    # mallory signs with her own key but claims alice's account
    with pytest.raises(SignatureError, match="does not correspond") as exc:
        verify_request(alice.session_id, mallory.ed25519_hex, msg, sign_request(mallory, msg))
    assert exc.value.status == 401
    # alice's signature with mallory's pubkey_ed25519 is rejected too
    with pytest.raises(SignatureError):
        verify_request(alice.session_id, mallory.ed25519_hex, msg, sign_request(alice, msg))


@pytest.mark.parametrize("bad", ["00" * 31, "zz" * 32, "00" * 33])
def test_malformed_pubkey_ed25519_is_400(alice, bad):
    msg = store_message(0, TS)
    with pytest.raises(SignatureError) as exc:
        verify_request(alice.session_id, bad, msg, sign_request(alice, msg))
    assert exc.value.status == 400


def test_05_real_account_without_pubkey_ed25519_fails_with_hint(alice):
    msg = store_message(0, TS)
    with pytest.raises(SignatureError, match="pubkey_ed25519") as exc:
        verify_request(alice.session_id, None, msg, sign_request(alice, msg))
    assert exc.value.status == 401


def test_05_with_ed25519_key_bytes_and_no_pubkey_ed25519_verifies():
    # what the storage server's own network tests do: "05" + Ed25519 verify key, no pubkey_ed25519
    sk = SigningKey(bytes(range(32)))
    pubkey = "05" + sk.verify_key.encode().hex()
    msg = store_message(-42, TS)
    sig = base64.b64encode(sk.sign(msg).signature).decode()
    verify_request(pubkey, None, msg, sig)


def test_tampered_message_or_signature_rejected(alice):
    msg = delete_message([H1])
    raw = bytearray(alice.sign(msg))
    with pytest.raises(SignatureError, match="verification failed"):
        verify_request(alice.session_id, alice.ed25519_hex, delete_message([H2]), base64.b64encode(raw).decode())
    raw[10] ^= 0x01
    with pytest.raises(SignatureError, match="verification failed"):
        verify_request(alice.session_id, alice.ed25519_hex, msg, base64.b64encode(raw).decode())


# --- 03 (and other Ed25519) prefixes ----------------------------------------------------------

def test_03_group_verifies_with_key_itself():
    group = Identity.generate()
    sid = SessionID(prefix=0x03, key=group.ed25519_public)
    msg = retrieve_message(11, TS)
    sig = sign_request(group, msg)
    verify_request(sid, None, msg, sig)
    verify_request(sid.hex, "", msg, sig)  # empty pubkey_ed25519 is "absent"
    other = Identity.generate()
    with pytest.raises(SignatureError, match="verification failed"):
        verify_request(sid, None, msg, sign_request(other, msg))


def test_pubkey_ed25519_only_permitted_for_05():
    group = Identity.generate()
    sid = SessionID(prefix=0x03, key=group.ed25519_public)
    msg = retrieve_message(11, TS)
    with pytest.raises(SignatureError, match="only permitted for 05") as exc:
        verify_request(sid, group.ed25519_hex, msg, sign_request(group, msg))
    assert exc.value.status == 400


def test_signature_error_is_value_error():
    assert issubclass(SignatureError, ValueError)


# --- the storage server's error texts ---------------------------------------------------------

@pytest.mark.parametrize("bad", ["AAAA", "!" * 86, "A" * 87, "A" * 86 + "=", "A" * 88])
def test_malformed_signature_text_is_the_storage_servers(alice, bad):
    with pytest.raises(SignatureError) as exc:
        verify_request(alice.session_id, alice.ed25519_hex, b"x", bad)
    assert exc.value.reason == "invalid signature: expected base64 encoded Ed25519 signature"


@pytest.mark.parametrize("bad,text", [
    ("00" * 31, "Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey"),
    ("00" * 33, "Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey"),
    ("zz" * 32, "invalid pubkey_ed25519: value is not hex"),
])
def test_malformed_pubkey_ed25519_texts_are_the_storage_servers(alice, bad, text):
    with pytest.raises(SignatureError) as exc:
        decode_pubkey_ed25519(bad)
    assert (exc.value.status, exc.value.reason) == (400, text)


def test_pubkey_ed25519_as_32_raw_bytes_is_accepted():
    # client_rpc_endpoints.cpp load_pk_signature: "64 hex char or 32 byte pubkey"
    raw = "A" * 32
    assert decode_pubkey_ed25519(raw) == raw.encode()


# --- group subaccounts -------------------------------------------------------------------------

def make_sub(owner: Identity, flags: int, prefix: int = 0x03) -> tuple[Identity, SignedSubaccount]:
    member = Identity.generate()
    token = SubaccountToken.make(prefix, flags, member.ed25519_public)
    return member, SignedSubaccount(token, sign_token(owner, token))


def test_subaccount_token_layout_and_encodings():
    member = Identity.generate()
    token = SubaccountToken.make(0x03, READ | WRITE, member.ed25519_public)
    assert token.raw == b"\x03\x03\x00\x00" + member.ed25519_public
    assert (token.prefix, token.flags, token.pubkey) == (3, 3, member.ed25519_public)
    assert SubaccountToken.parse(token.b64) == token == SubaccountToken.parse(token.raw.hex())
    assert SubaccountToken.parse(base64.urlsafe_b64encode(token.raw).decode()) == token
    for bad in ("", "zz" * 36, token.b64[:-4], token.raw.hex()[:-2], "!" * 48):
        with pytest.raises(SubaccountError):
            SubaccountToken.parse(bad)


def test_subaccount_signs_requests_for_the_group():
    group = Identity.generate()
    sid = SessionID(prefix=0x03, key=group.ed25519_public)
    member, sub = make_sub(group, READ | WRITE)
    msg = retrieve_message(42, TS)
    verify_request(sid, None, msg, sign_request(member, msg), subaccount=sub, required_access=READ)
    # the owner's own signature is not what a subaccount request carries
    with pytest.raises(SignatureError, match="verification failed"):
        verify_request(sid, None, msg, sign_request(group, msg), subaccount=sub, required_access=READ)


@pytest.mark.parametrize("flags,required,ok", [
    (READ, READ, True), (READ, WRITE, False), (READ | WRITE, WRITE, True),
    (WRITE, WRITE | DELETE, False), (READ | WRITE | DELETE, WRITE | DELETE, True), (0, 0, True),
])
def test_subaccount_permissions(flags, required, ok):
    group = Identity.generate()
    sid = SessionID(prefix=0x03, key=group.ed25519_public)
    member, sub = make_sub(group, flags)
    msg = store_message(11, TS)
    if ok:
        verify_request(sid, None, msg, sign_request(member, msg), subaccount=sub, required_access=required)
    else:
        with pytest.raises(SignatureError, match="missing the required permissions"):
            verify_request(sid, None, msg, sign_request(member, msg), subaccount=sub,
                           required_access=required)


def test_subaccount_network_prefix_and_any_prefix():
    owner = Identity.generate()
    sid = SessionID(prefix=0x05, key=owner.ed25519_public)  # "ed05" style account
    member, sub = make_sub(owner, READ, prefix=0x03)
    msg = retrieve_message(0, TS)
    with pytest.raises(SignatureError, match="prefix mismatch"):
        verify_request(sid, None, msg, sign_request(member, msg), subaccount=sub, required_access=READ)
    member, sub = make_sub(owner, READ | ANY_PREFIX, prefix=0x03)
    verify_request(sid, None, msg, sign_request(member, msg), subaccount=sub, required_access=READ)


def test_subaccount_token_must_be_signed_by_the_owner():
    group, intruder = Identity.generate(), Identity.generate()
    sid = SessionID(prefix=0x03, key=group.ed25519_public)
    member, forged = make_sub(intruder, READ | WRITE | DELETE)
    msg = delete_message([H1])
    with pytest.raises(SignatureError, match="token signature"):
        verify_request(sid, None, msg, sign_request(member, msg), subaccount=forged, required_access=DELETE)


def test_subaccount_of_a_05_account_is_signed_with_pubkey_ed25519(alice):
    member, sub = make_sub(alice, READ, prefix=0x05)
    msg = retrieve_message(0, TS)
    verify_request(alice.session_id, alice.ed25519_hex, msg, sign_request(member, msg), subaccount=sub,
                   required_access=READ)


def test_revocation_message_builders():
    t1, t2 = bytes(range(36)), bytes(range(36, 72))
    assert revoke_subaccount_message(TS, [t1, t2]) == b"revoke_subaccount1700000000123" + t1 + t2
    assert revoke_subaccount_message(TS, SubaccountToken(t1)) == b"revoke_subaccount1700000000123" + t1
    assert unrevoke_subaccount_message(TS, [t1]) == b"unrevoke_subaccount1700000000123" + t1
    assert revoked_subaccounts_message(TS) == b"revoked_subaccounts1700000000123"
