"""The file server on the docker backend: onion requests through 3 nodes (containers) upload and
download a file; a host outside the testnet is refused; the file server is churned by name."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from typing import Any

import aiohttp
import docker.errors
import pytest

from harness import rpc
from harness.images import ensure_images
from harness.naming import unique_name
from harness.network import Testnet
from harness.topology import Topology
from nodes.protocol import onion
from nodes.protocol.onion import OnionHop
from nodes.protocol.onion_server import (
    ServerDestination,
    V4Request,
    build_server_onion_request,
    decrypt_server_response,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def net() -> Iterator[Testnet]:
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, OSError) as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    ensure_images(client)
    client.close()
    t = Testnet.up(Topology(name=unique_name("fs")), backend="docker", timeout=120)
    try:
        yield t
    finally:
        t.down()


def hops(path: list[Any]) -> list[OnionHop]:
    return [OnionHop.from_hex(n.pubkey_ed25519, n.pubkey_x25519) for n in path]


async def post(guard: Any, frame: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                     timeout=aiohttp.ClientTimeout(total=40)) as s:
        async with s.post(f"https://{guard.public_ip}:{guard.storage_port}/onion_req/v2",
                          data=frame) as r:
            return r.status, await r.read()


def test_upload_download_and_refusal_through_containers(net: Testnet) -> None:
    fs = net.state.fileserver
    assert fs is not None and fs.public_ip.startswith(f"10.{net.state.net_index}.0.")
    dest = ServerDestination(fs.public_ip, fs.storage_port, bytes.fromhex(fs.pubkey_x25519))
    data = os.urandom(300_000)

    async def scenario() -> None:
        path = random.sample(net.nodes, 3)
        up = build_server_onion_request(hops(path), dest, V4Request(
            "POST", "/file", {"Content-Type": "application/octet-stream"}, data))
        status, body = await post(path[0], up.frame)
        assert status == 200, body[:200]
        resp = decrypt_server_response(up, body)
        assert resp.code == 200
        file_id = resp.json()["id"]
        path = random.sample(net.nodes, 3)
        down = build_server_onion_request(hops(path), dest, V4Request("GET", f"/file/{file_id}"))
        status, body = await post(path[0], down.frame)
        assert decrypt_server_response(down, body).body == data

        # a host outside the testnet: the exit refuses it with an encrypted 400 "Invalid url"
        path = random.sample(net.nodes, 3)
        srv_blob, srv_eph, _ = onion.seal_layer("aes-gcm", dest.x25519, V4Request("GET", "/").encode())
        route = {**ServerDestination("192.0.2.1", 80, dest.x25519).final_route(srv_eph, "aes-gcm")}
        exit_hop = hops(path)[2]
        blob, eph, exit_key = onion.seal_layer("aes-gcm", exit_hop.x25519, onion.encode_frame(srv_blob, route))
        frame = onion.wrap_path(hops(path)[:2], blob, {"destination": exit_hop.ed25519.hex(),
                                                       "ephemeral_key": eph.hex(),
                                                       "enc_type": "aes-gcm"}, "aes-gcm")
        status, body = await post(path[0], frame)
        req = onion.OnionRequest(frame=frame, destination_key=exit_key, enc_type="aes-gcm")
        assert status == 200 and onion.decrypt_onion_response(req, body) == (400, "Invalid url")

    rpc.run_sync(scenario())
    obs = net.node_admin("fileserver", "observations?since=0")["observations"]
    uploads = [o for o in obs if o["channel"] == "onion" and o["method"] == "POST"]
    assert uploads and all(not o["remote_addr"].startswith("127.") for o in uploads)
    assert json.dumps(net.to_dict()["fileserver"])  # in up --json


def test_file_server_churn_by_name(net: Testnet) -> None:
    net.kill("fileserver")
    assert not net.status()["fileserver"]["running"]
    net.start("fileserver")
    net.wait_ready(timeout=60)
    assert net.status()["fileserver"]["ready"]
