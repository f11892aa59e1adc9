"""nodes.protocol.attachment and the AttachmentPointer of nodes.protocol.message."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.protocol.attachment import (
    IV_BYTES,
    KEY_BYTES,
    MAC_BYTES,
    MAX_ATTACHMENT_BYTES,
    AttachmentError,
    decrypt_attachment,
    decrypt_blob,
    encrypt_attachment,
    encrypt_blob,
    encrypted_blob_length,
    largest_plaintext_within,
    pad_attachment,
    padded_attachment_length,
    unpad_attachment,
)
from nodes.protocol.keys import Identity
from nodes.protocol.message import (
    AttachmentPointer,
    AttachmentRef,
    Content,
    MessageError,
    decrypt_message,
    encrypt_message,
)

pytestmark = pytest.mark.unit

# Known-answer vectors of the Signal/Session attachment scheme (AES-256-CBC + HMAC-SHA256 over
# IV ‖ C, digest = SHA-256 of IV ‖ C ‖ MAC), as published with an independent implementation's
# tests: plaintext "Test test test\n".
PLAIN = b"Test test test\n"
ENC_KEYS = base64.b64decode(
    "Blav82bt/R2jUI7Ktzex3Uvytbe162UwjA5dLelBexoS3xBnX8Q5XQ/zpBUjwrUyiB+GNbXoTKc1M4Hrwap9AQ==")
ENC_IV = base64.b64decode("U5ouP2SWovYPniAr6qxHPw==")
ENC_BLOB = base64.b64decode(
    "U5ouP2SWovYPniAr6qxHP4xu0XDius6q8WMaLsdhBpmE+KU7PR5oSnprVuRvj+bNyMsLUGrUfgw46ritOsKATg==")
ENC_DIGEST = base64.b64decode("mcY/UBU/ayKFABIlVI1C1rgN2OSIOOjP6469yBO5eUU=")
DEC_BLOB = base64.b64decode(
    "G8BvYIsvtjKblHCJ6dAjt1TUjpdSRL8N7grQHGW+a+QvL/ktVX2HSPH2VHFEKyeT+FAFSmoSwaXqkVXkYhWYZQ==")
DEC_KEYS = base64.b64decode(
    "Xi4watnUBQ9u5zuKq47olwP1AUK7SNx5YGi5Q1GztEavDBHxMpiQM115FQ9P6YoOqJQfELHfj8WUAvVJb7Tfqg==")
DEC_DIGEST = base64.b64decode("A9Bsw1oTCgtSMwSI1+PuVz/u8uo+RUP7qryt8xuRspo=")


# --- the cipher --------------------------------------------------------------------------------

def test_encrypt_blob_matches_the_known_vector() -> None:
    blob, digest = encrypt_blob(PLAIN, ENC_KEYS, ENC_IV)
    assert blob == ENC_BLOB
    assert digest == ENC_DIGEST
    assert blob[:IV_BYTES] == ENC_IV  # layout: IV first, MAC last
    assert len(blob) == IV_BYTES + 16 + MAC_BYTES


def test_decrypt_blob_matches_the_known_vector() -> None:
    assert decrypt_blob(DEC_BLOB, DEC_KEYS, DEC_DIGEST) == PLAIN


def test_digest_is_sha256_of_the_whole_blob() -> None:
    enc = encrypt_attachment(b"x" * 1000)
    assert enc.digest == hashlib.sha256(enc.blob).digest()


@pytest.mark.parametrize("where", [0, IV_BYTES, -MAC_BYTES - 1, -1])
def test_a_flipped_byte_anywhere_fails_the_mac(where: int) -> None:
    enc = encrypt_attachment(b"hello attachment")
    blob = bytearray(enc.blob)
    blob[where] ^= 0x01
    with pytest.raises(AttachmentError, match="MAC does not verify"):
        decrypt_attachment(bytes(blob), key=enc.key, digest=enc.digest, size=enc.size)


def test_a_wrong_digest_fails_even_when_the_mac_holds() -> None:
    enc = encrypt_attachment(b"hello attachment")
    bad = bytes([enc.digest[0] ^ 1]) + enc.digest[1:]
    with pytest.raises(AttachmentError, match="digest does not match"):
        decrypt_attachment(enc.blob, key=enc.key, digest=bad, size=enc.size)


def test_the_wrong_key_fails_the_mac() -> None:
    enc = encrypt_attachment(b"hello attachment")
    other = bytes(b ^ 0xFF for b in enc.key)
    with pytest.raises(AttachmentError, match="MAC"):
        decrypt_attachment(enc.blob, key=other, digest=enc.digest, size=enc.size)


def test_bad_key_length_and_short_blob_are_named() -> None:
    with pytest.raises(AttachmentError, match="64 bytes"):
        encrypt_blob(b"x", b"k" * 32, b"i" * 16)
    with pytest.raises(AttachmentError, match="too short"):
        decrypt_blob(b"\x00" * 47, b"k" * KEY_BYTES, None)


# --- padding to size buckets -------------------------------------------------------------------

# Expected values computed with production's JavaScript expression run by node (Math.pow/Math.log)
@pytest.mark.parametrize(("n", "expected"), [
    (0, 541), (1, 541), (10, 541), (541, 541), (542, 568), (1000, 1020),
    (100_000, 100_155), (9_500_000, 9_828_080), (MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_BYTES),
    (9_900_000, MAX_ATTACHMENT_BYTES),  # its bucket is over 10 MB: capped at the limit
])
def test_padded_length_buckets(n: int, expected: int) -> None:
    assert padded_attachment_length(n) == expected


def test_padding_is_zeros_and_the_size_field_removes_it() -> None:
    padded = pad_attachment(bytes(range(10)))
    assert len(padded) == 541
    assert padded[:10] == bytes(range(10)) and set(padded[10:]) == {0}
    assert unpad_attachment(padded, 10) == bytes(range(10))
    with pytest.raises(AttachmentError, match="size field"):
        unpad_attachment(padded, 542)


def test_encrypted_attachment_hides_the_size_in_its_bucket() -> None:
    small, other = encrypt_attachment(b"a" * 20), encrypt_attachment(b"b" * 500)
    assert len(small.blob) == len(other.blob)  # both in the 541-byte bucket
    assert (small.size, other.size) == (20, 500)
    # 541 plaintext bytes + PKCS#7 to 544, plus IV and MAC
    assert len(small.blob) == IV_BYTES + 544 + MAC_BYTES


def test_over_the_limit_is_refused_and_at_the_limit_is_not() -> None:
    with pytest.raises(AttachmentError, match="over Session's limit"):
        encrypt_attachment(bytes(MAX_ATTACHMENT_BYTES + 1))
    enc = encrypt_attachment(bytes(MAX_ATTACHMENT_BYTES))
    assert enc.size == MAX_ATTACHMENT_BYTES
    assert len(enc.blob) == IV_BYTES + MAX_ATTACHMENT_BYTES + 16 + MAC_BYTES


@pytest.mark.parametrize("n", [0, 1, 540, 541, 542, 5_000, 123_456])
def test_encrypted_blob_length_is_the_real_one(n: int) -> None:
    assert len(encrypt_attachment(bytes(n)).blob) == encrypted_blob_length(n)


def test_largest_plaintext_within_a_server_limit() -> None:
    limit = 6_000_000
    n = largest_plaintext_within(limit)
    assert encrypted_blob_length(n) <= limit < encrypted_blob_length(n + 1)
    assert largest_plaintext_within(10) == -1


def test_decrypt_without_size_keeps_the_padding() -> None:
    enc = encrypt_attachment(b"abc")
    assert decrypt_attachment(enc.blob, key=enc.key, digest=enc.digest, size=None) == (
        b"abc" + bytes(538))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4000))
def test_round_trip_property(data: bytes) -> None:
    enc = encrypt_attachment(data)
    assert len(enc.key) == KEY_BYTES
    assert len(enc.blob) == IV_BYTES + (enc.padded_size // 16 + 1) * 16 + MAC_BYTES
    assert decrypt_attachment(enc.blob, key=enc.key, digest=enc.digest, size=enc.size) == data


# --- AttachmentPointer in a DataMessage --------------------------------------------------------

def _ref(**over: object) -> AttachmentRef:
    fields: dict[str, object] = dict(
        file_id=2 ** 63 + 5, url="http://127.1.0.3:8080/file/9223372036854775813",
        key=bytes(range(64)), digest=bytes(range(32)), size=12_345,
        content_type="image/jpeg", file_name="photo.jpg")
    fields.update(over)
    return AttachmentRef(**fields)  # type: ignore[arg-type]


def test_attachment_pointer_field_numbers_are_productions() -> None:
    fields = {f.name: (f.number, f.type) for f in AttachmentPointer.DESCRIPTOR.fields}
    fd = AttachmentPointer.DESCRIPTOR.fields_by_name["id"]
    assert fd.type == fd.TYPE_FIXED64
    assert {n: fields[n][0] for n in ("id", "contentType", "key", "size", "thumbnail", "digest",
                                      "fileName", "flags", "width", "height", "caption", "url")} == {
        "id": 1, "contentType": 2, "key": 3, "size": 4, "thumbnail": 5, "digest": 6,
        "fileName": 7, "flags": 8, "width": 9, "height": 10, "caption": 11, "url": 101}
    dm = Content.DESCRIPTOR.fields_by_name["dataMessage"].message_type
    att = dm.fields_by_name["attachments"]
    assert (att.number, att.message_type.name) == (2, "AttachmentPointer")  # repeated: see below


def test_pointer_wire_bytes() -> None:
    # id as fixed64 (tag 0x09, 8 little-endian bytes), size as varint (tag 0x20)
    wire = AttachmentRef(file_id=1, url="", key=b"", digest=b"", size=300).to_proto()
    raw = wire.SerializeToString()
    assert raw.startswith(b"\x09\x01\x00\x00\x00\x00\x00\x00\x00")
    assert b"\x20\xac\x02" in raw


def test_message_carries_attachments_both_ways() -> None:
    alice = Identity.from_seed(bytes(range(32)))
    bob = Identity.from_seed(bytes(range(32, 64)))
    refs = [_ref(), _ref(file_id=7, content_type=None, file_name=None, size=0)]
    data = encrypt_message(alice, bob.session_id, "see attached", timestamp_ms=1,
                           attachments=refs)
    got = decrypt_message(bob, data)
    assert got.body == "see attached"
    assert got.attachments == tuple(refs)
    assert decrypt_message(bob, encrypt_message(alice, bob.session_id, "x",
                                                timestamp_ms=1)).attachments == ()


def test_out_of_range_pointer_fields_are_refused() -> None:
    alice = Identity.from_seed(bytes(range(32)))
    bob = Identity.from_seed(bytes(range(32, 64)))
    with pytest.raises(MessageError, match="uint32"):
        encrypt_message(alice, bob.session_id, "x", timestamp_ms=1,
                        attachments=[_ref(size=2 ** 32)])
    with pytest.raises(MessageError, match="fixed64"):
        encrypt_message(alice, bob.session_id, "x", timestamp_ms=1,
                        attachments=[_ref(file_id=-1)])
