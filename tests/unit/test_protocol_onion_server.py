"""nodes.protocol.onion_server: onion requests to servers (v4 /oxen/v4/lsrpc), both ends."""

from __future__ import annotations

import base64
import json

import pytest
from nacl import bindings

from nodes.protocol import onion
from nodes.protocol.onion_server import (
    INVALID_URL,
    V4_TARGET,
    ServerDestination,
    ServerRoute,
    V4Request,
    V4Response,
    build_server_onion_request,
    decrypt_server_response,
    invalid_v4_response,
    is_server_route,
    is_target_allowed,
    open_server_request,
    parse_server_route,
)

pytestmark = pytest.mark.unit

BOTH = [onion.ENC_AES_GCM, onion.ENC_XCHACHA20]


def keypair() -> tuple[bytes, bytes]:
    pub, sec = bindings.crypto_box_keypair()
    return pub, sec


def hop() -> tuple[onion.OnionHop, bytes, bytes]:
    ed_pub, _ = bindings.crypto_sign_keypair()
    x_pub, x_sec = keypair()
    return onion.OnionHop(ed_pub, x_pub), x_sec, x_pub


# --- route at the exit node ------------------------------------------------------------------

@pytest.mark.parametrize("target,ok", [
    ("/loki/v3/lsrpc", True), ("/loki/oxen/v4/lsrpc", True), ("/oxen/v4/lsrpc", True),
    ("/not_loki/v3/lsrpc", False), ("/loki/v3", False), ("/loki/v3/lsrpc?foo=bar", False),
    ("oxen/v4/lsrpc", False), ("/file", False),
])
def test_target_filter_matches_storage_server(target: str, ok: bool) -> None:
    assert is_target_allowed(target) is ok


def test_route_defaults_and_url() -> None:
    r = parse_server_route({"host": "10.1.2.3", "target": V4_TARGET})
    assert (r.port, r.protocol) == (443, "https")
    assert r.url == "https://10.1.2.3/oxen/v4/lsrpc"
    assert ServerRoute("127.0.0.1", V4_TARGET, 80, "http").url == "http://127.0.0.1/oxen/v4/lsrpc"
    assert ServerRoute("127.0.0.1", V4_TARGET, 9, "https").url == "https://127.0.0.1:9/oxen/v4/lsrpc"
    assert ServerRoute("::1", V4_TARGET, 8080, "http").url == "http://[::1]:8080/oxen/v4/lsrpc"
    assert ServerRoute("h", "oxen/v4/lsrpc", 80, "http").url == "http://h/oxen/v4/lsrpc"


@pytest.mark.parametrize("route,allowed", [
    (ServerRoute("h", V4_TARGET, 80, "http"), True),
    (ServerRoute("h", V4_TARGET, 443, "https"), True),
    (ServerRoute("h", V4_TARGET, 21, "ftp"), False),
    (ServerRoute("h", "/file", 80, "http"), False),
])
def test_route_allowed(route: ServerRoute, allowed: bool) -> None:
    assert route.allowed is allowed


@pytest.mark.parametrize("meta", [
    {"host": 5, "target": V4_TARGET}, {"host": "h"}, {"host": "h", "target": 3},
    {"host": "h", "target": V4_TARGET, "port": "80"}, {"host": "h", "target": V4_TARGET, "port": 70000},
    {"host": "h", "target": V4_TARGET, "port": True}, {"host": "h", "target": V4_TARGET, "protocol": 1},
])
def test_route_bad_json(meta: dict) -> None:
    with pytest.raises(onion.OnionError):
        parse_server_route(meta)


def test_is_server_route() -> None:
    assert is_server_route({"host": "h", "target": V4_TARGET})
    assert not is_server_route({"headers": "", "host": "h"})
    assert not is_server_route({"destination": "ab"})


def test_invalid_url_text() -> None:
    assert INVALID_URL == "Invalid url"


# --- bencoded v4 ------------------------------------------------------------------------------

