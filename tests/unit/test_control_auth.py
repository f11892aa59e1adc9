"""Issue 12, findings 2 and 4: the node admin port and seed registration are authenticated.

Node admin: every endpoint answers 401 without ``Authorization: Bearer <admin token>`` or with a
wrong one, and changes nothing then.  Seed: a proof without the testnet's join token is refused
with 401 and logged; with it the node registers.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.common.auth import bearer, bearer_ok, derive_join_token, read_secret
from nodes.common.logs import JsonLogger
from nodes.common.proof import PROOF_PATH, build_proof
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import SwarmParams
from nodes.seed.app import SeedServer, ServerConfig
from nodes.seed.registry import SeedConfig, SeedCore
from nodes.snode.admin import Observations, make_admin_app
from nodes.snode.behaviours import Behaviours
from nodes.snode.clock import Clock
from nodes.snode.peers import PeerOverrides

pytestmark = pytest.mark.unit

TOKEN = "a" * 32
ROUTES = [("GET", "state", None), ("GET", "observations", None), ("DELETE", "observations", None),
          ("GET", "behaviours", None), ("PUT", "behaviours", {"drop_stores": True}),
          ("GET", "clock", None), ("PUT", "clock", {"offset_ms": 60_000}),
          ("GET", "peer_overrides", None), ("PUT", "peer_overrides", {"ab" * 32: "127.9.9.9:1"})]


async def _state() -> dict:
    return {"ready": True}


@pytest.fixture
async def admin() -> tuple[TestClient, Behaviours, Clock, io.StringIO]:
    stream = io.StringIO()
    behaviours, clock = Behaviours(), Clock()
    app = make_admin_app(_state, Observations(), behaviours, clock, PeerOverrides(),
                         JsonLogger("sn01", stream=stream), token=TOKEN)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, behaviours, clock, stream
    await client.close()


@pytest.mark.parametrize("headers", [{}, bearer("b" * 32), bearer(TOKEN[:-1]), {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}],
                         ids=["none", "wrong", "prefix", "no-scheme", "basic"])
async def test_node_admin_refuses_without_the_token(admin, headers) -> None:
    client, behaviours, clock, stream = admin
    for method, path, body in ROUTES:
        r = await client.request(method, f"/admin/v1/{path}", json=body, headers=headers)
        assert r.status == 401, (method, path)
        assert "admin token" in (await r.json())["error"]
    assert behaviours.drop_stores is False and clock.offset_ms == 0  # nothing changed
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sum(e.get("event") == "admin_unauthorized" for e in logged) == len(ROUTES)


async def test_node_admin_serves_with_the_token(admin) -> None:
    client, behaviours, clock, _ = admin
    for method, path, body in ROUTES:
        r = await client.request(method, f"/admin/v1/{path}", json=body, headers=bearer(TOKEN))
        assert r.status == 200, (method, path, await r.text())
    assert behaviours.drop_stores is True and clock.offset_ms == 60_000


async def test_node_admin_without_a_configured_token_refuses_everything() -> None:
    app = make_admin_app(_state, Observations(), Behaviours(), Clock(), PeerOverrides(), None, token="")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for auth in ({}, bearer("")):
            r = await client.get("/admin/v1/state", headers=auth)
            assert r.status == 401


# --- seed registration ----------------------------------------------------------------------------

def _seed(tmp_path: Path, join_token: str, stream: io.StringIO) -> SeedServer:
    logger = JsonLogger("seed", stream=stream)
    core = SeedCore(SeedConfig(testnet_seed="unit", params=SwarmParams(3, 0, 3)), clock=time.time, logger=logger)
    return SeedServer(core, ServerConfig(host="127.0.0.1", port=1, https_port=0, data_dir=tmp_path,
                                         admin_token=TOKEN, join_token=join_token), logger)


def _proof(name: str) -> dict:
    ident = Identity.from_seed(derive_seed("unit", "node", name))
    return build_proof(ident, public_ip="127.0.9.1", storage_port=22021, storage_lmq_port=22020,
                       admin_port=22030, timestamp_ms=int(time.time() * 1000))


async def test_seed_refuses_a_proof_without_the_join_token(tmp_path: Path) -> None:
    stream = io.StringIO()
    join = derive_join_token(TOKEN)
    server = _seed(tmp_path, join, stream)
    async with TestClient(TestServer(server.make_app(), host="127.0.0.1")) as client:
        for headers in ({}, bearer("0" * 32), bearer(TOKEN)):  # the admin token is not the join token
            r = await client.post(PROOF_PATH, json=_proof("evil"), headers=headers)
            assert r.status == 401 and "join token" in (await r.json())["error"]
        assert server.core.nodes == {}  # not registered
        r = await client.post(PROOF_PATH, json=_proof("sn01"), headers=bearer(join))
        assert r.status == 200, await r.text()
        assert len(server.core.nodes) == 1
    refused = [e for e in map(json.loads, stream.getvalue().splitlines()) if e.get("event") == "proof_unauthorized"]
    assert len(refused) == 3 and all(e["remote"] == "127.0.0.1" and e["pubkey_ed25519"] for e in refused)


def test_join_token_is_not_the_admin_token_and_is_stable() -> None:
    assert derive_join_token(TOKEN) == derive_join_token(TOKEN) != derive_join_token("b" * 32)
    assert TOKEN not in derive_join_token(TOKEN)
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN) and bearer_ok(f"bearer  {TOKEN} ", TOKEN)
    assert not bearer_ok(f"Bearer {TOKEN}", "") and not bearer_ok(None, TOKEN)


def test_read_secret_prefers_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_SECRET", " from-env \n")
    assert read_secret(None, "X_SECRET", "--x-file") == "from-env"
    f = tmp_path / "s"
    f.write_text("from-file\n")
    assert read_secret(f, "X_SECRET", "--x-file") == "from-file"
    with pytest.raises(ValueError, match="--x-file"):
        read_secret(tmp_path / "missing", "X_SECRET", "--x-file")

