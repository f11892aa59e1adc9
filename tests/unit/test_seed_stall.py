"""The seed bounds what one request can cost and never blames nodes for its own stalls
(issue 12, finding 1)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.common.logs import JsonLogger
from nodes.common.proof import build_proof
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import MAX_BATCH, MAX_BODY_BYTES, SeedServer, ServerConfig
from nodes.seed.registry import SeedConfig, SeedCore
from nodes.seed.stall import StallMeter

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_server(tmp_path: Path, clock: FakeClock) -> SeedServer:
    logger = JsonLogger("seed", stream=io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="unit", params=SwarmParams(1, 0, 1), proof_timeout=6.0),
                    clock=clock, logger=logger)
    return SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                         admin_token="t"), logger, rng_factory=lambda: random.Random(7))


def register(server: SeedServer, clock: FakeClock, n: int = 3) -> None:
    for i in range(n):
        ident = Identity.from_seed(derive_seed("unit", "node", f"sn{i}"))
        server.core.accept_proof(build_proof(ident, public_ip=f"127.0.9.{i + 1}", storage_port=22021,
                                             storage_lmq_port=22020, admin_port=22030,
                                             timestamp_ms=int(clock() * 1000)))


def test_a_seed_stall_is_not_counted_as_node_silence(tmp_path: Path) -> None:
    clock = FakeClock()
    server = make_server(tmp_path, clock)
    register(server, clock)
    server._safe_block()
    ticks = iter([0.0, 10.0])  # the stall meter sees its loop wake 10 s late
    server.stalls = StallMeter(clock=lambda: next(ticks))
    clock.t += 10.0  # 10 s without reading any proof (> the 6 s proof timeout)
    server._safe_block()
    assert len(server.core.active_nodes()) == 3
    # a node that is really silent is still deregistered once the seed is responsive again
    server.stalls = StallMeter(clock=time.monotonic)
    clock.t += 7.0
    server._safe_block()
    assert server.core.active_nodes() == []


def test_excuse_stall_never_moves_proofs_into_the_future(tmp_path: Path) -> None:
    clock = FakeClock()
    server = make_server(tmp_path, clock)
    register(server, clock, 1)
    server.core.excuse_stall(100.0)
    assert all(n.last_proof <= clock() for n in server.core.nodes.values())


async def test_stall_meter_measures_a_blocked_loop() -> None:
    meter = StallMeter(interval=0.02, threshold=0.1)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(meter.interval)
            meter.tick()

    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.1)
        assert meter.take() == 0.0
        time.sleep(0.5)  # the event loop is blocked, as by a CPU-heavy request
        await asyncio.sleep(0.05)
        assert 0.4 <= meter.take() <= 1.5
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_batch_length_and_body_size_are_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    server = make_server(tmp_path, clock)
    one = {"jsonrpc": "2.0", "id": 1, "method": "get_n_service_nodes", "params": {}}
    async with TestClient(TestServer(server.make_app())) as client:
        r = await client.post("/json_rpc", json=[one] * MAX_BATCH)
        assert r.status == 200 and len(await r.json()) == MAX_BATCH
        r = await client.post("/json_rpc", json=[one] * (MAX_BATCH + 1))
        doc = await r.json()
        assert r.status == 400 and doc["error"]["code"] == -32600
        assert f"limit of {MAX_BATCH}" in doc["error"]["message"]
        r = await client.post("/json_rpc", data=b" " * (MAX_BODY_BYTES + 1) + json.dumps(one).encode())
        assert r.status == 413 and str(MAX_BODY_BYTES) in await r.text()
        r = await client.post("/json_rpc", json=one)
        assert r.status == 200  # still serving


def test_start_height_is_a_long_running_chains_and_gates_the_first_block(tmp_path: Path) -> None:
    from nodes.seed.__main__ import parse_args
    from nodes.seed.registry import DEFAULT_START_HEIGHT

    assert parse_args([]).start_height == DEFAULT_START_HEIGHT >= 10_000
    assert parse_args(["--start-height", "12345"]).start_height == 12345
    with pytest.raises(SystemExit):
        parse_args(["--start-height", "-1"])
    clock = FakeClock()
    logger = JsonLogger("seed", stream=io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="unit", expect=2, params=SwarmParams(1, 0, 1), start_height=50_000),
                    clock=clock, logger=logger)
    server = SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                           admin_token="t"), logger, rng_factory=lambda: random.Random(7))
    assert core.height == 50_000 and not core.first_block_done
    register(server, clock, 1)
    assert not core.ready_for_first_block()  # expect=2
    register(server, clock, 2)
    assert core.ready_for_first_block()
    server.produce_block()
    listing = core.get_service_nodes({}, random.Random(1))
    assert listing["height"] == 50_001 and core.first_block_done
    # a restored state keeps the height its chain started at, whatever the new default
    server.persist(force=True)
    again = SeedCore(SeedConfig(testnet_seed="unit", expect=2, params=SwarmParams(1, 0, 1)), clock=clock)
    again.load_json(json.loads((tmp_path / "seed.json").read_text()))
    assert (again.height, again.start_height, again.first_block_done) == (50_001, 50_000, True)
