"""The Compose renderer: the checked-in compose/default.yml, and a rendered file run with the
separate `docker-compose` tool (start, readiness through the seed's JSON-RPC, a message stored
and retrieved, `down -v`)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from harness import rpc
from harness.backends.docker_net import free_net_index
from harness.bench.quick_docker import compose_command
from harness.compose import COMPOSE_LABEL, DEFAULT_IMAGE, compose_dict, render_compose
from harness.images import ensure_images
from harness.naming import unique_name
from harness.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_default_is_current():
    text = (ROOT / "compose" / "default.yml").read_text()
    assert text == render_compose(Topology(seed="0")), (
        "compose/default.yml is out of date: regenerate it with `testnet compose render --seed 0 "
        "--image session-testnet/node:latest -o compose/default.yml`")


def test_rendered_file_is_the_documented_layout():
    yaml = pytest.importorskip("yaml")
    topo = Topology(name="layout", swarms=3, swarm_size=2, seed="s")
    text = render_compose(topo, "example/node:1", net_index=201)
    doc = yaml.safe_load(text)
    assert doc == compose_dict(topo, "example/node:1", net_index=201)
    assert doc["version"] == "2.4"
    services = doc["services"]
    assert sorted(services) == ["fileserver", "seed", "sn01", "sn02", "sn03", "sn04", "sn05", "sn06"]
    fs = services["fileserver"]
    assert fs["networks"]["testnet"]["ipv4_address"] == "10.201.0.4"
    assert fs["command"][:3] == ["python", "-m", "nodes.fileserver"]
    assert fs["volumes"] == ["fileserver-data:/data"]
    assert services["seed"]["networks"]["testnet"]["ipv4_address"] == "10.201.0.2"
    for i in range(1, 7):
        svc = services[f"sn{i:02d}"]
        assert svc["networks"]["testnet"]["ipv4_address"] == f"10.201.{i}.2"
        assert svc["command"][:3] == ["python", "-m", "nodes.snode"]
        assert "--public-ip" in svc["command"]
        assert svc["command"][svc["command"].index("--public-ip") + 1] == f"10.201.{i}.2"
        assert svc["volumes"] == [f"sn{i:02d}-data:/data"]
        assert svc["image"] == "${SESSION_TESTNET_IMAGE:-example/node:1}"
        assert svc["labels"][COMPOSE_LABEL] == "1"
        cmd = svc["command"]
        assert cmd[cmd.index("--forward-allow") + 1] == "10.201.0.0/16"
    seed_cmd = services["seed"]["command"]
    assert seed_cmd[seed_cmd.index("--expect") + 1] == "6"
    ipam = doc["networks"]["testnet"]["ipam"]["config"][0]
    assert ipam == {"subnet": "10.201.0.0/16", "ip_range": "10.201.255.0/25",
                    "gateway": "10.201.255.254"}
    assert DEFAULT_IMAGE in render_compose(topo)
    without = compose_dict(replace(topo, fileserver=False), net_index=201)["services"]
    assert "fileserver" not in without


@pytest.fixture(scope="module")
def client():
    try:
        c = docker.from_env()
        c.ping()
    except Exception as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    try:
        yield c
    finally:
        c.close()


def compose(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither docker-compose (v1) nor the docker compose (v2) plugin is installed")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


async def _wait_ready(seed_url: str, expect: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    async with rpc.new_session() as s:
        while True:
            try:
                res = await rpc.seed_rpc(s, seed_url, "get_n_service_nodes", {
                    "active_only": True,
                    "fields": {"pubkey_ed25519": True, "public_ip": True, "storage_port": True,
                               "swarm_id": True}})
                nodes = res["service_node_states"]
                if len(nodes) == expect and all(n.get("swarm_id") is not None for n in nodes):
                    # and every node knows its swarm (503 until its first poll of the seed)
                    answers = await asyncio.gather(*(rpc.storage_rpc(
                        s, f"https://{n['public_ip']}:{n['storage_port']}", "info", {})
                        for n in nodes))
                    if all(status == 200 for status, _ in answers):
                        return nodes
            except rpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seed_url}: {expect} active nodes in swarms not seen in {timeout}s")
            await asyncio.sleep(0.25)


async def _store_retrieve(nodes: list[dict[str, Any]]) -> tuple[str, list[str]]:
    sid = "05" + secrets.token_hex(32)
    data = base64.b64encode(secrets.token_bytes(32)).decode()
    url = {n["pubkey_ed25519"]: f"https://{n['public_ip']}:{n['storage_port']}" for n in nodes}
    async with rpc.new_session() as s:
        status, body = await rpc.storage_rpc(s, next(iter(url.values())), "get_swarm", {"pubkey": sid})
        assert status == 200, body
        members = [url[sn["pubkey_ed25519"]] for sn in body["snodes"]]
        status, body = await rpc.storage_rpc(s, members[0], "store", {
            "pubkey": sid, "namespace": -10, "timestamp": int(time.time() * 1000),
            "ttl": 600_000, "data": data})
        assert status == 200, body
        # read it back from another member: the store was fanned out to the swarm
        status, body = await rpc.storage_rpc(s, members[-1], "retrieve",
                                             {"pubkey": sid, "namespace": -10})
        assert status == 200, body
    return data, [m["data"] for m in body["messages"]]


def test_compose_up_store_retrieve_down(client, tmp_path):
    images = ensure_images(client)
    name = unique_name("cmp")
    topo = Topology(name=name)
    path = tmp_path / "compose.yml"
    project = name.replace("-", "")
    try:
        taken: set[int] = set()
        for _ in range(3):
            x = free_net_index(client, used=taken)
            path.write_text(render_compose(topo, images.node, net_index=x))
            cfg = compose("-f", str(path), "-p", project, "config", "-q")
            assert cfg.returncode == 0, cfg.stderr
            started = compose("-f", str(path), "-p", project, "up", "-d")
            # another test (pytest-xdist) may create a network on the same free subnet between
            # the choice and `up`: then the next free one
            if started.returncode == 0 or "overlap" not in started.stderr.lower():
                break
            taken.add(x)
            compose("-f", str(path), "-p", project, "down", "-v")
        assert started.returncode == 0, started.stderr
        nodes = asyncio.run(_wait_ready(f"http://10.{x}.0.2:22023", topo.node_count, timeout=60))
        assert {n["public_ip"] for n in nodes} == {f"10.{x}.{i}.2" for i in range(1, 7)}
        data, got = asyncio.run(_store_retrieve(nodes))
        assert data in got
    finally:
        down = compose("-f", str(path), "-p", project, "down", "-v")
    assert down.returncode == 0, down.stderr
    f = {"label": f"session-testnet={name}"}
    assert client.containers.list(all=True, filters=f) == []
    assert client.networks.list(filters=f) == []
    assert client.volumes.list(filters=f) == []
