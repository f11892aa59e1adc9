"""Onion requests v2 (POST /onion_req/v2) as session-desktop and libsession build them, the
path errors clients parse, and a complete Session 1-to-1 message: encrypted, stored through an
onion path, polled and decrypted by the recipient.  Sources: docs/conformance.md, section
"Onion requests"."""

from __future__ import annotations

import base64
import json
import os
import struct

import pytest
from nacl import bindings

from nodes.protocol import onion as onion_lib
from nodes.protocol.message import decrypt_message, encrypt_message
from nodes.protocol.onion import OnionHop

from .wire import (
    Account,
    Wire,
    assert_t_hf,
    b64,
    build_onion,
    desktop_onion,
    is_int,
    libsession_onion,
)

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]


def random_hop() -> OnionHop:
    """A well-formed node identity that is not part of the network."""
    pk, _ = bindings.crypto_sign_keypair()
    return OnionHop(pk, bindings.crypto_sign_ed25519_pk_to_curve25519(pk))


async def test_desktop_onion_through_three_relays(wire: Wire, account: Account) -> None:
    """session-desktop: aes-gcm with no enc_type anywhere, destination JSON {"body": null,
    "headers": {...}}, guard JSON {"ephemeral_key"} only; the answer is base64 of the AES-GCM
    encrypted {"status": int, "body": "<storage RPC JSON as a string>"}."""
    dest = wire.member(account)
    out = await wire.onion_rpc(dest, "info", {}, style="desktop")
    assert out.http.status == 200, f"onion request failed on the path: {out.http}"
    assert out.status == 200, f"destination answered {out.status}: {out.body!r:.300}"
    assert isinstance(out.raw.get("body"), str), "the RPC result must be a JSON *string* in body"
    body = out.json
    assert_t_hf(body, what="onion info")
    assert isinstance(body["version"], list)


@pytest.mark.parametrize("enc_type", ["aes-gcm", "xchacha20"])
async def test_libsession_onion_store_and_retrieve(wire: Wire, account: Account,
                                                   enc_type: str) -> None:
    """libsession onionreq Builder: enc_type in every routing JSON, destination JSON
    {"headers": ""}; store then retrieve through 3 relays with each cipher."""
    dest = wire.member(account)
    data = f"via onion {enc_type}".encode()
    ts = wire.now()
    stored = await wire.onion_rpc(dest, "store", {
        "pubkey": account.pubkey, "timestamp": ts, "ttl": 600_000, "data": b64(data),
        "namespace": 0}, style="libsession", enc_type=enc_type)
    assert stored.http.status == 200, str(stored.http)
    assert stored.status == 200, stored.body
    body = stored.json
    assert body["hash"] == account.hash_of(data)
    assert_t_hf(body, what="onion store")
    got = await wire.onion_rpc(dest, "retrieve", wire.retrieve_params(account),
                               style="libsession", enc_type=enc_type)
    assert got.status == 200, got.body
    msgs = got.json["messages"]
    assert [m["hash"] for m in msgs] == [account.hash_of(data)]
    assert base64.b64decode(msgs[0]["data"]) == data


@pytest.mark.parametrize("label,enc_type", [("gcm", "aes-gcm"),
                                            ("xchacha20-poly1305", "xchacha20")])
async def test_enc_type_aliases(wire: Wire, account: Account, label: str, enc_type: str) -> None:
    """channel_encryption parse_enc_type also accepts "gcm" and "xchacha20-poly1305"."""
    dest = wire.member(account)
    path = wire.path_for(dest)
    payload = json.dumps({"method": "info", "params": {}}).encode()
    built = build_onion(path, dest, payload, enc_type=enc_type, enc_label=label)
    out = await wire.send_onion(path[0], built)
    assert out.http.status == 200 and out.status == 200, str(out.http)


async def test_single_relay_and_json_flags(wire: Wire, account: Account) -> None:
    """A one-relay path works, and the destination honours "json": true (body embedded as JSON)
    and "base64": false (raw ciphertext) in its JSON (onion_processing.cpp)."""
    dest = wire.member(account)
    (guard,) = wire.path_for(dest, 1)
    payload = json.dumps({"method": "info", "params": {}}).encode()
    built = build_onion([guard], dest, payload, dest_meta={"headers": "", "json": True})
    out = await wire.send_onion(guard, built)
    assert out.status == 200 and isinstance(out.raw["body"], dict), out.raw
    built = build_onion([guard], dest, payload, dest_meta={"headers": "", "base64": False})
    http = await wire.post(f"{guard.url}/onion_req/v2", built.frame)
    assert http.status == 200
    plain = json.loads(onion_lib.decrypt_layer(built.enc_type, built.key, http.body))
    assert plain["status"] == 200 and isinstance(plain["body"], str)


async def test_next_node_not_found(wire: Wire, account: Account) -> None:
    """A relay asked to forward to an unknown node answers 502 "Next node not found: <ed25519
    hex>" in plain text, passed back unchanged along the path; desktop and libsession match that
    prefix and drop the node (onions.ts NEXT_NODE_NOT_FOUND_PREFIX, onion_request_router
    error_patterns)."""
    ghost = random_hop()
    for path_len in (1, 3):
        path = wire.path_for(wire.nodes[0], path_len)
        for builder in ("desktop", "libsession"):
            payload = json.dumps({"method": "info", "params": {}}).encode()
            built = (desktop_onion(path, ghost, payload) if builder == "desktop"
                     else libsession_onion(path, ghost, payload, "xchacha20"))
            out = await wire.send_onion(path[0], built)
            assert out.http.status == 502, f"{builder}, {path_len} relays: {out.http}"
            assert out.http.text == f"Next node not found: {ghost.ed25519.hex()}", out.http.text