def test_v4_request_encoding_matches_file_server_docs() -> None:
    # session-file-server's documented examples (keys sorted here, as libsession's nlohmann does)
    get = V4Request("GET", "/room/some-room", {"Some-Header": "12345"}).encode()
    meta = b'{"endpoint":"/room/some-room","headers":{"Some-Header":"12345"},"method":"GET"}'
    assert get == b"l" + str(len(meta)).encode() + b":" + meta + b"e"
    post = V4Request("POST", "/some/thing", {"Some-Header": "a", "Content-Type": "text/plain"},
                     b"post body here").encode()
    assert post.endswith(b"14:post body heree")


def test_v4_request_defaults_like_libsession() -> None:
    req = V4Request.decode(V4Request("POST", "file", {"User-Agent": "x"}, b"{}").encode())
    assert req.endpoint == "/file"
    assert req.headers == {"Content-Type": "application/json"}
    assert req.body == b"{}"
    assert V4Request.decode(V4Request("GET", "/file/1").encode()).body is None


def test_v4_request_round_trip_binary_body() -> None:
    body = bytes(range(256)) * 3
    req = V4Request("POST", "/file", {"Content-Type": "application/octet-stream"}, body)
    back = V4Request.decode(req.encode())
    assert back == req
    assert back.header("content-type") == "application/octet-stream"


@pytest.mark.parametrize("data", [
    b"", b"le", b"x", b"l3:abce", b"l2:{}e" + b"x", b'l2:[]e', b"l5:{}e", b"l02:{}e",
    b'l36:{"method":"GET","endpoint":"file"}e',  # endpoint without a leading /
    b'l2:{}2:{}2:{}e', b'l16:{"method":"GET"}e',
    b'l49:{"method":"GET","endpoint":"/x","headers":"h"}e',
    b'li1ee',
])
def test_v4_request_malformed(data: bytes) -> None:
    with pytest.raises(onion.OnionError, match="Invalid v4 onion request"):
        V4Request.decode(data)


def test_v4_response_round_trip_and_header_case() -> None:
    resp = V4Response(201, {"Content-Type": "application/json", "Content-Length": "9"}, b'{"id":"1"}')
    enc = resp.encode()
    assert enc.startswith(b'l58:{"code":201,"headers":{"content-type":"application/json"}}')
    back = V4Response.decode(enc)
    assert back.code == 201
    assert back.headers == {"content-type": "application/json"}
    assert back.json() == {"id": "1"}


@pytest.mark.parametrize("data", [b"", b"l2:{}e", b'l11:{"code":"x"}0:e', b"l4:nope0:e"])
def test_v4_response_malformed(data: bytes) -> None:
    with pytest.raises(onion.OnionError):
        V4Response.decode(data)


def test_invalid_v4_response() -> None:
    r = invalid_v4_response()
    assert (r.code, r.body) == (400, b"Invalid v4 onion request")


# --- full path: client build -> relays -> exit -> server -> back ------------------------------

@pytest.mark.parametrize("enc", BOTH)
def test_through_three_hops_to_server_and_back(enc: str) -> None:
    hops = [hop() for _ in range(3)]
    srv_pub, srv_sec = keypair()
    dest = ServerDestination("127.0.0.1", 8080, srv_pub, "http")
    req = V4Request("POST", "/file", {"Content-Type": "application/octet-stream"}, b"\x00attachment")
    built = build_server_onion_request([h for h, _, _ in hops], dest, req, enc)

    # every relay peels its layer; the first two route to the next node
    frame = built.frame
    for i, (_, sec, pub) in enumerate(hops[:2]):
        layer = onion.peel_layer(frame, sec, pub)
        info = onion.relay_info(layer)
        assert info.next_ed25519_hex == hops[i + 1][0].ed25519.hex()
        frame = info.frame
    # the exit node finds the final route
    _, exit_sec, exit_pub = hops[2]
    exit_layer = onion.peel_layer(frame, exit_sec, exit_pub)
    assert is_server_route(exit_layer.meta)
    route = parse_server_route(exit_layer.meta)
    assert route == ServerRoute("127.0.0.1", V4_TARGET, 8080, "http")
    assert route.allowed and route.url == "http://127.0.0.1:8080/oxen/v4/lsrpc"
    assert exit_layer.meta["method"] == "POST"
    assert exit_layer.meta["enc_type"] == enc
    # what the exit node posts: its whole decrypted layer
    posted = onion.encode_frame(exit_layer.blob, exit_layer.meta)

    # the server decrypts with its key and answers
    got = open_server_request(posted, srv_sec, srv_pub)
    assert V4Request.decode(got.payload) == V4Request(
        "POST", "/file", {"Content-Type": "application/octet-stream"}, b"\x00attachment")
    answer = got.encrypt_reply(V4Response(200, {"content-type": "application/json"}, b'{"id":"7"}').encode())

    resp = decrypt_server_response(built, answer)
    assert resp.code == 200 and resp.json() == {"id": "7"}
    # base64 of the same answer decrypts too
    assert decrypt_server_response(built, base64.b64encode(answer)).json() == {"id": "7"}


