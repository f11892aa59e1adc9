"""nodes.protocol.message: Session 1-to-1 message encryption."""

from __future__ import annotations

import base64

import pytest
from nacl import bindings

from nodes.protocol.keys import Identity, SessionID
from nodes.protocol.message import (
    Content,
    Envelope,
    MessageError,
    ReceivedMessage,
    WebSocketMessage,
    WebSocketRequestMessage,
    decrypt_message,
    encrypt_message,
    pad,
    unpad,
)

pytestmark = pytest.mark.unit

TS = 1_700_000_000_123


@pytest.fixture
def alice() -> Identity:
    return Identity.from_seed(bytes(range(32)))


@pytest.fixture
def bob() -> Identity:
    return Identity.from_seed(bytes(range(32, 64)))


# --- padding -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "n,padded_len",
    [(0, 159), (1, 159), (157, 159), (158, 159), (159, 319), (317, 319), (318, 319), (319, 479)],
)
def test_pad_lengths(n, padded_len):
    data = bytes([0x41]) * n
    padded = pad(data)
    assert len(padded) == padded_len
    assert padded[:n] == data
    assert padded[n] == 0x80
    assert set(padded[n + 1:]) <= {0}
    assert unpad(padded) == data


def test_pad_boundary_158_has_no_zero_bytes():
    padded = pad(b"\x01" * 158)
    assert padded == b"\x01" * 158 + b"\x80"


def test_unpad_keeps_data_ending_in_zero_and_0x80():
    data = b"abc\x80\x00"
    assert unpad(pad(data)) == data


def test_unpad_lenient_and_strict():
    assert unpad(b"no padding") == b"no padding"  # session-desktop lets this through
    with pytest.raises(MessageError, match="terminator"):
        unpad(b"no padding\x00\x00", strict=True)
    with pytest.raises(MessageError, match="empty or all zero"):
        unpad(b"\x00\x00\x00")
    with pytest.raises(MessageError):
        unpad(b"")


# --- round trip and structure ------------------------------------------------------------------

def test_round_trip(alice, bob):
    data = encrypt_message(alice, bob.session_id, "hello ✓ bob", timestamp_ms=TS, display_name="Alice")
    msg = decrypt_message(bob, data)
    assert msg == ReceivedMessage(
        sender=alice.session_id, body="hello ✓ bob", timestamp_ms=TS,
        envelope_timestamp_ms=TS, display_name="Alice")


def test_round_trip_with_session_id_object_and_no_display_name(alice, bob):
    data = encrypt_message(alice, SessionID.parse(bob.session_id), "", timestamp_ms=TS)
    msg = decrypt_message(bob, data)
    assert msg.display_name is None and msg.body == "" and msg.sender == alice.session_id


def test_wire_structure_matches_session_desktop(alice, bob):
    data = encrypt_message(alice, bob.session_id, "hi", timestamp_ms=TS)
    wsm = WebSocketMessage()
    wsm.ParseFromString(data)
    assert wsm.type == 1  # REQUEST
    req = wsm.request
    assert (req.verb, req.path) == ("PUT", "/api/v1/message")
    assert req.HasField("id") and req.id == 0  # protobufjs writes id=0 explicitly
    env = Envelope()
    env.ParseFromString(req.body)
    assert env.type == 6  # SESSION_MESSAGE
    assert env.timestamp == TS
    assert not env.HasField("source")  # desktop sets source only for closed groups
    # the sealed box is for bob: 48 bytes overhead, padded content + 32-byte key + 64-byte sig
    assert (len(env.content) - 48 - 32 - 64) % 160 == 159
    plain = bindings.crypto_box_seal_open(env.content, bob.x25519_public, bob.x25519_secret)
    assert plain[-96:-64] == alice.ed25519_public
    content = Content()
    content.ParseFromString(unpad(plain[:-96]))
    assert content.dataMessage.body == "hi" and content.dataMessage.timestamp == TS


def test_protobuf_field_numbers_on_the_wire():
    req = WebSocketRequestMessage()
    req.verb = "PUT"
    req.id = 0
    assert req.SerializeToString() == b"\x0a\x03PUT\x20\x00"  # verb=1 (string), id=4 (varint)
    wsm = WebSocketMessage()
    wsm.type = 1
    wsm.request.path = "/"
    assert wsm.SerializeToString() == b"\x08\x01\x12\x03\x12\x01/"  # type=1, request=2, path=2
    env = Envelope()
    env.type = 6
    env.source = "s"
    env.timestamp = 1
    env.content = b"c"
    assert env.SerializeToString() == b"\x08\x06\x12\x01s\x28\x01\x42\x01c"  # 1, 2, 5, 8
    content = Content()
    content.dataMessage.body = "b"
    content.dataMessage.timestamp = 2
    content.dataMessage.profile.displayName = "n"
    content.dataMessage.profile.profilePicture = "p"
    # dataMessage=1 { body=1, timestamp=7, profile=101 (tag 0xaa 0x06) { displayName=1, picture=2 } }
    assert content.SerializeToString() == (
        b"\x0a\x0e" b"\x0a\x01b" b"\x38\x02" b"\xaa\x06\x06" b"\x0a\x01n" b"\x12\x01p")


