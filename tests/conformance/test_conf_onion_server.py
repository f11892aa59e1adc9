"""Onion requests to a server (v4 ``/oxen/v4/lsrpc``) through the testnet's nodes to its file
server, built independently of ``nodes.protocol.onion_server`` from the layer primitives as
libsession does (``Builder::build`` with a ServerDestination), and the exit node's answers for
what it will not or cannot forward.  Sources: docs/fileserver.md, docs/conformance.md section
"Onion requests to servers"."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest

from nodes.protocol import onion as onion_lib
from nodes.protocol.onion import OnionHop

from .wire import BuiltOnion, Snode, Wire, _seal, build_onion, decode_onion_response

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]


def bt_list(*items: bytes) -> bytes:
    return b"l" + b"".join(str(len(i)).encode() + b":" + i for i in items) + b"e"


def bt_parse(data: bytes) -> list[bytes]:
    assert data[:1] == b"l" and data[-1:] == b"e", data[:40]
    out, pos = [], 1
    while pos < len(data) - 1:
        colon = data.index(b":", pos)
        n = int(data[pos:colon])
        out.append(data[colon + 1:colon + 1 + n])
        pos = colon + 1 + n
    return out


def v4_request(method: str, endpoint: str, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> bytes:
    h = dict(headers or {})
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    meta = json.dumps({"endpoint": endpoint, "headers": h, "method": method},
                      separators=(",", ":"), sort_keys=True).encode()
    return bt_list(meta) if body is None else bt_list(meta, body)


class ServerRequest:
    """A request for the server: the onion (exit = last node of ``path``) and the server key."""

    def __init__(self, path: list[Snode], server_x25519: bytes, route: dict[str, Any],
                 payload: bytes, enc_type: str) -> None:
        srv = OnionHop(b"\x00" * 32, server_x25519)
        blob, eph, self.server_key = _seal(srv, payload, enc_type)
        meta = {**route, "ephemeral_key": eph.hex(), "enc_type": enc_type}
        # build_onion's destination layer is the exit's: frame(server ciphertext, final route)
        self.built: BuiltOnion = build_onion(path[:-1], path[-1], blob, enc_type=enc_type,
                                             dest_meta=meta)
        self.enc_type = enc_type

    def decrypt(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        plain = onion_lib.decrypt_layer(self.enc_type, self.server_key, body)
        info, content = bt_parse(plain)
        meta = json.loads(info)
        return meta["code"], meta["headers"], content


@pytest.fixture
def fileserver(testnet: Any) -> Any:
    fs = testnet.state.fileserver
    assert fs is not None, "the default testnet runs a file server"
    return fs


def route(fs: Any, **kw: Any) -> dict[str, Any]:
    out = {"host": fs.public_ip, "target": "/oxen/v4/lsrpc", "method": "POST", "protocol": "http",
           "port": fs.storage_port}
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


def three(wire: Wire) -> list[Snode]:
    return random.sample(wire.nodes, 3)


@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
async def test_upload_and_download_through_three_nodes(wire: Wire, fileserver: Any, enc: str) -> None:
    data = os.urandom(50_000)
    key = bytes.fromhex(fileserver.pubkey_x25519)
    path = three(wire)
    up = ServerRequest(path, key, route(fileserver),
                       v4_request("POST", "/file", data, {"Content-Type": "application/octet-stream"}),
                       enc)
    reply = await wire.post(f"{path[0].url}/onion_req/v2", up.built.frame)
    assert reply.status == 200, reply.text
    code, headers, body = up.decrypt(reply.body)  # raw ciphertext, not base64
    assert code == 200 and headers["content-type"] == "application/json", (code, headers, body)
    file_id = json.loads(body)["id"]
    assert file_id.isdigit()

    path = three(wire)
    down = ServerRequest(path, key, route(fileserver), v4_request("GET", f"/file/{file_id}"), enc)
    reply = await wire.post(f"{path[0].url}/onion_req/v2", down.built.frame)
    code, headers, body = down.decrypt(reply.body)
    assert (code, headers["content-type"], body) == (200, "application/octet-stream", data)

    path = three(wire)
    info = ServerRequest(path, key, route(fileserver), v4_request("GET", f"/file/{file_id}/info"), enc)
    code, _, body = info.decrypt((await wire.post(f"{path[0].url}/onion_req/v2", info.built.frame)).body)
    assert code == 200 and json.loads(body)["size"] == len(data)


async def test_over_the_size_limit_is_413(wire: Wire, fileserver: Any) -> None:
    path = three(wire)
    req = ServerRequest(path, bytes.fromhex(fileserver.pubkey_x25519), route(fileserver),
                        v4_request("POST", "/file", b"x" * 6_000_001), "xchacha20")
    reply = await wire.post(f"{path[0].url}/onion_req/v2", req.built.frame)
    assert req.decrypt(reply.body)[:1] == (413,)


@pytest.mark.parametrize("change,text", [
    ({"host": "192.0.2.1"}, "Invalid url"),        # outside the testnet (TEST-NET-1): refused
    ({"host": "filev2.getsession.org"}, "Invalid url"),  # names are never resolved
    ({"target": "/file"}, "Invalid url"),          # production forwards only /loki|/oxen …/lsrpc
    ({"target": "/oxen/v4/lsrpc?x=1"}, "Invalid url"),
    ({"protocol": "ftp"}, "Invalid url"),
    ({"target": None}, "Invalid json"),            # target is required
])
async def test_routes_the_exit_refuses_are_encrypted_400s(wire: Wire, fileserver: Any,
                                                          change: dict[str, Any], text: str) -> None:
    path = three(wire)
    req = ServerRequest(path, bytes.fromhex(fileserver.pubkey_x25519), route(fileserver, **change),
                        v4_request("GET", "/file/1"), "aes-gcm")
    reply = await wire.post(f"{path[0].url}/onion_req/v2", req.built.frame)
    assert reply.status == 200, reply.text
    # encrypted for the exit's layer (as production's wrap_proxy_response), base64
    assert decode_onion_response(req.built, reply.body) == {"status": 400, "body": text}


async def test_unreachable_server_is_a_plain_502_with_curls_text(wire: Wire, fileserver: Any) -> None:
    path = three(wire)
    req = ServerRequest(path, bytes.fromhex(fileserver.pubkey_x25519), route(fileserver, port=9),
                        v4_request("GET", "/file/1"), "aes-gcm")
    reply = await wire.post(f"{path[0].url}/onion_req/v2", req.built.frame)
    assert reply.status == 502 and reply.content_type == "text/plain", reply
    assert reply.text.startswith(f"Failed to connect to {fileserver.public_ip} port 9 after ")
    assert reply.text.endswith(" ms: Couldn't connect to server")


async def test_server_errors_pass_back_unchanged(wire: Wire, fileserver: Any) -> None:
    # encrypted for another key: the server answers a plain 400 and the relays pass it back
    path = three(wire)
    req = ServerRequest(path, os.urandom(32), route(fileserver), v4_request("GET", "/file/1"),
                        "aes-gcm")
    reply = await wire.post(f"{path[0].url}/onion_req/v2", req.built.frame)
    assert reply.status == 400 and reply.text.startswith("Invalid onion request"), reply
