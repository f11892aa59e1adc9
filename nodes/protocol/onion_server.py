"""Onion requests to servers (file server, SOGS): the v4 ``/oxen/v4/lsrpc`` protocol.

What production does (read from session-storage-server ``oxenss/rpc/onion_processing.cpp`` and
``request_handler.cpp`` (``process_onion_req`` for a ``RelayToServerInfo``), libsession-util
``src/onionreq/builder.cpp`` / ``parser.cpp`` / ``response_parser.cpp`` and session-file-server
``fileserver/onion_req.py``):

* **Client build** (libsession ``Builder::build`` with a ``ServerDestination``): the payload (the
  bencoded v4 request below) is encrypted *directly* (no inner frame) for the server's X25519 key
  with a fresh ephemeral keypair.  The last relay — the *exit node* — finds it as the blob of its
  decrypted layer, whose JSON is the final route ``{"host", "target": "/oxen/v4/lsrpc",
  "method": "POST", "protocol", "port", "ephemeral_key", "enc_type"}`` (``port`` defaults to 443
  for https, 80 for http; ``ephemeral_key``/``enc_type`` are for the *server*).  The relays before
  it are wrapped as for a service node destination (:func:`nodes.protocol.onion.wrap_path`).
* **Exit node** (``process_inner_request``: the JSON has ``host`` and no ``headers``): ``target``
  is required; ``port`` defaults to 443 and ``protocol`` to ``https``.  A protocol other than
  ``http``/``https`` or a target that does not start with ``/loki/`` or ``/oxen/``, end with
  ``/lsrpc`` and have no ``?`` → 400 ``Invalid url``, encrypted for the client like
  ``Invalid json``.  Otherwise it POSTs its *whole decrypted layer* (``N ‖ blob ‖ JSON``) to
  ``protocol://host[:port]target`` (the port is left out when it is the protocol's default; a
  target without a leading ``/`` gets one), with a 25 s timeout, no redirects; the server's
  status, headers and body go back through the path unchanged.  If the server cannot be reached
  the answer is plaintext: 504 with the error text on a timeout, 502 with it otherwise (curl's
  texts, e.g. ``Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server``).
* **Server** (libsession ``OnionReqParser``, used by session-file-server and SOGS): parses the
  POSTed frame (at most 10 MiB), takes ``ephemeral_key`` (required) and ``enc_type`` (default
  aes-gcm) from its JSON, and decrypts the blob with its X25519 key → the v4 request.  It
  answers the encrypted v4 response, raw (not base64), HTTP 200; a request it cannot decrypt
  gets a plain 400.
* **v4 request** (bencoded list of 1 or 2 byte strings): ``l <json meta> [<body>] e`` with meta
  ``{"method", "endpoint", "headers"}`` (endpoint starts with ``/``; the body is present for
  POST/PUT).  libsession writes ``headers`` as an object and adds ``Content-Type:
  application/json`` when there is a body and no Content-Type.
* **v4 response**: ``l <json {"code": int, "headers": {lower-case names}}> <body> e``; a request
  the server cannot parse gets code 400 and the body ``Invalid v4 onion request``.
* **Client decrypt** (libsession ``ResponseParser``): decrypt with the key of the server layer
  (libsession also retries aes-gcm for a legacy push server; file servers answer in the request's
  scheme, so this module does not).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import jsonin
from .onion import (
    ENC_XCHACHA20,
    KEY_BYTES,
    OnionError,
    OnionHop,
    compact_json,
    decode_frame,
    decrypt_layer,
    encrypt_layer,
    layer_key,
    parse_enc_type,
    seal_layer,
    shared_secret,
    wrap_path,
)

#: the target every libsession client names (all servers support v4 onion requests)
V4_TARGET = "/oxen/v4/lsrpc"
#: the exit node's timeout for the POST to the server (storage server ONION_URL_TIMEOUT)
ONION_URL_TIMEOUT_S = 25.0
#: largest request an onion server accepts (libsession OnionReqParser DEFAULT_MAX_SIZE)
MAX_SERVER_REQUEST = 10 * 1024 * 1024
#: the exit node's answer for a protocol or target it will not forward to (encrypted, 400)
INVALID_URL = "Invalid url"
#: what a server answers for a v4 request it cannot parse (session-file-server)
INVALID_V4_REQUEST = b"Invalid v4 onion request"
PROTOCOLS = ("http", "https")


def default_port(protocol: str) -> int:
    return 443 if protocol == "https" else 80


def is_target_allowed(target: str) -> bool:
    """The storage server's ``is_onion_url_target_allowed``."""
    return ((target.startswith("/loki/") or target.startswith("/oxen/"))
            and target.endswith("/lsrpc") and "?" not in target)


