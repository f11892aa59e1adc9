"""The seed as a real process: registration, first block, listing, churn, HTTPS, admin, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodes.common.proof import build_proof
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import UNASSIGNED_SWARM
from nodes.seed.registry import DEFAULT_START_HEIGHT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "127.0.200.1"
TESTNET_SEED = "itest-seed"
TOKEN = "itest-token"
PROOF_TIMEOUT = 3.0
BLOCK_INTERVAL = 0.5
ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class SeedProc:
    proc: subprocess.Popen[bytes]
    http: str
    https: str
    log: Path
    data_dir: Path

    def log_records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


async def wait_for(what: str, check: Callable[[], Awaitable[Any]], timeout: float, seed: SeedProc) -> Any:
    """Poll `check` until it returns something truthy; fail with the seed's log tail otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if seed.proc.poll() is not None:
            pytest.fail(f"seed exited with {seed.proc.returncode} while waiting for {what}; "
                        f"log: {seed.log.read_text()[-2000:] if seed.log.exists() else ''}")
        try:
            last = await check()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.1)
    tail = seed.log.read_text()[-2000:] if seed.log.exists() else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}; seed log tail:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def start_seed(tmp_path: Path) -> Iterator[Callable[[], SeedProc]]:
    """Factory: start `python -m nodes.seed` on HOST with free ports and tmp_path/data; all stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> SeedProc:
        port, https_port = free_port(HOST), free_port(HOST)
        log = tmp_path / f"seed{len(procs)}.log"
        argv = [sys.executable, "-m", "nodes.seed", "--host", HOST, "--port", str(port),
                "--https-port", str(https_port), "--data-dir", str(tmp_path / "data"),
                "--testnet-seed", TESTNET_SEED, "--expect", "6", "--min-swarm-size", "3",
                "--new-swarm-size", "3", "--ideal-swarm-margin", "0", "--block-interval", str(BLOCK_INTERVAL),
                "--proof-timeout", str(PROOF_TIMEOUT), "--admin-token", TOKEN, "--log-file", str(log)]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(proc)
        return SeedProc(proc, f"http://{HOST}:{port}", f"https://{HOST}:{https_port}", log, tmp_path / "data")

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


async def rpc(session: aiohttp.ClientSession, base: str, params: dict[str, Any],
              method: str = "get_n_service_nodes") -> dict[str, Any]:
    async with session.post(f"{base}/json_rpc",
                            json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params}) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["id"] == 7 and doc["jsonrpc"] == "2.0", doc
    return doc["result"]


class Prover:
    """Sends signed proofs for a set of identities every 0.3 s until told to stop (per node)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, ids: list[Identity]) -> None:
        self.session, self.base = session, base
        self.alive = {i.ed25519_hex: i for i in ids}
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def body(self, i: Identity, n: int) -> dict[str, Any]:
        return build_proof(i, public_ip=f"127.0.{200 + n}.1", storage_port=22021, storage_lmq_port=22020,
                           admin_port=22030, timestamp_ms=int(time.time() * 1000))

    async def send_all(self) -> None:
        for n, i in enumerate(list(self.alive.values())):
            async with self.session.post(f"{self.base}/internal/v1/proof", json=self.body(i, n)) as resp:
                if resp.status != 200:
                    self.errors.append(f"{resp.status} {await resp.text()}")

    async def run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self.send_all()
            await asyncio.sleep(0.3)


