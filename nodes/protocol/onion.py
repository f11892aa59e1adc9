"""Onion requests (PROTOCOL.md §5): frames, per-hop keys, both ciphers, client build and node peel.

What production does (read from session-storage-server ``oxenss/rpc/onion_processing.cpp``,
``oxenss/crypto/channel_encryption.cpp``, ``request_handler`` and libsession-util
``src/onionreq/builder.cpp``):

* **Frame** (``parse_combined_payload``): ``u32 little-endian N ‖ N bytes ‖ UTF-8 JSON object``.
  Fewer than 4 bytes, or fewer than N bytes after the length, or a JSON part that does not parse
  is an error.  The HTTP body POSTed to the guard's ``/onion_req/v2`` is such a frame whose blob is
  the guard's ciphertext and whose JSON is ``{"ephemeral_key": hex, "enc_type": ...}``.
  ``enc_type`` may be absent (older session-desktop sent only ``ephemeral_key``): it then
  defaults to ``aes-gcm``.
* **enc_type** values (``parse_enc_type``): ``aes-gcm`` / ``gcm`` and ``xchacha20`` /
  ``xchacha20-poly1305``; anything else is an error.  libsession writes ``aes-gcm`` or
  ``xchacha20``.
* **Keys**: ``S = X25519(node_secret, ephemeral_key)``.
  aes-gcm: ``key = HMAC-SHA256(key=b"LOKI", msg=S)``, ciphertext ``IV(12) ‖ AES-256-GCM ‖ tag(16)``,
  no associated data.  xchacha20: ``key = BLAKE2b-256(S ‖ client_pub ‖ node_pub)`` (unkeyed;
  client = the ephemeral key), ciphertext ``nonce(24) ‖ XChaCha20-Poly1305-IETF ct+tag``.
* **Plaintext of a layer** is again a frame.  Its JSON decides the role (``process_inner_request``):
  has ``headers`` → this node is the destination and the blob is the storage RPC body
  ``{"method", "params"}``; libsession sends exactly ``{"headers":""}`` (the storage server also
  reads optional booleans ``json`` and ``base64`` there).  Has ``host`` → proxy to an HTTP server
  (:mod:`nodes.protocol.onion_server`).  Otherwise → relay: ``destination`` (next hop's Ed25519 hex),
  ``ephemeral_key`` (the key the *next* hop must use) and ``enc_type``.
* **Client build** (libsession ``Builder::build``): one fresh ephemeral X25519 keypair per layer.
  The destination layer is encrypted first; its ephemeral key is put in the routing JSON of the
  last relay, and so on outwards; the guard's ephemeral key goes into the outer frame's JSON.
  JSON is compact (nlohmann ``dump()``; nlohmann objects keep keys sorted).
* **Response** (``wrap_proxy_response``): the destination encrypts (once, with the destination
  layer's key and scheme) the JSON ``{"body": <string>, "status": <int>}`` — the storage RPC's
  JSON response is passed as a *string* in ``body`` unless the request asked for ``"json": true``
  — and returns it base64-encoded (unless ``"base64": false``) with HTTP 200.  Relays pass it
  back unchanged.  Path errors are plaintext with the HTTP status (e.g. 502
  ``Next node not found: <hex>``).  session-desktop decodes base64, decrypts and reads
  ``status_code`` or ``status``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl import bindings
from nacl.exceptions import CryptoError

from . import jsonin

ENC_AES_GCM = "aes-gcm"
ENC_XCHACHA20 = "xchacha20"

_ENC_ALIASES = {
    "aes-gcm": ENC_AES_GCM,
    "gcm": ENC_AES_GCM,
    "xchacha20": ENC_XCHACHA20,
    "xchacha20-poly1305": ENC_XCHACHA20,
}

GCM_IV_BYTES = 12
GCM_TAG_BYTES = 16
XCHACHA_NONCE_BYTES = 24
XCHACHA_TAG_BYTES = 16
KEY_BYTES = 32
AES_GCM_SALT = b"LOKI"

#: A request that has gone through more relays than this is rejected (storage server: "nh" > 15).
MAX_HOPS = 15

#: JSON of the destination layer as libsession builds it.
DESTINATION_META: dict[str, Any] = {"headers": ""}


class OnionError(ValueError):
    """An onion frame or layer cannot be parsed or decrypted.

    ``status`` is the HTTP status a node answers with (400 for bad input).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def compact_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys and raw UTF-8, like nlohmann::json::dump()."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def parse_enc_type(value: str | None) -> str:
    """Normalise an ``enc_type`` value; None/"" mean aes-gcm.  Unknown values → OnionError."""
    if value is None or value == "":
        return ENC_AES_GCM
    if not isinstance(value, str):
        raise OnionError(f"Invalid encryption type {value!r}")
    try:
        return _ENC_ALIASES[value]
    except KeyError:
        raise OnionError(f"Invalid encryption type {value}") from None


