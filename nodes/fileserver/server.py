"""The file server: wiring, the public HTTP app (file API + ``/oxen/v4/lsrpc``), purging."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from nodes.common.http import plain_http_errors, start_site, text_response
from nodes.common.limits import ServerLimits
from nodes.common.logs import JsonLogger
from nodes.common.service import StartupError
from nodes.protocol.keys import Identity
from nodes.protocol.onion import OnionError
from nodes.protocol.onion_server import (
    MAX_SERVER_REQUEST,
    V4_TARGET,
    V4Request,
    V4Response,
    invalid_v4_response,
    open_server_request,
)

from .admin import Observations, make_admin_app
from .api import FileApi
from .config import Config
from .store import FileStore

#: the largest request body the public port reads: an onion request (10 MiB) or an upload
MAX_BODY = MAX_SERVER_REQUEST + 64 * 1024


class FileServer:
    def __init__(self, cfg: Config, log: JsonLogger | None = None) -> None:
        self.cfg = cfg
        self.identity = Identity.from_seed_hex(cfg.key_seed_hex)
        self.log = log or JsonLogger(cfg.name, cfg.log_file, level=cfg.log_level)
        self.observations = Observations()
        self.limits = ServerLimits()
        self.store: FileStore | None = None
        self.api: FileApi
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def open_store(self) -> None:
        try:
            self.store = FileStore(self.cfg.data_dir)
        except Exception as e:  # noqa: BLE001 - sqlite3/OS errors: report and stop
            raise StartupError(f"cannot open the file store in {self.cfg.data_dir}: {e}") from e
        self.api = FileApi(self.store, self.cfg.max_file_size, self.cfg.file_expiry, self.log)

    # --- public app --------------------------------------------------------------------------
    def make_public_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[plain_http_errors])
        app.router.add_post(V4_TARGET, self.h_onion)
        app.router.add_route("*", "/{tail:.*}", self.h_direct)
        return app

    async def h_direct(self, request: web.Request) -> web.Response:
        body = await request.read()
        ans = await self.api.handle(request.method, request.path, request.headers, body)
        self.observations.record(remote_addr=request.remote, channel="http", method=request.method,
                                 endpoint=request.path, status=ans.status, file_id=ans.file_id,
                                 size=ans.size)
        return web.Response(status=ans.status, body=ans.body, content_type=ans.content_type)

    async def h_onion(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            req = open_server_request(body, self.identity.x25519_secret, self.identity.x25519_public)
        except OnionError as e:
            self.log.info("onion_rejected", remote=request.remote, error=str(e))
            self.observations.record(remote_addr=request.remote, channel="onion", method=None,
                                     endpoint=None, status=400)
            return text_response(400, f"Invalid onion request: {e}")
        try:
            v4 = V4Request.decode(req.payload)
        except OnionError as e:
            self.log.info("onion_v4_invalid", remote=request.remote, error=str(e))
            self.observations.record(remote_addr=request.remote, channel="onion", method=None,
                                     endpoint=None, status=400)
            return self._reply(req.encrypt_reply(invalid_v4_response().encode()))
        ans = await self.api.handle(v4.method, v4.endpoint, v4.headers, v4.body or b"")
        self.observations.record(remote_addr=request.remote, channel="onion", method=v4.method,
                                 endpoint=v4.endpoint, status=ans.status, file_id=ans.file_id,
                                 size=ans.size)
        resp = V4Response(ans.status, {"content-type": ans.content_type}, ans.body)
        return self._reply(req.encrypt_reply(resp.encode()))

    @staticmethod
    def _reply(data: bytes) -> web.Response:
        return web.Response(status=200, body=data, content_type="application/octet-stream")

    # --- admin -------------------------------------------------------------------------------
    def admin_state(self) -> dict[str, Any]:
        files, size = self.store.totals() if self.store else (0, 0)
        return {"pubkey_x25519": self.identity.x25519_hex, "pubkey_ed25519": self.identity.ed25519_hex,
                "public_ip": self.cfg.public_ip, "port": self.cfg.port, "files": files, "bytes": size,
                "max_file_size": self.cfg.max_file_size, "file_expiry_s": self.cfg.file_expiry}

    # --- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.open_store()
        if not cfg.admin_token:
            self.log.warning("admin_disabled", reason="no admin token: every admin call is refused")
        await self._listen(self.make_public_app(), cfg.port, "HTTP port")
        await self._listen(make_admin_app(self.admin_state, self.observations, token=cfg.admin_token,
                                          log=self.log), cfg.admin_port, "admin port")
        self.log.info("started", ip=cfg.ip, public_ip=cfg.public_ip, port=cfg.port,
                      admin_port=cfg.admin_port, pubkey_x25519=self.identity.x25519_hex,
                      max_file_size=cfg.max_file_size, file_expiry_s=cfg.file_expiry)
        self._tasks.append(asyncio.create_task(self._purge_loop()))

    async def _listen(self, app: web.Application, port: int, what: str) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.limits.runner_kwargs())
        await runner.setup()
        try:
            await start_site(runner, self.cfg.ip, port, what=what, limits=self.limits)
        except StartupError:
            await runner.cleanup()
            raise
        self._runners.append(runner)

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.purge_interval)
            if self.store is not None:
                n = self.store.purge()
                if n:
                    self.log.info("files_expired", count=n)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in reversed(self._runners):
            await r.cleanup()
        if self.store is not None:
            self.store.close()
        self.log.info("stopped")
