"""Issue 12, findings 2-4 end to end on the process backend: no secret on any command line,
owner-only secret files, a random printed testnet seed, authenticated node admin ports and a
seed that refuses proofs without the join token."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from harness import rpc
from harness.backends.process import _all_marked
from harness.naming import unique_name
from harness.network import Testnet
from harness.state import StateDir
from nodes.common.auth import ENV_KEY_SEED, derive_join_token
from nodes.common.proof import PROOF_PATH, build_proof
from nodes.protocol.keys import Identity

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Testnet, dict]]:
    name = unique_name("secrets")
    up = cli("up", "--backend", "process", "--name", name, "--swarms", "1", "--swarm-size", "3", "--json")
    try:
        assert up.returncode == 0, up.stderr
        yield Testnet.attach(name), json.loads(up.stdout)
    finally:
        cli("down", "--name", name)


def _pids(net: Testnet) -> list[int]:
    folder = str(StateDir(net.name).path)
    return [pid for pid, mark in _all_marked().items() if mark == folder]


def test_no_secret_on_any_command_line(started) -> None:
    net, _ = started
    token = net.state.admin_token
    seed = net.topology.seed
    secrets = {"admin token": token, "join token": derive_join_token(token), "testnet seed": seed}
    for n in net.nodes:
        secrets[f"key seed of {n.name}"] = net.topology.node_identity(n.name).seed_hex
    pids = _pids(net)
    assert len(pids) >= 1 + 3  # seed, nodes (and Toxiproxy)
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        for what, value in secrets.items():  # (a short seed such as "0" as a whole argument)
            leaked = [a for a in argv if (value in a if len(value) >= 8 else value == a)]
            assert not leaked, f"{what} on the command line of pid {pid}: {argv}"
    # ... the nodes have their key through the environment: forked by the launcher, in their
    # os.environ only (not even in the owner-only /proc/PID/environ, which is the launcher's)
    node_pid = net.node("sn01").runtime["pid"]
    environ = Path(f"/proc/{node_pid}/environ").read_bytes().split(b"\0")
    assert not [e for e in environ if e.startswith(f"{ENV_KEY_SEED}=".encode())]
    assert stat.S_IMODE(Path(f"/proc/{node_pid}/environ").stat().st_mode) == 0o400
    assert net.node_admin("sn01", "state")["pubkey_ed25519"] == net.node("sn01").pubkey_ed25519


def test_secret_files_are_owner_only(started) -> None:
    net, _ = started
    state_file = StateDir(net.name).state_file
    assert net.state.admin_token in state_file.read_text()
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    folder = net.save_artifacts(reason="test")
    assert stat.S_IMODE((folder / "state.json").stat().st_mode) == 0o600


def test_testnet_seed_is_random_printed_and_kept(started) -> None:
    net, info = started
    seed = info["testnet_seed"]
    assert seed != "0" and re.fullmatch(r"[0-9a-f]{16}", seed)
    assert net.topology.seed == seed  # kept in the state
    # the keys follow from it: replaying with --seed gives the same node keys
    assert {n["pubkey_ed25519"] for n in info["nodes"]} == {
        net.topology.node_identity(n["name"]).ed25519_hex for n in info["nodes"]}
    st = cli("status", "--name", net.name)
    assert st.returncode == 0 and f"--seed {seed}" in st.stdout


async def _admin(url: str, headers: dict[str, str], method: str = "GET", body: dict | None = None) -> int:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
        return r.status


def test_node_admin_needs_the_admin_token(started) -> None:
    net, _ = started
    rec = net.node("sn01")
    url = f"{rec.admin_url}/admin/v1/behaviours"
    for headers in ({}, {"Authorization": "Bearer " + "0" * 32},
                    {"Authorization": f"Bearer {derive_join_token(net.state.admin_token)}"}):
        assert asyncio.run(_admin(url, headers, "PUT", {"drop_stores": True})) == 401
        assert asyncio.run(_admin(f"{rec.admin_url}/admin/v1/observations", headers)) == 401
    assert net.node_admin("sn01", "behaviours")["drop_stores"] is False  # the harness is let in
    assert net.node_admin("sn01", "state")["ready"] is True


def test_seed_refuses_an_unknown_node_without_the_join_token(started) -> None:
    net, _ = started
    stranger = Identity.from_seed(os.urandom(32))
    body = build_proof(stranger, public_ip="127.0.0.1", storage_port=22021, storage_lmq_port=22020,
                       admin_port=22030, timestamp_ms=int(time.time() * 1000))

    async def post() -> tuple[int, str]:
        async with rpc.new_session() as s, s.post(f"{net.seed_url}{PROOF_PATH}", json=body) as r:
            return r.status, await r.text()

    status, text = asyncio.run(post())
    assert status == 401 and "join token" in text
    net.wait_for(lambda: "proof_unauthorized" in net.logs("seed"), timeout=5,
                 what="the refusal in the seed's log")
    refusals = [json.loads(line) for line in net.logs("seed").splitlines() if "proof_unauthorized" in line]
    assert [r["pubkey_ed25519"] for r in refusals] == [stranger.ed25519_hex]

    async def registered() -> list[str]:
        async with rpc.new_session() as s:
            res = await rpc.seed_rpc(s, net.seed_url, "get_service_nodes", {})
        return [e["pubkey_ed25519"] for e in res["service_node_states"]]

    assert stranger.ed25519_hex not in asyncio.run(registered())