# --- failures ----------------------------------------------------------------------------------

def test_wrong_recipient_cannot_decrypt(alice, bob):
    data = encrypt_message(alice, bob.session_id, "secret", timestamp_ms=TS)
    with pytest.raises(MessageError, match="could not decrypt"):
        decrypt_message(Identity.generate(), data)


def test_flipped_byte_in_sealed_content_rejected(alice, bob):
    data = encrypt_message(alice, bob.session_id, "hi", timestamp_ms=TS)
    wsm = WebSocketMessage()
    wsm.ParseFromString(data)
    env = Envelope()
    env.ParseFromString(wsm.request.body)
    damaged = bytearray(env.content)
    damaged[60] ^= 0x01
    env.content = bytes(damaged)
    wsm.request.body = env.SerializeToString()
    with pytest.raises(MessageError, match="could not decrypt"):
        decrypt_message(bob, wsm.SerializeToString())


def _seal(recipient: Identity, plaintext: bytes) -> bytes:
    env = Envelope()
    env.type = 6
    env.timestamp = TS
    env.content = bindings.crypto_box_seal(plaintext, recipient.x25519_public)
    wsm = WebSocketMessage()
    wsm.type = 1
    wsm.request.verb = "PUT"
    wsm.request.body = env.SerializeToString()
    return wsm.SerializeToString()


def _padded_content(body: str) -> bytes:
    content = Content()
    content.dataMessage.body = body
    content.dataMessage.timestamp = TS
    return pad(content.SerializeToString())


def test_forged_signature_rejected(alice, bob):
    mallory = Identity.generate()
    padded = _padded_content("I am alice")
    # mallory claims alice's Ed25519 key but can only sign with her own
    sig = mallory.sign(padded + alice.ed25519_public + bob.x25519_public)
    with pytest.raises(MessageError, match="signature"):
        decrypt_message(bob, _seal(bob, padded + alice.ed25519_public + sig))


def test_signature_for_another_recipient_rejected(alice, bob):
    carol = Identity.generate()
    padded = _padded_content("for carol")
    sig = alice.sign(padded + alice.ed25519_public + carol.x25519_public)
    # re-sealed for bob: the signature binds the intended recipient, so bob must reject it
    with pytest.raises(MessageError, match="signature"):
        decrypt_message(bob, _seal(bob, padded + alice.ed25519_public + sig))


def test_valid_hand_built_message_accepted(alice, bob):
    padded = _padded_content("hand built")
    sig = alice.sign(padded + alice.ed25519_public + bob.x25519_public)
    msg = decrypt_message(bob, _seal(bob, padded + alice.ed25519_public + sig))
    assert msg.sender == alice.session_id and msg.body == "hand built"


def test_too_short_plaintext_rejected(bob):
    with pytest.raises(MessageError, match="too short"):
        decrypt_message(bob, _seal(bob, b"x" * 95))


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"\xff\xff\xff", "not a valid protobuf"),
        (b"", "no request body"),
        (b"\x08\x01", "no request body"),
    ],
)
def test_garbage_rejected(bob, data, reason):
    with pytest.raises(MessageError, match=reason):
        decrypt_message(bob, data)


def test_closed_group_envelope_rejected(alice, bob):
    data = encrypt_message(alice, bob.session_id, "hi", timestamp_ms=TS)
    wsm = WebSocketMessage()
    wsm.ParseFromString(data)
    env = Envelope()
    env.ParseFromString(wsm.request.body)
    env.type = 7
    wsm.request.body = env.SerializeToString()
    with pytest.raises(MessageError, match="envelope type"):
        decrypt_message(bob, wsm.SerializeToString())


def test_content_without_data_message_rejected(alice, bob):
    padded = pad(b"")  # an empty Content
    sig = alice.sign(padded + alice.ed25519_public + bob.x25519_public)
    with pytest.raises(MessageError, match="dataMessage"):
        decrypt_message(bob, _seal(bob, padded + alice.ed25519_public + sig))


def test_encrypt_rejects_non_05_recipient_and_bad_timestamp(alice):
    group = "03" + "11" * 32
    with pytest.raises(MessageError, match="05 Session ID"):
        encrypt_message(alice, group, "hi", timestamp_ms=TS)
    with pytest.raises(MessageError, match="invalid recipient"):
        encrypt_message(alice, "05abc", "hi", timestamp_ms=TS)
    with pytest.raises(MessageError, match="timestamp_ms"):
        encrypt_message(alice, alice.session_id, "hi", timestamp_ms=-1)


def test_store_data_is_base64_of_the_message(alice, bob):
    data = encrypt_message(alice, bob.session_id, "x" * 1000, timestamp_ms=TS)
    stored = base64.b64encode(data).decode()
    assert decrypt_message(bob, base64.b64decode(stored)).body == "x" * 1000