async def test_seed_end_to_end(start_seed: Callable[[], SeedProc]) -> None:
    seed = start_seed()
    ids = [Identity.from_seed(derive_seed(TESTNET_SEED, "node", f"sn{i:02d}")) for i in range(1, 7)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                     connector=aiohttp.TCPConnector(ssl=False)) as session:
        # the seed answers before any node registered: no block yet, nothing listed
        first = await wait_for("the seed to answer JSON-RPC",
                               lambda: rpc(session, seed.http, {}), 20, seed)
        # the chain starts at a long-running network's height (--start-height's default)
        assert first["height"] == DEFAULT_START_HEIGHT >= 10_000
        assert first["service_node_states"] == [] and first["status"] == "OK"

        # bad inputs get proper errors
        async with session.post(f"{seed.http}/json_rpc", data=b"{nope") as resp:
            assert (await resp.json())["error"]["code"] == -32700
        async with session.post(f"{seed.http}/json_rpc",
                                json={"jsonrpc": "2.0", "id": 1, "method": "get_block"}) as resp:
            assert (await resp.json())["error"]["code"] == -32601
        async with session.post(f"{seed.http}/json_rpc", json={"jsonrpc": "2.0", "id": 1,
                                "method": "get_service_nodes", "params": {"active_only": 1}}) as resp:
            assert (await resp.json())["error"]["code"] == -32602
        bad = build_proof(ids[0], public_ip="127.0.200.1", storage_port=22021, storage_lmq_port=0,
                          admin_port=0, timestamp_ms=int(time.time() * 1000))
        bad["storage_port"] = 1234
        async with session.post(f"{seed.http}/internal/v1/proof", json=bad) as resp:
            assert resp.status == 401 and "signature" in (await resp.json())["error"]
        bad = build_proof(ids[0], public_ip="127.0.200.1", storage_port=22021, storage_lmq_port=0,
                          admin_port=0, timestamp_ms=int((time.time() - 120) * 1000))
        async with session.post(f"{seed.http}/internal/v1/proof", json=bad) as resp:
            assert resp.status == 400 and "clock" in (await resp.json())["error"]
        async with session.get(f"{seed.http}/internal/v1/state") as resp:
            assert resp.status == 401
        async with session.post(f"{seed.http}/internal/v1/deregister", json={"pubkey_ed25519": "ab" * 32},
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 404

        prover = Prover(session, seed.http, ids)
        prover.task = asyncio.create_task(prover.run())
        try:
            async def six_assigned() -> dict[str, Any] | None:
                res = await rpc(session, seed.http, {"active_only": True})
                states = res["service_node_states"]
                ok = res["height"] >= DEFAULT_START_HEIGHT + 1 and len(states) == 6 and all(
                    s["swarm_id"] != UNASSIGNED_SWARM for s in states)
                return res if ok else None

            res = await wait_for("the first block with 6 assigned nodes", six_assigned, 20, seed)
            assert not prover.errors, prover.errors
            states = res["service_node_states"]
            assert {s["pubkey_ed25519"] for s in states} == {i.ed25519_hex for i in ids}
            assert Counter(s["swarm_id"] for s in states) == Counter({0: 3, 0x7FFF_FFFF_FFFF_FFFF: 3})
            s0 = states[0]
            assert s0["active"] is True and s0["funded"] is True
            assert s0["service_node_pubkey"] == s0["pubkey_ed25519"]
            assert s0["storage_server_version"][0] == 2 and len(s0["storage_server_version"]) == 3
            assert isinstance(s0["swarm_id"], int) and s0["storage_port"] == 22021
            assert res["block_hash"] == derive_seed(TESTNET_SEED, "block", str(res["height"])).hex()

            # field filtering, both the dict and the list form
            filt = await rpc(session, seed.http, {"active_only": True,
                                                  "fields": {"public_ip": True, "storage_port": True,
                                                             "pubkey_ed25519": True, "swarm_id": True}})
            assert all(set(s) == {"public_ip", "storage_port", "pubkey_ed25519", "swarm_id"}
                       for s in filt["service_node_states"])
            filt = await rpc(session, seed.http, {"fields": ["pubkey_x25519"]}, method="get_service_nodes")
            assert sorted(s["pubkey_x25519"] for s in filt["service_node_states"]) == sorted(
                i.x25519_hex for i in ids)
            limited = await rpc(session, seed.http, {"active_only": True, "limit": 2})
            assert len(limited["service_node_states"]) == 2

            # the same JSON-RPC over HTTPS
            over_tls = await rpc(session, seed.https, {"active_only": True, "fields": ["pubkey_ed25519", "swarm_id"]})
            assert {(s["pubkey_ed25519"], s["swarm_id"]) for s in over_tls["service_node_states"]} == {
                (s["pubkey_ed25519"], s["swarm_id"]) for s in states}

            # churn: one node stops sending proofs -> deregistered -> its 2-node swarm dissolves
            silent = ids[0].ed25519_hex
            del prover.alive[silent]

            async def gone() -> dict[str, Any] | None:
                r = await rpc(session, seed.http, {"fields": ["pubkey_ed25519", "swarm_id"]})
                pks = {s["pubkey_ed25519"] for s in r["service_node_states"]}
                swarms = Counter(s["swarm_id"] for s in r["service_node_states"])
                return r if silent not in pks and len(pks) == 5 and len(swarms) == 1 else None

            after = await wait_for("deregistration of the silent node and the recomputed swarms", gone,
                                   PROOF_TIMEOUT + 10, seed)
            assert Counter(s["swarm_id"] for s in after["service_node_states"]).most_common(1)[0][1] == 5
            dereg = [r for r in seed.log_records() if r["event"] == "deregistered"]
            assert [(r["pubkey_ed25519"], r["reason"]) for r in dereg] == [(silent, "proof_timeout")]
            assert any(r["event"] == "swarms_recomputed" and r["height"] > res["height"]
                       for r in seed.log_records())
            blocks = [r for r in seed.log_records() if r["event"] == "block"]
            assert blocks and all({"height", "active", "swarm_sizes"} <= set(r) for r in blocks)

            # admin state with the token
            async with session.get(f"{seed.http}/internal/v1/state",
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
                state = await resp.json()
            assert len(state["nodes"]) == 5 and state["height"] >= after["height"]
            assert all(n["last_proof_age"] < PROOF_TIMEOUT for n in state["nodes"])
        finally:
            prover.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prover.task

    # graceful shutdown: SIGTERM -> exit 0, final state persisted
    seed.proc.send_signal(signal.SIGTERM)
    assert seed.proc.wait(timeout=10) == 0
    assert any(r["event"] == "stopped" for r in seed.log_records())
    persisted = json.loads((seed.data_dir / "seed.json").read_text())
    assert len(persisted["nodes"]) == 5 and persisted["height"] >= DEFAULT_START_HEIGHT + 2
    assert (seed.data_dir / "tls" / "cert.pem").exists()

    # a restarted seed keeps the layout and the height
    layout = {pk: n for pk, n in ((m, sw["swarm_id"]) for sw in persisted["swarms"] for m in sw["members"])}
    again = start_seed()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        res = await wait_for("the restarted seed to answer", lambda: rpc(session, again.http, {}), 20, again)
        assert res["height"] >= persisted["height"]
        assert {s["pubkey_ed25519"]: s["swarm_id"] for s in res["service_node_states"]} == layout
    assert any(r["event"] == "state_loaded" for r in again.log_records())