def test_routing_json_is_libsessions_final_route() -> None:
    (h, sec, pub) = hop()
    srv_pub, _ = keypair()
    built = build_server_onion_request([h], ServerDestination("10.0.0.5", 443, srv_pub, "https"),
                                       V4Request("GET", "/file/abc"), "xchacha20")
    layer = onion.peel_layer(built.frame, sec, pub)
    assert set(layer.meta) == {"host", "target", "method", "protocol", "port", "ephemeral_key", "enc_type"}
    assert (layer.meta["host"], layer.meta["target"], layer.meta["method"], layer.meta["protocol"],
            layer.meta["port"]) == ("10.0.0.5", "/oxen/v4/lsrpc", "POST", "https", 443)
    # compact, key-sorted JSON like nlohmann's dump()
    _, outer = onion.decode_frame(built.frame)
    assert list(outer) == ["enc_type", "ephemeral_key"]


def test_server_rejects_wrong_key_and_garbage() -> None:
    (h, sec, pub) = hop()
    srv_pub, srv_sec = keypair()
    other_pub, other_sec = keypair()
    built = build_server_onion_request([h], ServerDestination("127.0.0.1", 80, srv_pub),
                                       V4Request("GET", "/file/x"))
    layer = onion.peel_layer(built.frame, sec, pub)
    posted = onion.encode_frame(layer.blob, layer.meta)
    with pytest.raises(onion.OnionError, match="Invalid ciphertext"):
        open_server_request(posted, other_sec, other_pub)
    with pytest.raises(onion.OnionError):
        open_server_request(b"\x01\x00", srv_sec, srv_pub)
    no_key = onion.encode_frame(layer.blob, {"enc_type": "aes-gcm"})
    with pytest.raises(onion.OnionError, match="ephemeral_key"):
        open_server_request(no_key, srv_sec, srv_pub)
    with pytest.raises(onion.OnionError, match="too big"):
        open_server_request(posted, srv_sec, srv_pub, max_size=len(posted) - 1)


def test_client_rejects_plain_node_error() -> None:
    (h, _, _) = hop()
    srv_pub, _ = keypair()
    built = build_server_onion_request([h], ServerDestination("127.0.0.1", 80, srv_pub),
                                       V4Request("GET", "/file/x"))
    with pytest.raises(onion.OnionError, match="not decryptable"):
        decrypt_server_response(built, b"Failed to connect to 127.0.0.1 port 9 after 0 ms")


def test_needs_an_exit_node_and_valid_destination() -> None:
    srv_pub, _ = keypair()
    with pytest.raises(onion.OnionError, match="exit"):
        build_server_onion_request([], ServerDestination("h", 80, srv_pub), V4Request("GET", "/x"))
    with pytest.raises(onion.OnionError):
        ServerDestination("h", 80, b"short")
    with pytest.raises(onion.OnionError):
        ServerDestination("h", 80, srv_pub, "ftp")


def test_snode_build_unchanged_by_refactor() -> None:
    # the service-node builder now shares wrap_path: a 3-hop request still peels to the payload
    hops = [hop() for _ in range(3)]
    dest, dsec, dpub = hop()
    req = onion.build_onion_request([h for h, _, _ in hops], dest, b'{"method":"info","params":{}}')
    frame = req.frame
    for (_, sec, pub) in hops:
        frame = onion.relay_info(onion.peel_layer(frame, sec, pub)).frame
    layer = onion.peel_layer(frame, dsec, dpub)
    assert layer.is_destination and json.loads(layer.blob) == {"method": "info", "params": {}}