# --- frames ------------------------------------------------------------------------------------

def encode_frame(blob: bytes, meta: dict) -> bytes:
    """``u32le len(blob) ‖ blob ‖ JSON(meta)``."""
    blob = bytes(blob)
    return struct.pack("<I", len(blob)) + blob + compact_json(meta)


def decode_frame(data: bytes) -> tuple[bytes, dict]:
    """Split a frame into (blob, meta).  OnionError on truncation or a non-object JSON part."""
    data = bytes(data)
    if len(data) < 4:
        raise OnionError(f"Invalid onion frame: {len(data)} bytes, expected a 4-byte length prefix")
    (n,) = struct.unpack_from("<I", data, 0)
    if len(data) - 4 < n:
        raise OnionError(f"Invalid onion frame: payload size {len(data) - 4}, expected >= {n}")
    blob = data[4:4 + n]
    try:
        meta = jsonin.loads(data[4 + n:])
    except jsonin.JsonInputError as exc:
        raise OnionError(f"Invalid onion frame: JSON part does not parse ({exc})") from None
    if not isinstance(meta, dict):
        raise OnionError(f"Invalid onion frame: JSON part must be an object, got {type(meta).__name__}")
    return blob, meta


# --- keys and ciphers --------------------------------------------------------------------------

def _key32(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_BYTES:
        raise OnionError(f"{what} must be {KEY_BYTES} bytes")
    return bytes(value)


def shared_secret(our_x25519_secret: bytes, their_x25519_public: bytes) -> bytes:
    """X25519(our_secret, their_public).  OnionError for bad sizes or a low-order public key."""
    sk = _key32(our_x25519_secret, "X25519 secret key")
    pk = _key32(their_x25519_public, "X25519 public key")
    try:
        return bindings.crypto_scalarmult(sk, pk)
    except (CryptoError, RuntimeError, ValueError, TypeError) as exc:
        raise OnionError(f"Shared key derivation failed: {exc}") from None


def layer_key(enc_type: str, shared: bytes, client_pub: bytes, node_pub: bytes) -> bytes:
    """Symmetric key of one layer from the X25519 shared secret.

    aes-gcm: HMAC-SHA256(key=b"LOKI", msg=shared); xchacha20: BLAKE2b-256(shared ‖ client_pub ‖
    node_pub), where client_pub is the ephemeral key the client generated for this layer.
    """
    enc_type = parse_enc_type(enc_type)
    shared = _key32(shared, "shared secret")
    if enc_type == ENC_AES_GCM:
        return hmac.new(AES_GCM_SALT, shared, hashlib.sha256).digest()
    client_pub = _key32(client_pub, "client public key")
    node_pub = _key32(node_pub, "node public key")
    return hashlib.blake2b(shared + client_pub + node_pub, digest_size=32).digest()


def encrypt_layer(enc_type: str, key: bytes, plaintext: bytes) -> bytes:
    """Encrypt with a fresh random IV/nonce prepended."""
    enc_type = parse_enc_type(enc_type)
    key = _key32(key, "layer key")
    plaintext = bytes(plaintext)
    if enc_type == ENC_AES_GCM:
        iv = os.urandom(GCM_IV_BYTES)
        return iv + AESGCM(key).encrypt(iv, plaintext, None)
    nonce = os.urandom(XCHACHA_NONCE_BYTES)
    return nonce + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, None, nonce, key)


def decrypt_layer(enc_type: str, key: bytes, ciphertext: bytes) -> bytes:
    """Decrypt one layer; any failure (size, tag, key) → OnionError("Invalid ciphertext")."""
    enc_type = parse_enc_type(enc_type)
    try:
        key = _key32(key, "layer key")
        ciphertext = bytes(ciphertext)
        if enc_type == ENC_AES_GCM:
            if len(ciphertext) < GCM_IV_BYTES + GCM_TAG_BYTES:
                raise ValueError("too short")
            return AESGCM(key).decrypt(ciphertext[:GCM_IV_BYTES], ciphertext[GCM_IV_BYTES:], None)
        if len(ciphertext) < XCHACHA_NONCE_BYTES + XCHACHA_TAG_BYTES:
            raise ValueError("too short")
        return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext[XCHACHA_NONCE_BYTES:], None, ciphertext[:XCHACHA_NONCE_BYTES], key)
    except (InvalidTag, CryptoError, ValueError, TypeError):
        raise OnionError("Invalid ciphertext") from None


