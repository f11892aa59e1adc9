"""The file server in a real testnet (process backend): onion requests through 3 nodes upload
and download a file, what the exit node and the server observe, churn and latency on it by
name, and its place in ``up --json`` / ``status``."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import aiohttp
import pytest

from harness.faults import Faults
from nodes.protocol.onion import OnionError, OnionHop
from nodes.protocol.onion_server import (
    ServerDestination,
    V4Request,
    V4Response,
    build_server_onion_request,
    decrypt_server_response,
)

pytestmark = [pytest.mark.integration, pytest.mark.backends("process")]


class Client:
    def __init__(self, testnet: Any) -> None:
        self.net = testnet
        fs = testnet.state.fileserver
        self.dest = ServerDestination(fs.public_ip, fs.storage_port, bytes.fromhex(fs.pubkey_x25519))

    def path(self) -> list[Any]:
        return random.sample(self.net.nodes, 3)

    async def send(self, req: V4Request) -> tuple[int, bytes, list[Any], Any]:
        path = self.path()
        hops = [OnionHop.from_hex(n.pubkey_ed25519, n.pubkey_x25519) for n in path]
        built = build_server_onion_request(hops, self.dest, req)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                         timeout=aiohttp.ClientTimeout(total=40)) as s:
            async with s.post(f"https://{path[0].public_ip}:{path[0].storage_port}/onion_req/v2",
                              data=built.frame) as r:
                return r.status, await r.read(), path, built

    async def call(self, req: V4Request) -> tuple[V4Response, list[Any]]:
        status, body, path, built = await self.send(req)
        assert status == 200, (status, body[:200])
        return decrypt_server_response(built, body), path


def observations(testnet: Any, name: str) -> list[dict[str, Any]]:
    return testnet.node_admin(name, "observations?since=0")["observations"]


async def test_upload_and_download_through_three_nodes(testnet: Any) -> None:
    fs = testnet.state.fileserver
    assert fs.pubkey_x25519 == testnet.topology.fileserver_identity().x25519_hex
    out = testnet.to_dict()["fileserver"]
    assert out["url"] == f"http://{fs.public_ip}:{fs.storage_port}" and out["proxy"] == "fileserver"
    status = testnet.status()["fileserver"]
    assert status["running"] and status["ready"]

    client = Client(testnet)
    data = os.urandom(200_000)
    up, path = await client.call(V4Request("POST", "/file", {"Content-Type": "application/octet-stream"}, data))
    assert up.code == 200
    file_id = up.json()["id"]
    down, _ = await client.call(V4Request("GET", f"/file/{file_id}"))
    assert (down.code, down.body) == (200, data)

    # the exit node forwarded to the server and saw no account; the server saw the file id,
    # from an address that is not the guard's side of the path (the exit, through the proxy)
    exit_obs = [o for o in observations(testnet, path[2].name) if o.get("server")]
    assert exit_obs and exit_obs[-1]["server"] == f"http://{fs.public_ip}:{fs.storage_port}/oxen/v4/lsrpc"
    assert exit_obs[-1]["accounts"] == [] and exit_obs[-1]["hop"] == "relay"
    fs_obs = [o for o in observations(testnet, "fileserver") if o["file_id"] == file_id]
    assert [(o["channel"], o["method"]) for o in fs_obs] == [("onion", "POST"), ("onion", "GET")]
    guard_obs = [o for o in observations(testnet, path[0].name)
                 if o["channel"] == "onion" and o["next_hop"] == path[1].pubkey_ed25519]
    assert guard_obs and all(o["server"] is None for o in guard_obs)  # it never names the server


async def test_killed_file_server_fails_clearly_then_serves_after_start(testnet: Any) -> None:
    client = Client(testnet)
    testnet.kill("fileserver")
    try:
        status, body, _, built = await client.send(V4Request("POST", "/file", {}, b"while down"))
        # the exit node reaches the proxy, which has no upstream: the connection is closed
        # (Toxiproxy) or refused; either way a plaintext 5xx, not an encrypted answer
        assert status in (502, 504), (status, body)
        with pytest.raises(OnionError):
            decrypt_server_response(built, body)
    finally:
        testnet.start("fileserver")
    testnet.wait_ready(timeout=30)
    up, _ = await client.call(V4Request("POST", "/file", {}, b"after restart"))
    assert up.code == 200


async def test_latency_on_the_file_server_by_name(testnet: Any) -> None:
    client = Client(testnet)
    req = V4Request("GET", "/file/1/info")
    t0 = time.monotonic()
    assert (await client.call(req))[0].code == 404
    base = time.monotonic() - t0
    faults = Faults(testnet)
    fault = faults.latency("fileserver", ms=600)
    try:
        t0 = time.monotonic()
        assert (await client.call(req))[0].code == 404
        slow = time.monotonic() - t0
    finally:
        faults.remove(fault)
    assert slow >= 0.6, (base, slow)
    assert "fileserver" in faults.status()["nodes"]
