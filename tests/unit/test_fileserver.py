"""The file server in-process (nodes/fileserver): the HTTP API, v4 onion requests as an exit
node POSTs them, size limit, expiry, storage on disk, observations and the admin interface."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from nacl import bindings

from nodes.common.logs import JsonLogger
from nodes.fileserver.admin import make_admin_app
from nodes.fileserver.config import FILE_EXPIRY_S, MAX_FILE_SIZE, Config, ConfigError, parse_args
from nodes.fileserver.server import FileServer
from nodes.fileserver.store import is_file_id
from nodes.protocol import onion
from nodes.protocol.onion_server import (
    ServerDestination,
    V4Request,
    build_server_onion_request,
    decrypt_server_response,
)

pytestmark = pytest.mark.unit

TOKEN = "t0ken"


class Running:
    def __init__(self, fs: FileServer, public: TestServer, admin: TestServer,
                 session: aiohttp.ClientSession) -> None:
        self.fs, self.public, self.admin, self.session = fs, public, admin, session

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.public.port}{path}"

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, str]:
        async with self.session.request(method, self.url(path), data=body) as r:
            return r.status, await r.read(), r.headers.get("Content-Type", "")

    async def onion(self, req: V4Request, enc: str = "xchacha20") -> tuple[int, bytes, object]:
        """``req`` as the exit node of a 1-hop path POSTs it (its whole decrypted layer)."""
        ed_pk, _ = bindings.crypto_sign_keypair()
        x_pk, x_sk = bindings.crypto_box_keypair()
        dest = ServerDestination("127.0.0.1", self.public.port, self.fs.identity.x25519_public)
        built = build_server_onion_request([onion.OnionHop(ed_pk, x_pk)], dest, req, enc)
        layer = onion.peel_layer(built.frame, x_sk, x_pk)
        async with self.session.post(self.url("/oxen/v4/lsrpc"),
                                     data=onion.encode_frame(layer.blob, layer.meta)) as r:
            return r.status, await r.read(), built

    async def admin_get(self, path: str, token: str = TOKEN) -> tuple[int, dict]:
        async with self.session.get(f"http://127.0.0.1:{self.admin.port}{path}",
                                    headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()


def config(tmp: Path, **kw: object) -> Config:
    base = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, data_dir=tmp / "fs",
                  key_seed_hex="22" * 32, admin_token=TOKEN, max_file_size=1000)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with start(config(tmp_path)) as r:
        yield r


class start:
    def __init__(self, cfg: Config) -> None:
        self.fs = FileServer(cfg, log=JsonLogger("fs", stream=io.StringIO()))

    async def __aenter__(self) -> Running:
        self.fs.open_store()
        self.public = TestServer(self.fs.make_public_app(), host="127.0.0.1")
        self.admin = TestServer(make_admin_app(self.fs.admin_state, self.fs.observations,
                                               token=TOKEN), host="127.0.0.1")
        await self.public.start_server()
        await self.admin.start_server()
        self.session = aiohttp.ClientSession()
        return Running(self.fs, self.public, self.admin, self.session)

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.public.close()
        await self.admin.close()
        assert self.fs.store is not None
        self.fs.store.close()


# --- direct HTTP ----------------------------------------------------------------------------------

async def test_upload_download_info(running: Running) -> None:
    data = bytes(range(256)) * 3
    status, body, ctype = await running.request("POST", "/file", data)
    assert status == 200 and ctype == "application/json"
    file_id = json.loads(body)["id"]
    assert is_file_id(file_id)
    assert await running.request("GET", f"/file/{file_id}") == (200, data, "application/octet-stream")
    status, body, _ = await running.request("GET", f"/file/{file_id}/info")
    info = json.loads(body)
    assert status == 200 and info["size"] == len(data)
    assert abs(info["expires"] - info["uploaded"] - running.fs.cfg.file_expiry) < 1
    # on disk under files/<last 3 digits>/<id>
    assert (running.fs.cfg.data_dir / "files" / file_id[-3:].rjust(3, "0") / file_id).read_bytes() == data


async def test_size_limit_at_and_over(running: Running) -> None:
    assert (await running.request("POST", "/file", b"x" * 1000))[0] == 200
    assert await running.request("POST", "/file", b"x" * 1001) == (413, b'{"status_code": 413}',
                                                                    "application/json")
    assert (await running.request("POST", "/file", b""))[0] == 413


async def test_unknown_and_malformed_ids_are_404(running: Running) -> None:
    for path in ("/file/123", "/file/abc", "/file/123/info", "/nothing"):
        assert (await running.request("GET", path))[:2] == (404, b'{"status_code": 404}')
    assert (await running.request("GET", "/file"))[0] == 405


async def test_expired_files_are_gone_and_purged(tmp_path: Path) -> None:
    async with start(config(tmp_path, file_expiry=0.2)) as r:
        status, body, _ = await r.request("POST", "/file", b"short-lived")
        file_id = json.loads(body)["id"]
        assert (await r.request("GET", f"/file/{file_id}"))[0] == 200
        assert r.fs.store is not None
        path = r.fs.store.path(file_id)
        assert path.exists()
        assert r.fs.store.purge(now=time.time() + 1) == 1
        assert not path.exists()
        assert (await r.request("GET", f"/file/{file_id}"))[0] == 404


# --- onion ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("enc", ["aes-gcm", "xchacha20"])
async def test_onion_upload_then_download(running: Running, enc: str) -> None:
    data = b"\x00\x01attachment" * 10
    status, body, built = await running.onion(
        V4Request("POST", "/file", {"Content-Type": "application/octet-stream"}, data), enc)
    assert status == 200
    up = decrypt_server_response(built, body)  # type: ignore[arg-type]
    assert up.code == 200 and up.headers["content-type"] == "application/json"
    file_id = up.json()["id"]
    status, body, built = await running.onion(V4Request("GET", f"/file/{file_id}"), enc)
    down = decrypt_server_response(built, body)  # type: ignore[arg-type]
    assert (down.code, down.body, down.headers["content-type"]) == (200, data, "application/octet-stream")
    obs = running.fs.observations.since(0)
    assert [(o["channel"], o["method"], o["endpoint"], o["file_id"], o["status"]) for o in obs] == [
        ("onion", "POST", "/file", file_id, 200), ("onion", "GET", f"/file/{file_id}", file_id, 200)]
    assert all(o["remote_addr"] == "127.0.0.1" for o in obs)


async def test_onion_errors(running: Running) -> None:
    status, body, built = await running.onion(V4Request("POST", "/file", {}, b"x" * 1001))
    assert decrypt_server_response(built, body).code == 413  # type: ignore[arg-type]
    # a v4 request that does not parse: code 400, production's text
    ed_pk, _ = bindings.crypto_sign_keypair()
    x_pk, x_sk = bindings.crypto_box_keypair()
    dest = ServerDestination("127.0.0.1", running.public.port, running.fs.identity.x25519_public)
    bad = build_server_onion_request([onion.OnionHop(ed_pk, x_pk)], dest, b"not bencoded")
    layer = onion.peel_layer(bad.frame, x_sk, x_pk)
    async with running.session.post(running.url("/oxen/v4/lsrpc"),
                                    data=onion.encode_frame(layer.blob, layer.meta)) as r:
        resp = decrypt_server_response(bad, await r.read())
    assert (resp.code, resp.body) == (400, b"Invalid v4 onion request")
    # not for this server's key / not a frame: plain 400
    async with running.session.post(running.url("/oxen/v4/lsrpc"), data=b"\x01") as r:
        assert r.status == 400 and (await r.text()).startswith("Invalid onion request")


# --- admin and configuration ----------------------------------------------------------------------

async def test_admin_state_and_observations_need_the_token(running: Running) -> None:
    await running.request("POST", "/file", b"abc")
    status, st = await running.admin_get("/admin/v1/state")
    assert status == 200 and st["files"] == 1 and st["bytes"] == 3
    assert st["pubkey_x25519"] == running.fs.identity.x25519_hex
    status, obs = await running.admin_get("/admin/v1/observations?since=0")
    assert status == 200 and obs["observations"][0]["channel"] == "http"
    assert (await running.admin_get("/admin/v1/state", token="wrong"))[0] == 401


def test_config_defaults_are_production_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_TESTNET_KEY_SEED", "33" * 32)
    cfg = parse_args(["--ip", "127.0.0.1", "--data-dir", str(tmp_path)])
    assert (cfg.max_file_size, cfg.file_expiry) == (MAX_FILE_SIZE, FILE_EXPIRY_S) == (6_000_000, 1_814_400)
    with pytest.raises(ConfigError, match="--file-expiry"):
        parse_args(["--ip", "127.0.0.1", "--data-dir", str(tmp_path), "--file-expiry", "0"])
    monkeypatch.delenv("SESSION_TESTNET_KEY_SEED")
    with pytest.raises(ConfigError, match="key seed"):
        parse_args(["--ip", "127.0.0.1", "--data-dir", str(tmp_path)])