# --- node side ---------------------------------------------------------------------------------

@dataclass
class PeeledLayer:
    """One decrypted layer: the inner blob and JSON, plus the key/scheme to answer with."""

    blob: bytes
    meta: dict
    key: bytes = field(repr=False)
    enc_type: str

    @property
    def is_destination(self) -> bool:
        """True if this node is the final destination (the JSON has ``headers``)."""
        return "headers" in self.meta

    @property
    def wants_json_body(self) -> bool:
        """The destination JSON asked for ``"json": true`` (embed the RPC body as JSON)."""
        return self.meta.get("json") is True

    @property
    def wants_base64(self) -> bool:
        """The destination JSON did not ask for ``"base64": false``."""
        return self.meta.get("base64", True) is not False


@dataclass(frozen=True)
class RelayInfo:
    """Where a relay forwards a layer: next hop and the frame to POST to its /onion_req/v2."""

    next_ed25519_hex: str
    ephemeral_key: bytes
    enc_type: str
    frame: bytes


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * KEY_BYTES:
        raise OnionError(f"Invalid {what}: expected {2 * KEY_BYTES} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise OnionError(f"Invalid {what}: not hex") from None


def peel_layer(frame: bytes, node_x25519_secret: bytes, node_x25519_public: bytes) -> PeeledLayer:
    """Decode the frame a node received, decrypt it with the node's key, decode the inner frame."""
    ciphertext, outer = decode_frame(frame)
    eph = _hex32(outer.get("ephemeral_key"), "ephemeral_key")
    enc_type = parse_enc_type(outer.get("enc_type"))
    shared = shared_secret(node_x25519_secret, eph)
    key = layer_key(enc_type, shared, eph, node_x25519_public)
    plaintext = decrypt_layer(enc_type, key, ciphertext)
    try:
        blob, meta = decode_frame(plaintext)
    except OnionError as exc:
        raise OnionError(f"Invalid json in decrypted onion layer: {exc}") from None
    return PeeledLayer(blob=blob, meta=meta, key=key, enc_type=enc_type)


def relay_info(layer: PeeledLayer) -> RelayInfo:
    """For a relay layer: the next hop and the frame to send it (same layout as the guard's)."""
    if layer.is_destination:
        raise OnionError("This onion layer is for the destination, not a relay")
    if "host" in layer.meta:
        raise OnionError("This onion layer routes to a server (it names a host), not to a node: "
                         "see nodes.protocol.onion_server.parse_server_route")
    next_ed = _hex32(layer.meta.get("destination"), "destination")
    eph = _hex32(layer.meta.get("ephemeral_key"), "ephemeral_key")
    enc_type = parse_enc_type(layer.meta.get("enc_type"))
    frame = encode_frame(layer.blob, {"ephemeral_key": eph.hex(), "enc_type": enc_type})
    return RelayInfo(next_ed25519_hex=next_ed.hex(), ephemeral_key=eph, enc_type=enc_type, frame=frame)


def encrypt_response(
    enc_type: str,
    key: bytes,
    status: int,
    body: str,
    *,
    embed_json: bool = False,
    base64_encode: bool = True,
) -> bytes:
    """What a destination returns: base64(encrypt(``{"body": body, "status": status}``)).

    With ``embed_json`` the body (a JSON string) is embedded as a JSON value instead of a string
    (the request's ``"json": true``); with ``base64_encode=False`` the raw ciphertext is returned.
    """
    body_value: Any = body
    if embed_json:
        try:
            body_value = jsonin.loads(body)
        except jsonin.JsonInputError:
            body_value = body
    ciphertext = encrypt_layer(enc_type, key, compact_json({"status": int(status), "body": body_value}))
    return base64.b64encode(ciphertext) if base64_encode else ciphertext


# --- client side -------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnionHop:
    """A service node as an onion hop: its Ed25519 (identity) and X25519 (encryption) keys."""

    ed25519: bytes
    x25519: bytes

    def __post_init__(self) -> None:
        _key32(self.ed25519, "hop Ed25519 key")
        _key32(self.x25519, "hop X25519 key")

    @classmethod
    def from_hex(cls, ed25519_hex: str, x25519_hex: str) -> OnionHop:
        return cls(_hex32(ed25519_hex, "Ed25519 key"), _hex32(x25519_hex, "X25519 key"))


@dataclass
class OnionRequest:
    """A built onion request: ``frame`` is POSTed to the guard's /onion_req/v2."""

    frame: bytes
    destination_key: bytes = field(repr=False)
    enc_type: str


def seal_layer(enc_type: str, recipient_x25519: bytes, plaintext: bytes) -> tuple[bytes, bytes, bytes]:
    """Encrypt ``plaintext`` for one recipient with a fresh ephemeral X25519 keypair.

    Returns (ciphertext, ephemeral public key, symmetric key); the key also decrypts the
    recipient's answer (the destination answers with the same key and scheme).
    """
    enc_type = parse_enc_type(enc_type)
    recipient_x25519 = _key32(recipient_x25519, "recipient X25519 key")
    eph_pub, eph_sec = bindings.crypto_box_keypair()
    key = layer_key(enc_type, shared_secret(eph_sec, recipient_x25519), eph_pub, recipient_x25519)
    return encrypt_layer(enc_type, key, plaintext), eph_pub, key


def wrap_path(path: Sequence[OnionHop], blob: bytes, last_routing: dict[str, Any],
              enc_type: str) -> bytes:
    """Wrap an already sealed destination ``blob`` in one layer per relay (guard first in
    ``path``) and return the frame to POST to the guard's /onion_req/v2.

    ``last_routing`` is the routing JSON the *last* relay reads (for a service node destination
    ``{"destination", "ephemeral_key", "enc_type"}``; for a server ``{"host", "target", ...}``,
    see :mod:`nodes.protocol.onion_server`); every earlier relay gets ``{"destination":
    <next hop ed25519>, "ephemeral_key", "enc_type"}``.  With an empty path ``last_routing`` is
    the outer JSON itself.
    """
    enc_type = parse_enc_type(enc_type)
    if len(path) > MAX_HOPS:
        raise OnionError(f"Onion path too long: {len(path)} relays, at most {MAX_HOPS}")
    routing = dict(last_routing)
    for i in range(len(path) - 1, -1, -1):
        blob, eph_pub, _ = seal_layer(enc_type, path[i].x25519, encode_frame(blob, routing))
        routing = {"destination": path[i].ed25519.hex(), "ephemeral_key": eph_pub.hex(),
                   "enc_type": enc_type}
    outer = {"ephemeral_key": routing["ephemeral_key"], "enc_type": enc_type}
    return encode_frame(blob, outer)


def build_onion_request(
    path: Sequence[OnionHop],
    destination: OnionHop,
    payload: bytes,
    enc_type: str = ENC_AES_GCM,
) -> OnionRequest:
    """Wrap ``payload`` (a storage RPC body) for ``destination`` through ``path`` (guard first).

    An empty path gives a frame to POST to the destination itself.
    """
    enc_type = parse_enc_type(enc_type)
    if len(path) > MAX_HOPS:
        raise OnionError(f"Onion path too long: {len(path)} relays, at most {MAX_HOPS}")
    blob, eph_pub, destination_key = seal_layer(enc_type, destination.x25519,
                                                encode_frame(payload, DESTINATION_META))
    routing = {"destination": destination.ed25519.hex(), "ephemeral_key": eph_pub.hex(),
               "enc_type": enc_type}
    frame = wrap_path(path, blob, routing, enc_type)
    return OnionRequest(frame=frame, destination_key=destination_key, enc_type=enc_type)


def decrypt_onion_response(req: OnionRequest, body: bytes | str) -> tuple[int, str]:
    """Decrypt a destination's answer (base64, or raw ciphertext) → (status, body string)."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    text = raw.strip()
    try:
        ciphertext = base64.b64decode(text, validate=True) if text else b""
    except (binascii.Error, ValueError):
        ciphertext = raw
    try:
        plaintext = decrypt_layer(req.enc_type, req.destination_key, ciphertext)
    except OnionError:
        snippet = raw[:120].decode("utf-8", "replace")
        raise OnionError(f"Onion response is not decryptable with the destination key: {snippet!r}") from None
    try:
        obj = jsonin.loads(plaintext)
    except jsonin.JsonInputError as exc:
        raise OnionError(f"Decrypted onion response is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise OnionError("Decrypted onion response is not a JSON object")
    status = obj.get("status_code", obj.get("status"))
    if isinstance(status, bool) or not isinstance(status, int):
        raise OnionError(f"Decrypted onion response has no integer status: {obj!r:.200}")
    inner = obj.get("body", "")
    if not isinstance(inner, str):
        inner = json.dumps(inner, separators=(",", ":"))
    return status, inner
