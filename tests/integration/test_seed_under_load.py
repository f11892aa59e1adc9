"""The seed under hostile load (issue 12, finding 1): concurrent ~1 MiB JSON-RPC batches must not
stall the seed into deregistering healthy nodes.  A real seed process on loopback, four nodes
proving liveness every 0.3 s from this process, three concurrent big batches, bounded in time."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodes.common.proof import build_proof
from nodes.protocol.keys import Identity, derive_seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "127.0.201.1"
TESTNET_SEED = "load-seed"
PROOF_TIMEOUT = 3.0
ROOT = Path(__file__).resolve().parents[2]
NODES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, log = free_port(), tmp_path / "seed.log"
    argv = [sys.executable, "-m", "nodes.seed", "--host", HOST, "--port", str(port), "--https-port", "0",
            "--data-dir", str(tmp_path / "data"), "--testnet-seed", TESTNET_SEED, "--expect", str(NODES),
            "--min-swarm-size", "2", "--new-swarm-size", "2", "--ideal-swarm-margin", "0",
            "--block-interval", "0.5", "--proof-timeout", str(PROOF_TIMEOUT), "--log-file", str(log)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        yield f"http://{HOST}:{port}", log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def prove_forever(session: aiohttp.ClientSession, base: str, ids: list[Identity]) -> None:
    while True:
        for n, ident in enumerate(ids):
            body = build_proof(ident, public_ip=f"127.0.201.{10 + n}", storage_port=22021, storage_lmq_port=22020,
                               admin_port=22030, timestamp_ms=int(time.time() * 1000))
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.post(f"{base}/internal/v1/proof", json=body) as resp:
                    await resp.read()
        await asyncio.sleep(0.3)


async def active_count(session: aiohttp.ClientSession, base: str) -> int:
    async with session.post(f"{base}/json_rpc", json={"jsonrpc": "2.0", "id": 1, "method": "get_n_service_nodes",
                                                      "params": {"active_only": True}}) as resp:
        doc = await resp.json()
    return len(doc["result"]["service_node_states"])


def big_batch() -> bytes:
    """Just under 1 MiB (aiohttp's default body limit): ~13,000 listing requests in one batch."""
    one = {"jsonrpc": "2.0", "id": 0, "method": "get_n_service_nodes", "params": {}}
    items: list[dict[str, Any]] = []
    size = 2
    while size < 1000 * 1024:
        items.append({**one, "id": len(items)})
        size += len(json.dumps(items[-1])) + 2
    return json.dumps(items).encode()


async def test_concurrent_big_batches_do_not_deregister_nodes(seed: tuple[str, Path]) -> None:
    base, log = seed
    ids = [Identity.from_seed(derive_seed(TESTNET_SEED, "node", f"sn{i}")) for i in range(NODES)]
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        prover = asyncio.create_task(prove_forever(session, base, ids))
        try:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, KeyError):
                    if await active_count(session, base) == NODES:
                        break
                assert time.monotonic() < deadline, f"the seed never listed {NODES} nodes: {log.read_text()[-2000:]}"
                await asyncio.sleep(0.2)

            batch = big_batch()

            async def attack() -> int:
                async with aiohttp.ClientSession(timeout=timeout) as s, \
                        s.post(f"{base}/json_rpc", data=batch) as resp:
                    await resp.read()
                    return resp.status

            started = time.monotonic()
            attacks = [asyncio.create_task(attack()) for _ in range(3)]
            # how long does a small request wait while the batches are in flight?
            await asyncio.sleep(0.05)
            t0 = time.monotonic()
            listed_during = await active_count(session, base)
            small_latency = time.monotonic() - t0
            statuses = await asyncio.gather(*attacks)
            attack_s = time.monotonic() - started
            # two proof timeouts later every node must still be listed and none deregistered
            await asyncio.sleep(2 * PROOF_TIMEOUT)
            listed_after = await active_count(session, base)
        finally:
            prover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prover
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    deregistered = [r for r in records if r["event"] == "deregistered"]
    print(f"batches {statuses} in {attack_s:.2f}s; small request {small_latency:.2f}s; "
          f"listed during {listed_during}, after {listed_after}")
    assert not deregistered, f"healthy nodes deregistered: {deregistered}"
    assert listed_during == listed_after == NODES
    assert all(s in (400, 413) for s in statuses), statuses  # refused with a clear limit
    assert small_latency < 1.0, f"the seed stalled {small_latency:.2f}s on concurrent batches"