# --- the exit node's view ----------------------------------------------------------------------

@dataclass(frozen=True)
class ServerRoute:
    """Where an exit node forwards a layer whose JSON names a ``host``."""

    host: str
    target: str
    port: int
    protocol: str

    @property
    def allowed(self) -> bool:
        """Protocol http/https and an allowed target; otherwise the node answers ``Invalid url``."""
        return self.protocol in PROTOCOLS and is_target_allowed(self.target)

    @property
    def url(self) -> str:
        """``protocol://host[:port]target`` as the storage server writes it."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        port = "" if self.port == default_port(self.protocol) else f":{self.port}"
        target = self.target if self.target.startswith("/") else "/" + self.target
        return f"{self.protocol}://{host}{port}{target}"


def is_server_route(meta: Mapping[str, Any]) -> bool:
    """A decrypted layer's JSON routes to a server: it has ``host`` (and no ``headers``)."""
    return "host" in meta and "headers" not in meta


def parse_server_route(meta: Mapping[str, Any]) -> ServerRoute:
    """The route in a layer's JSON.  Wrong types or a missing ``target`` → OnionError (the
    storage server then answers ``Invalid json``)."""
    host = meta.get("host")
    target = meta.get("target")
    if not isinstance(host, str):
        raise OnionError("Invalid json: host must be a string")
    if not isinstance(target, str):
        raise OnionError("Invalid json: target missing or not a string")
    port = meta.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise OnionError("Invalid json: port must be an integer 0-65535")
    protocol = meta.get("protocol", "https")
    if not isinstance(protocol, str):
        raise OnionError("Invalid json: protocol must be a string")
    return ServerRoute(host=host, target=target, port=port, protocol=protocol)


# --- bencoded v4 request / response ------------------------------------------------------------