async def test_garbage_and_bad_ciphertext(wire: Wire) -> None:
    """Unparseable frames are a 400; a frame whose ciphertext does not decrypt is 400 "Invalid
    ciphertext" (request_handler.cpp ProcessCiphertextError); the node keeps serving."""
    node = wire.nodes[0]
    url = f"{node.url}/onion_req/v2"
    for junk in (b"", b"\x01\x02", os.urandom(200), struct.pack("<I", 1 << 30) + b"{}",
                 struct.pack("<I", 4) + b"abcd" + b"not json"):
        r = await wire.post(url, junk)
        assert r.status == 400, f"{junk[:16]!r}: {r}"
        (await wire.rpc(node, "info", {})).expect(200)
    eph, _ = bindings.crypto_box_keypair()
    for meta in ({"ephemeral_key": eph.hex()}, {"ephemeral_key": eph.hex(), "enc_type": "aes-gcm"},
                 {"ephemeral_key": eph.hex(), "enc_type": "xchacha20"}):
        frame = struct.pack("<I", 64) + os.urandom(64) + json.dumps(meta).encode()
        r = await wire.post(url, frame)
        assert (r.status, r.text) == (400, "Invalid ciphertext"), f"{meta}: {r}"
    (await wire.rpc(node, "info", {})).expect(200)


async def test_undecodable_inner_layer_is_an_encrypted_400(wire: Wire, account: Account) -> None:
    """A layer that decrypts but whose plaintext is not a frame: the node answers with its layer
    key, 200 + encrypted {"status": 400, "body": "Invalid json"} (request_handler.cpp
    ProcessCiphertextError::INVALID_JSON)."""
    dest = wire.member(account)
    eph_pub, eph_sec = bindings.crypto_box_keypair()
    key = onion_lib.layer_key("aes-gcm", onion_lib.shared_secret(eph_sec, dest.hop.x25519),
                              eph_pub, dest.hop.x25519)
    ct = onion_lib.encrypt_layer("aes-gcm", key, b"\x00\x00")
    frame = struct.pack("<I", len(ct)) + ct + json.dumps({"ephemeral_key": eph_pub.hex()}).encode()
    r = await wire.post(f"{dest.url}/onion_req/v2", frame)
    assert r.status == 200, str(r)
    plain = json.loads(onion_lib.decrypt_layer("aes-gcm", key, base64.b64decode(r.body)))
    assert plain == {"status": 400, "body": "Invalid json"}, plain


async def test_wrong_swarm_through_onion(wire: Wire, account: Account) -> None:
    """A 421 at the destination comes back inside the encrypted answer with the get_swarm body as
    a JSON string, which desktop parses for the new swarm (onions.ts handle421InvalidSwarm)."""
    outsider = wire.outsider(account)
    out = await wire.onion_rpc(outsider, "retrieve", wire.retrieve_params(account))
    assert out.http.status == 200 and out.status == 421, f"{out.http} / {out.status}"
    parsed = json.loads(out.raw["body"])
    assert {s["pubkey_ed25519"] for s in parsed["snodes"]} == {
        n.ed25519 for n in wire.swarm_of(account)}


async def test_destination_errors_keep_their_status(wire: Wire, account: Account) -> None:
    """An RPC error at the destination is status + plain-text body inside the encrypted answer
    (desktop processOnionRequestErrorAtDestination reads status_code/status and body)."""
    dest = wire.member(account)
    out = await wire.onion_rpc(dest, "retrieve", {"pubkey": account.pubkey})
    assert out.http.status == 200
    assert (out.status, out.raw["body"]) == (401, "retrieve: request signature required")


async def test_session_one_to_one_message(wire: Wire) -> None:
    """Alice sends Bob a Session message the way desktop does: content encrypted for Bob's X25519
    key (nodes.protocol.message), stored in namespace 0 of Bob's swarm through a desktop onion
    path; Bob polls his swarm (libsession-style onion, xchacha20), decrypts and verifies it."""
    alice, bob = Account.new(), Account.new()
    ts = wire.now()
    text = "hello from the conformance suite"
    plain = encrypt_message(alice.identity, bob.pubkey, text, timestamp_ms=ts,
                            display_name="Alice")
    target = wire.member(bob)
    sent = await wire.onion_rpc(target, "store", {
        "pubkey": bob.pubkey, "timestamp": ts, "namespace": 0, "ttl": 14 * 24 * 3600 * 1000,
        "data": b64(plain)}, style="desktop")
    assert sent.status == 200, sent.body
    swarm = sent.json["swarm"]
    assert len(swarm) == len(wire.swarm_of(bob)) and not any(v.get("failed")
                                                             for v in swarm.values())
    poll = await wire.onion_rpc(wire.member(bob), "retrieve",
                                wire.retrieve_params(bob, last_hash=""),
                                style="libsession", enc_type="xchacha20")
    assert poll.status == 200, poll.body
    msgs = poll.json["messages"]
    assert len(msgs) == 1 and is_int(msgs[0]["timestamp"]) and msgs[0]["timestamp"] == ts
    received = decrypt_message(bob.identity, base64.b64decode(msgs[0]["data"]))
    assert received.sender == alice.pubkey
    assert received.body == text
    assert received.timestamp_ms == ts and received.envelope_timestamp_ms == ts
    assert received.display_name == "Alice"
