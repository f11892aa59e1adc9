"""nodes.protocol.onion: frames, ciphers, client build / node peel, responses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct

import pytest
from nacl import bindings

from nodes.protocol.keys import Identity
from nodes.protocol.onion import (
    ENC_AES_GCM,
    ENC_XCHACHA20,
    OnionError,
    OnionHop,
    OnionRequest,
    build_onion_request,
    decode_frame,
    decrypt_layer,
    decrypt_onion_response,
    encode_frame,
    encrypt_layer,
    encrypt_response,
    layer_key,
    parse_enc_type,
    peel_layer,
    relay_info,
    shared_secret,
)

pytestmark = pytest.mark.unit

# PROTOCOL.md §5 known answer (also the storage server's unit_test/encrypt.cpp)
ALICE_SECRET = bytes.fromhex("7d446468c186d6fb3c83365ab77a37b1f9fa3e59eb9788a40ae2e9560f196f30")
BOB_SECRET = bytes.fromhex("f512f68e81a932aa2ff6d8723baa260a43a6f789d61c91b71f73e4f284e3600a")
KAT_CIPHERTEXT = bytes.fromhex(
    "000102030405060708090a0b254141d0fb10f0f25e1e316f3f47bf675d49eb6c238bd3c18b86df3fc8d5687cc64c7a")
KAT_PLAINTEXT = b"Grumpy cat says no!"

ALICE_PUBLIC = bindings.crypto_scalarmult_base(ALICE_SECRET)
BOB_PUBLIC = bindings.crypto_scalarmult_base(BOB_SECRET)

BOTH = [ENC_AES_GCM, ENC_XCHACHA20]


def _kat_key() -> bytes:
    return layer_key(ENC_AES_GCM, shared_secret(BOB_SECRET, ALICE_PUBLIC), ALICE_PUBLIC, BOB_PUBLIC)


# --- enc_type ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value,expected",
    [
        (None, ENC_AES_GCM), ("", ENC_AES_GCM), ("aes-gcm", ENC_AES_GCM), ("gcm", ENC_AES_GCM),
        ("xchacha20", ENC_XCHACHA20), ("xchacha20-poly1305", ENC_XCHACHA20),
    ],
)
def test_parse_enc_type(value, expected):
    assert parse_enc_type(value) == expected


@pytest.mark.parametrize("value", ["aes-cbc", "AES-GCM", "chacha20", 1])
def test_parse_enc_type_rejects_unknown(value):
    with pytest.raises(OnionError, match="Invalid encryption type"):
        parse_enc_type(value)  # type: ignore[arg-type]


# --- known answer and ciphers ------------------------------------------------------------------

def test_aes_gcm_known_answer():
    assert decrypt_layer(ENC_AES_GCM, _kat_key(), KAT_CIPHERTEXT) == KAT_PLAINTEXT
    # same key from alice's side (X25519 is symmetric)
    assert shared_secret(ALICE_SECRET, BOB_PUBLIC) == shared_secret(BOB_SECRET, ALICE_PUBLIC)


@pytest.mark.parametrize("index", [0, 12, len(KAT_CIPHERTEXT) - 1])
def test_aes_gcm_known_answer_flipped_bit_fails(index):
    damaged = bytearray(KAT_CIPHERTEXT)
    damaged[index] ^= 0x01
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(ENC_AES_GCM, _kat_key(), bytes(damaged))


def test_aes_gcm_truncated_fails():
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(ENC_AES_GCM, _kat_key(), KAT_CIPHERTEXT[:27])


@pytest.mark.parametrize("enc", BOTH)
def test_encrypt_decrypt_layer_round_trip_and_overhead(enc):
    key = layer_key(enc, shared_secret(ALICE_SECRET, BOB_PUBLIC), ALICE_PUBLIC, BOB_PUBLIC)
    ct = encrypt_layer(enc, key, KAT_PLAINTEXT)
    assert len(ct) == len(KAT_PLAINTEXT) + (28 if enc == ENC_AES_GCM else 40)
    assert decrypt_layer(enc, key, ct) == KAT_PLAINTEXT
    assert encrypt_layer(enc, key, KAT_PLAINTEXT) != ct  # fresh IV / nonce each time


def test_xchacha20_key_order_matters():
    shared = shared_secret(ALICE_SECRET, BOB_PUBLIC)
    client_first = layer_key(ENC_XCHACHA20, shared, ALICE_PUBLIC, BOB_PUBLIC)
    assert client_first == hashlib.blake2b(
        shared + ALICE_PUBLIC + BOB_PUBLIC, digest_size=32).digest()
    node_first = layer_key(ENC_XCHACHA20, shared, BOB_PUBLIC, ALICE_PUBLIC)
    ct = encrypt_layer(ENC_XCHACHA20, client_first, KAT_PLAINTEXT)
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(ENC_XCHACHA20, node_first, ct)


def test_aes_gcm_key_is_hmac_loki():
    shared = shared_secret(ALICE_SECRET, BOB_PUBLIC)
    assert layer_key("gcm", shared, ALICE_PUBLIC, BOB_PUBLIC) == hmac.new(
        b"LOKI", shared, hashlib.sha256).digest()


@pytest.mark.parametrize("enc", BOTH)
def test_decrypt_layer_wrong_key_or_garbage(enc):
    key = bytes(32)
    ct = encrypt_layer(enc, key, b"data")
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(enc, bytes([1]) + bytes(31), ct)
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(enc, key, b"")
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        decrypt_layer(enc, b"short", ct)


def test_shared_secret_rejects_low_order_point_and_bad_sizes():
    with pytest.raises(OnionError):
        shared_secret(ALICE_SECRET, bytes(32))
    with pytest.raises(OnionError):
        shared_secret(ALICE_SECRET[:31], BOB_PUBLIC)


# --- frames ------------------------------------------------------------------------------------

def test_frame_layout():
    frame = encode_frame(b"\x01\x02\x03", {"ephemeral_key": "ab", "enc_type": "aes-gcm"})
    assert frame[:4] == struct.pack("<I", 3)
    assert frame[4:7] == b"\x01\x02\x03"
    assert json.loads(frame[7:]) == {"ephemeral_key": "ab", "enc_type": "aes-gcm"}
    assert b" " not in frame[7:]  # compact JSON like nlohmann dump()
    assert decode_frame(frame) == (b"\x01\x02\x03", {"ephemeral_key": "ab", "enc_type": "aes-gcm"})


def test_frame_empty_blob():
    assert decode_frame(encode_frame(b"", {"headers": ""})) == (b"", {"headers": ""})


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "length prefix"),
        (b"\x05\x00\x00", "length prefix"),
        (struct.pack("<I", 10) + b"abc{}", "expected >= 10"),
        (struct.pack("<I", 0xFFFFFFFF) + b"{}", "expected >="),
        (struct.pack("<I", 1) + b"a", "does not parse"),
        (struct.pack("<I", 1) + b"a{not json", "does not parse"),
        (struct.pack("<I", 1) + b"a[1,2]", "must be an object"),
        (struct.pack("<I", 1) + b'a"str"', "must be an object"),
        (struct.pack("<I", 1) + b"a\xff\xfe", "does not parse"),
    ],
)
def test_decode_frame_errors(data, reason):
    with pytest.raises(OnionError, match=reason):
        decode_frame(data)


# --- full onion: build and peel ----------------------------------------------------------------

def _node(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(name.encode(), digest_size=32).digest())


def _hop(ident: Identity) -> OnionHop:
    return OnionHop(ed25519=ident.ed25519_public, x25519=ident.x25519_public)


PAYLOAD = json.dumps({"method": "retrieve", "params": {"pubkey": "05" + "00" * 32}}).encode()


@pytest.mark.parametrize("enc", BOTH)
def test_three_relays_and_destination(enc):
    relays = [_node(f"relay{i}") for i in range(3)]
    dest = _node("dest")
    req = build_onion_request([_hop(r) for r in relays], _hop(dest), PAYLOAD, enc)
    assert isinstance(req, OnionRequest) and req.enc_type == enc

    _, outer = decode_frame(req.frame)
    assert set(outer) == {"ephemeral_key", "enc_type"} and outer["enc_type"] == enc

    frame = req.frame
    seen_ephemeral = {outer["ephemeral_key"]}
    expected_next = [r.ed25519_hex for r in relays[1:]] + [dest.ed25519_hex]
    for relay, next_hex in zip(relays, expected_next, strict=True):
        layer = peel_layer(frame, relay.x25519_secret, relay.x25519_public)
        assert not layer.is_destination
        assert layer.enc_type == enc
        assert layer.meta["destination"] == next_hex
        assert layer.meta["enc_type"] == enc
        seen_ephemeral.add(layer.meta["ephemeral_key"])
        info = relay_info(layer)
        assert info.next_ed25519_hex == next_hex
        assert decode_frame(info.frame)[1] == {"ephemeral_key": layer.meta["ephemeral_key"], "enc_type": enc}
        frame = info.frame
    assert len(seen_ephemeral) == 4  # a fresh ephemeral key per layer

    final = peel_layer(frame, dest.x25519_secret, dest.x25519_public)
    assert final.is_destination
    assert final.meta == {"headers": ""}  # what libsession sends
    assert final.blob == PAYLOAD
    assert final.key == req.destination_key
    assert final.wants_base64 and not final.wants_json_body

    body = json.dumps({"messages": [], "more": False, "t": 1, "hf": [21, 1]})
    resp = encrypt_response(final.enc_type, final.key, 200, body)
    base64.b64decode(resp, validate=True)  # the wire form is base64
    assert decrypt_onion_response(req, resp) == (200, body)
    assert decrypt_onion_response(req, resp.decode()) == (200, body)


@pytest.mark.parametrize("enc", BOTH)
def test_empty_path_goes_straight_to_destination(enc):
    dest = _node("dest")
    req = build_onion_request([], _hop(dest), PAYLOAD, enc)
    layer = peel_layer(req.frame, dest.x25519_secret, dest.x25519_public)
    assert layer.is_destination and layer.blob == PAYLOAD


def test_wrong_node_cannot_peel():
    relay, dest, other = _node("relay0"), _node("dest"), _node("other")
    req = build_onion_request([_hop(relay)], _hop(dest), PAYLOAD)
    with pytest.raises(OnionError, match="Invalid ciphertext") as exc:
        peel_layer(req.frame, other.x25519_secret, other.x25519_public)
    assert exc.value.status == 400


@pytest.mark.parametrize("enc", BOTH)
def test_tampered_frame_rejected(enc):
    relay, dest = _node("relay0"), _node("dest")
    req = build_onion_request([_hop(relay)], _hop(dest), PAYLOAD, enc)
    frame = bytearray(req.frame)
    frame[4 + 30] ^= 0x01  # a byte inside the guard's ciphertext
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        peel_layer(bytes(frame), relay.x25519_secret, relay.x25519_public)
    # a relay that corrupts the blob it forwards breaks the next hop
    info = relay_info(peel_layer(req.frame, relay.x25519_secret, relay.x25519_public))
    forwarded = bytearray(info.frame)
    forwarded[10] ^= 0x80
    with pytest.raises(OnionError, match="Invalid ciphertext"):
        peel_layer(bytes(forwarded), dest.x25519_secret, dest.x25519_public)


def test_outer_frame_without_enc_type_defaults_to_aes_gcm():
    # older session-desktop sent only {"ephemeral_key": ...} to the guard
    dest = _node("dest")
    req = build_onion_request([], _hop(dest), PAYLOAD, ENC_AES_GCM)
    blob, meta = decode_frame(req.frame)
    legacy = encode_frame(blob, {"ephemeral_key": meta["ephemeral_key"]})
    layer = peel_layer(legacy, dest.x25519_secret, dest.x25519_public)
    assert layer.enc_type == ENC_AES_GCM and layer.blob == PAYLOAD


@pytest.mark.parametrize(
    "meta",
    [{}, {"ephemeral_key": "zz" * 32}, {"ephemeral_key": "00" * 31}, {"ephemeral_key": "00" * 32, "enc_type": "x"}],
)
def test_peel_rejects_bad_outer_json(meta):
    dest = _node("dest")
    with pytest.raises(OnionError):
        peel_layer(encode_frame(b"x" * 40, meta), dest.x25519_secret, dest.x25519_public)


def test_peel_rejects_bad_inner_frame():
    dest = _node("dest")
    eph_pub, eph_sec = bindings.crypto_box_keypair()
    key = layer_key(ENC_AES_GCM, shared_secret(eph_sec, dest.x25519_public), eph_pub, dest.x25519_public)
    frame = encode_frame(encrypt_layer(ENC_AES_GCM, key, b"\x01\x00"), {"ephemeral_key": eph_pub.hex()})
    with pytest.raises(OnionError, match="Invalid json"):
        peel_layer(frame, dest.x25519_secret, dest.x25519_public)


def test_relay_info_rejects_destination_and_bad_relay_json():
    dest = _node("dest")
    layer = peel_layer(build_onion_request([], _hop(dest), PAYLOAD).frame, dest.x25519_secret, dest.x25519_public)
    with pytest.raises(OnionError, match="destination"):
        relay_info(layer)
    layer.meta = {"destination": "ab", "ephemeral_key": "00" * 32}
    with pytest.raises(OnionError, match="destination"):
        relay_info(layer)


# --- responses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("enc", BOTH)
def test_response_round_trip_and_tampering(enc):
    dest = _node("dest")
    req = build_onion_request([_hop(_node("r"))], _hop(dest), PAYLOAD, enc)
    resp = encrypt_response(enc, req.destination_key, 421, '{"snodes":[]}')
    assert decrypt_onion_response(req, resp) == (421, '{"snodes":[]}')

    plaintext = decrypt_layer(enc, req.destination_key, base64.b64decode(resp))
    assert json.loads(plaintext) == {"status": 421, "body": '{"snodes":[]}'}  # body is a string

    raw = bytearray(base64.b64decode(resp))
    raw[-1] ^= 0x01
    with pytest.raises(OnionError, match="not decryptable"):
        decrypt_onion_response(req, base64.b64encode(bytes(raw)))
    with pytest.raises(OnionError, match="not decryptable"):
        decrypt_onion_response(req, b"Next node not found: " + b"ab" * 32)


def test_response_without_base64_and_with_embedded_json():
    dest = _node("dest")
    req = build_onion_request([], _hop(dest), PAYLOAD)
    raw = encrypt_response(ENC_AES_GCM, req.destination_key, 200, '{"a":1}', base64_encode=False)
    assert decrypt_onion_response(req, raw) == (200, '{"a":1}')
    embedded = encrypt_response(ENC_AES_GCM, req.destination_key, 200, '{"a":1}', embed_json=True)
    assert json.loads(decrypt_layer(ENC_AES_GCM, req.destination_key, base64.b64decode(embedded))) == {
        "status": 200, "body": {"a": 1}}
    assert decrypt_onion_response(req, embedded) == (200, '{"a":1}')


def test_response_key_of_another_request_fails():
    dest = _node("dest")
    req1 = build_onion_request([], _hop(dest), PAYLOAD)
    req2 = build_onion_request([], _hop(dest), PAYLOAD)
    assert req1.destination_key != req2.destination_key
    resp = encrypt_response(ENC_AES_GCM, req1.destination_key, 200, "ok")
    with pytest.raises(OnionError):
        decrypt_onion_response(req2, resp)


def test_onion_hop_validates_keys():
    with pytest.raises(OnionError):
        OnionHop(ed25519=bytes(31), x25519=bytes(32))
    ident = _node("x")
    assert OnionHop.from_hex(ident.ed25519_hex, ident.x25519_hex) == _hop(ident)


def test_build_rejects_too_many_hops():
    hops = [_hop(_node(f"n{i}")) for i in range(16)]
    with pytest.raises(OnionError, match="too long"):
        build_onion_request(hops, _hop(_node("dest")), PAYLOAD)