def _bt_string(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data


def _bt_list(items: Sequence[bytes]) -> bytes:
    return b"l" + b"".join(_bt_string(i) for i in items) + b"e"


def _parse_bt_strings(data: bytes) -> list[bytes]:
    """A bencoded list of byte strings (nothing else) → its items.  ValueError otherwise."""
    if len(data) < 2 or data[:1] != b"l" or data[-1:] != b"e":
        raise ValueError("expected a bencoded list")
    items: list[bytes] = []
    pos, end = 1, len(data) - 1
    while pos < end:
        colon = data.find(b":", pos, end)
        digits = data[pos:colon] if colon >= 0 else b""
        if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
            raise ValueError(f"expected a byte string length at offset {pos}")
        n = int(digits)
        start = colon + 1
        if start + n > end:
            raise ValueError(f"byte string at offset {pos} runs past the end of the list")
        items.append(data[start:start + n])
        pos = start + n
    return items


@dataclass(frozen=True)
class V4Request:
    """A v4 onion request to a server: an HTTP request in bencoded form."""

    method: str
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def encode(self) -> bytes:
        """``l<json meta>[<body>]e`` as libsession builds it (compact, key-sorted JSON;
        ``Content-Type: application/json`` added to a request with a body and none given)."""
        headers = {k: v for k, v in self.headers.items() if k != "User-Agent"}
        if self.body is not None and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        endpoint = self.endpoint if self.endpoint.startswith("/") else "/" + self.endpoint
        meta = compact_json({"method": self.method, "endpoint": endpoint, "headers": headers})
        return _bt_list([meta] if self.body is None else [meta, self.body])

    @classmethod
    def decode(cls, data: bytes) -> V4Request:
        """Parse as session-file-server does.  OnionError (status 400) when malformed."""
        try:
            items = _parse_bt_strings(bytes(data))
            if not 1 <= len(items) <= 2:
                raise ValueError(f"expected 1 or 2 parts, found {len(items)}")
            meta = jsonin.loads(items[0])
            if not isinstance(meta, dict):
                raise ValueError("request metadata is not a JSON object")
            method, endpoint = meta.get("method"), meta.get("endpoint")
            if not isinstance(method, str) or not isinstance(endpoint, str):
                raise ValueError("request metadata needs string 'method' and 'endpoint'")
            if not endpoint.startswith("/"):
                raise ValueError("endpoint must start with /")
            raw_headers = meta.get("headers", {})
            if raw_headers in ("", None):
                raw_headers = {}
            if not isinstance(raw_headers, dict):
                raise ValueError("headers must be a JSON object")
            headers = {str(k): str(v) for k, v in raw_headers.items()}
        except (ValueError, jsonin.JsonInputError) as exc:
            raise OnionError(f"Invalid v4 onion request: {exc}") from None
        return cls(method=method, endpoint=endpoint, headers=headers,
                   body=items[1] if len(items) == 2 else None)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None


@dataclass(frozen=True)
class V4Response:
    """A server's v4 answer: status code, lower-case headers, raw body."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        """``l<json {"code", "headers"}><body>e`` (header names lower-case, no content-length)."""
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "content-length"}
        return _bt_list([compact_json({"code": int(self.code), "headers": headers}), self.body])

    @classmethod
    def decode(cls, data: bytes) -> V4Response:
        try:
            items = _parse_bt_strings(bytes(data))
            if len(items) != 2:
                raise ValueError(f"expected 2 parts, found {len(items)}")
            meta = jsonin.loads(items[0])
            if not isinstance(meta, dict):
                raise ValueError("response metadata is not a JSON object")
            code = meta.get("code")
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError("response metadata has no integer 'code'")
            headers = meta.get("headers", {})
            if not isinstance(headers, dict):
                raise ValueError("response headers must be a JSON object")
        except (ValueError, jsonin.JsonInputError) as exc:
            raise OnionError(f"Invalid v4 onion response: {exc}") from None
        return cls(code=code, headers={str(k).lower(): str(v) for k, v in headers.items()},
                   body=items[1])

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        """The body as JSON (OnionError if it is not)."""
        try:
            return jsonin.loads(self.body)
        except jsonin.JsonInputError as exc:
            raise OnionError(f"v4 response body is not JSON: {exc}") from None


def invalid_v4_response() -> V4Response:
    """What a server answers to a v4 request it cannot parse."""
    return V4Response(400, {"content-type": "text/plain; charset=utf-8"}, INVALID_V4_REQUEST)


# --- server side -------------------------------------------------------------------------------

@dataclass
class ServerRequest:
    """A request POSTed to a server's /oxen/v4/lsrpc, decrypted with the server's key."""

    payload: bytes
    route: dict[str, Any]  # the frame's JSON: the exit node's route plus ephemeral_key/enc_type
    key: bytes = field(repr=False)
    enc_type: str
    ephemeral_key: bytes

    def encrypt_reply(self, data: bytes) -> bytes:
        """Encrypt an answer with the request's key and scheme (raw, not base64)."""
        return encrypt_layer(self.enc_type, self.key, data)


def open_server_request(body: bytes, x25519_secret: bytes, x25519_public: bytes,
                        max_size: int = MAX_SERVER_REQUEST) -> ServerRequest:
    """Parse and decrypt what an exit node POSTed (libsession ``OnionReqParser``).

    OnionError (status 400) when the body is too big, not a frame, has no usable
    ``ephemeral_key``/``enc_type``, or does not decrypt with the server's key.
    """
    body = bytes(body)
    if len(body) > max_size:
        raise OnionError(f"onion request data too big: {len(body)} bytes, at most {max_size}")
    ciphertext, meta = decode_frame(body)
    eph_hex = meta.get("ephemeral_key")
    if not isinstance(eph_hex, str):
        raise OnionError("metadata does not have 'ephemeral_key' entry")
    try:
        eph = bytes.fromhex(eph_hex)
    except ValueError:
        raise OnionError("Invalid ephemeral_key: not hex") from None
    if len(eph) != KEY_BYTES:
        raise OnionError(f"Invalid ephemeral_key: expected {2 * KEY_BYTES} hex characters")
    enc_type = parse_enc_type(meta.get("enc_type"))
    key = layer_key(enc_type, shared_secret(x25519_secret, eph), eph, x25519_public)
    payload = decrypt_layer(enc_type, key, ciphertext)
    return ServerRequest(payload=payload, route=meta, key=key, enc_type=enc_type,
                         ephemeral_key=eph)


# --- client side -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerDestination:
    """A server reached through an onion path: its address and X25519 public key."""

    host: str
    port: int
    x25519: bytes
    protocol: str = "http"

    def __post_init__(self) -> None:
        if len(self.x25519) != KEY_BYTES:
            raise OnionError(f"server X25519 key must be {KEY_BYTES} bytes")
        if self.protocol not in PROTOCOLS:
            raise OnionError(f"server protocol must be http or https, not {self.protocol!r}")

    def final_route(self, ephemeral_key: bytes, enc_type: str) -> dict[str, Any]:
        """The exit node's routing JSON (libsession's ``final_route``)."""
        return {"host": self.host, "target": V4_TARGET, "method": "POST",
                "protocol": self.protocol, "port": self.port,
                "ephemeral_key": ephemeral_key.hex(), "enc_type": parse_enc_type(enc_type)}


@dataclass
class ServerOnionRequest:
    """A built onion request for a server: POST ``frame`` to the guard's /onion_req/v2."""

    frame: bytes
    server_key: bytes = field(repr=False)
    enc_type: str


def build_server_onion_request(path: Sequence[OnionHop], server: ServerDestination,
                               request: V4Request | bytes,
                               enc_type: str = ENC_XCHACHA20) -> ServerOnionRequest:
    """Wrap a v4 request for ``server`` through ``path`` (guard first, the last one is the exit
    node).  libsession uses xchacha20 for server requests; aes-gcm works as well."""
    if not path:
        raise OnionError("an onion request to a server needs at least one service node (the exit)")
    enc_type = parse_enc_type(enc_type)
    payload = request.encode() if isinstance(request, V4Request) else bytes(request)
    blob, eph_pub, key = seal_layer(enc_type, server.x25519, payload)
    frame = wrap_path(path, blob, server.final_route(eph_pub, enc_type), enc_type)
    return ServerOnionRequest(frame=frame, server_key=key, enc_type=enc_type)


def decrypt_server_response(req: ServerOnionRequest, body: bytes) -> V4Response:
    """Decrypt a server's answer to ``req`` and decode the v4 response.

    The answer is raw ciphertext (session-file-server); base64 of it is accepted too.  OnionError
    when it decrypts with neither (e.g. a node's plaintext error such as a 502 from the exit)."""
    raw = bytes(body)
    candidates = [raw]
    try:
        candidates.append(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError):
        pass
    for data in candidates:
        try:
            plaintext = decrypt_layer(req.enc_type, req.server_key, data)
        except OnionError:
            continue
        return V4Response.decode(plaintext)
    snippet = raw[:120].decode("utf-8", "replace")
    raise OnionError(f"Server response is not decryptable with the server key: {snippet!r}")


def describe_v4(resp: V4Response) -> str:
    """A short text for logs and errors: code, content type and the start of the body."""
    body = resp.body[:200]
    try:
        text = json.dumps(body.decode("utf-8"))
    except UnicodeDecodeError:
        text = f"<{len(resp.body)} bytes>"
    return f"{resp.code} {resp.content_type or '-'} {text}"
