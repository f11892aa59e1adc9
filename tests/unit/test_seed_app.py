"""Seed application pieces that need no sockets: JSON-RPC dispatch, persistence, CLI, logs."""

from __future__ import annotations

import io
import json
import random
import socket
from pathlib import Path

import pytest

from nodes.common.logs import JsonLogger
from nodes.common.proof import build_proof
from nodes.common.service import StartupError
from nodes.protocol.constants import SEED_HTTPS_PORT, SEED_PORT
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import PRODUCTION, SwarmParams
from nodes.seed.__main__ import parse_args
from nodes.seed.app import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    STATE_FILE,
    SeedServer,
    ServerConfig,
    write_json_atomic,
)
from nodes.seed.registry import SeedConfig, SeedCore

pytestmark = pytest.mark.unit

SMALL = SwarmParams(3, 0, 3)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def proof(identity: Identity, clock: FakeClock) -> dict:
    return build_proof(identity, public_ip=f"127.0.{identity.ed25519_public[0]}.1", storage_port=22021,
                       storage_lmq_port=22020, admin_port=22030, timestamp_ms=int(clock() * 1000))


def make_server(tmp_path: Path, stream: io.StringIO | None = None) -> tuple[SeedServer, FakeClock]:
    clock = FakeClock()
    logger = JsonLogger("seed", stream=stream or io.StringIO())
    core = SeedCore(SeedConfig(testnet_seed="unit", params=SMALL), clock=clock, logger=logger)
    server = SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                           admin_token="t"), logger,
                        rng_factory=lambda: random.Random(7))
    return server, clock


def ident(i: int) -> Identity:
    return Identity.from_seed(derive_seed("unit", "node", f"sn{i:02d}"))


def test_rpc_methods_are_aliases(tmp_path: Path) -> None:
    server, clock = make_server(tmp_path)
    for i in range(1, 4):
        server.core.accept_proof(proof(ident(i), clock))
    server.produce_block()
    answers = [server._rpc_one({"jsonrpc": "2.0", "id": n, "method": m, "params": {"active_only": True}})
               for n, m in enumerate(("get_n_service_nodes", "get_service_nodes", "get_all_service_nodes"))]
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert answers[0]["result"] == answers[1]["result"] == answers[2]["result"]
    assert len(answers[0]["result"]["service_node_states"]) == 3
    assert answers[0]["jsonrpc"] == "2.0"


def test_rpc_errors(tmp_path: Path) -> None:
    server, _ = make_server(tmp_path)
    err = server._rpc_one({"jsonrpc": "2.0", "id": "x", "method": "get_info"})["error"]
    assert err["code"] == METHOD_NOT_FOUND and "get_info" in err["message"]
    err = server._rpc_one({"jsonrpc": "2.0", "id": 1, "method": "get_service_nodes",
                           "params": {"limit": "all"}})["error"]
    assert err["code"] == INVALID_PARAMS and "limit" in err["message"]
    assert server._rpc_one([1])["error"]["code"] == INVALID_REQUEST
    assert server._rpc_one({"id": 1})["error"]["code"] == INVALID_REQUEST
    assert server._rpc_one({"jsonrpc": "1.0", "id": 1, "method": "get_service_nodes"})["error"]["code"] \
        == INVALID_REQUEST


def test_persist_and_reload(tmp_path: Path) -> None:
    server, clock = make_server(tmp_path)
    for i in range(1, 7):
        server.core.accept_proof(proof(ident(i), clock))
    server.persist()
    server.produce_block()  # persists by itself
    data = json.loads((tmp_path / STATE_FILE).read_text())
    assert data["height"] == 1 and len(data["nodes"]) == 6
    assert sorted(len(s["members"]) for s in data["swarms"]) == [3, 3]
    again, _ = make_server(tmp_path)
    assert again.load_state()
    assert again.core.swarms() == server.core.swarms() and again.core.height == 1
    empty, _ = make_server(tmp_path / "fresh")
    assert empty.load_state() is False


def test_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    server, _ = make_server(tmp_path)
    with pytest.raises(RuntimeError, match="seed.json"):
        server.load_state()


def test_write_json_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_logs_are_json_lines_named_seed(tmp_path: Path) -> None:
    stream = io.StringIO()
    server, clock = make_server(tmp_path, stream)
    server.core.accept_proof(proof(ident(1), clock))
    server.produce_block()
    recs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all(r["node"] == "seed" and {"ts", "level", "event"} <= set(r) for r in recs)
    block = next(r for r in recs if r["event"] == "block")
    assert block["height"] == 1 and block["active"] == 1 and block["swarm_sizes"] == {"0": 1}
    assert any(r["event"] == "registered" and r["pubkey_ed25519"] == ident(1).ed25519_hex for r in recs)


def test_cli_defaults_and_validation() -> None:
    args = parse_args([])
    assert (args.port, args.https_port) == (SEED_PORT, SEED_HTTPS_PORT)
    assert args.params == PRODUCTION and args.expect == 0
    args = parse_args(["--min-swarm-size", "3", "--new-swarm-size", "3", "--ideal-swarm-margin", "0",
                       "--https-port", "0", "--expect", "6"])
    assert args.params == SMALL and args.https_port == 0 and args.expect == 6
    for bad in (["--min-swarm-size", "4", "--new-swarm-size", "3"], ["--expect", "-1"],
                ["--port", "0"], ["--block-interval", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_busy_port_is_a_clear_startup_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server, _ = make_server(tmp_path)
        server.config = ServerConfig(host="127.0.0.1", port=port, https_port=0, data_dir=tmp_path,
                                     admin_token="t")
        with pytest.raises(StartupError, match=f"HTTP port {port} on 127.0.0.1 in use"):
            await server.start()
    assert server._runner is None and server.urls == []
    assert not (tmp_path / STATE_FILE).exists()  # nothing persisted by a failed start


async def test_answers_are_labelled_exactly_application_json(tmp_path: Path) -> None:
    """session-desktop (SeedNodeAPI.ts) rejects a seed answer whose Content-Type is not exactly
    "application/json": no charset parameter, also for errors and the admin/proof endpoints."""
    from aiohttp.test_utils import TestClient, TestServer

    server, clock = make_server(tmp_path)
    for i in range(1, 4):
        server.core.accept_proof(proof(ident(i), clock))
    server.produce_block()
    async with TestClient(TestServer(server.make_app())) as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "get_n_service_nodes",
                "params": {"active_only": True, "fields": {"public_ip": True}}}
        r = await client.post("/json_rpc", json=body)
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        assert len((await r.json())["result"]["service_node_states"]) == 3
        for data in (b"{broken", b"[]", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "nope"}).encode()):
            r = await client.post("/json_rpc", data=data)
            assert r.headers["Content-Type"] == "application/json", data
            assert "error" in await r.json()
        r = await client.get("/internal/v1/state", headers={"Authorization": "Bearer t"})
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        r = await client.get("/internal/v1/state")
        assert r.status == 401 and r.headers["Content-Type"] == "application/json"
        r = await client.post("/json_rpc/nope")
        assert r.status == 404 and r.headers["Content-Type"] == "text/plain"
        r = await client.get("/json_rpc")
        assert r.status == 405 and r.headers["Content-Type"] == "text/plain"
