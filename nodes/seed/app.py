"""The seed's aiohttp application: JSON-RPC, proofs, admin endpoints, block timer, persistence.

Routes (one app, served over HTTP on ``--port`` and HTTPS on ``--https-port``):

* ``POST /json_rpc`` — JSON-RPC 2.0, ``get_service_nodes`` / ``get_n_service_nodes`` /
  ``get_all_service_nodes`` (PROTOCOL.md §3; see :mod:`nodes.seed.registry` for the oxend facts).
* ``POST /internal/v1/proof`` — node registration / liveness (DESIGN.md "Seed").
* admin, ``Authorization: Bearer TOKEN``: ``POST /internal/v1/block``, ``/decommission``,
  ``/recommission``, ``/deregister`` (body ``{"pubkey_ed25519": hex}``), ``GET /internal/v1/state``,
  ``GET /internal/v1/oxend`` (real storage servers served over OxenMQ: status, pings, peer reports).

With real nodes configured, the seed also serves them as their oxend over OxenMQ
(:mod:`nodes.seed.omq`): one chain, one node list, one swarm assignment for both kinds of node.

Every answer is labelled exactly ``application/json`` (JSON) or ``text/plain`` (aiohttp's own
errors), without a charset parameter: session-desktop rejects anything else from a seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nodes.common import jsonrpc
from nodes.common.auth import bearer_ok
from nodes.common.files import write_atomic
from nodes.common.http import (
    InvalidJson,
    json_error,
    json_response,
    plain_http_errors,
    read_json,
    start_site,
)
from nodes.common.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)
from nodes.common.limits import ServerLimits, limits_middleware
from nodes.common.logs import JsonLogger
from nodes.common.proof import PROOF_PATH
from nodes.common.service import StartupError
from nodes.common.tls import server_context_for
from nodes.protocol import jsonin
from nodes.protocol.constants import HARDFORK
from nodes.protocol.swarm import SwarmParams

from .omq import OxendCommands, RealNodeSpec
from .omq.commands import SERVER_BOOTSTRAP_THRESHOLD
from .registry import DEFAULT_START_HEIGHT, RPC_METHODS, InvalidParams, RequestError, SeedConfig, SeedCore
from .stall import StallMeter

if TYPE_CHECKING:
    from .omq.server import OxendServer

STATE_FILE = "seed.json"
# Requests are small (a proof is ~600 bytes, a listing request ~200): bound what one request can
# make the seed parse and compute, so no client can stall the loop that judges node liveness.
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH = 32


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    https_port: int  # 0 = no HTTPS listener
    data_dir: Path
    admin_token: str
    #: bearer token a node must send with its proofs; empty: registration is open (a seed run
    #: by hand; the harness always sets one)
    join_token: str = ""
    block_interval: float = 1.0
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __post_init__(self) -> None:
        if self.block_interval <= 0:
            raise ValueError(f"block_interval must be > 0 seconds, got {self.block_interval}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (tmp file + fsync + rename)."""
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode("utf-8"))


class SeedServer:
    """Owns a :class:`SeedCore`, serves it, produces blocks and persists the state."""

    def __init__(self, core: SeedCore, config: ServerConfig, logger: JsonLogger,
                 rng_factory: Callable[[], random.Random] | None = None) -> None:
        self.core = core
        self.config = config
        self.log = logger
        self._rng_factory = rng_factory or (lambda: random.Random(os.urandom(16)))
        self._wake = asyncio.Event()
        self._block_task: asyncio.Task[None] | None = None
        self._stall_task: asyncio.Task[None] | None = None
        self.stalls = StallMeter()
        self._runner: web.AppRunner | None = None
        self._saved_revision = -1
        self.state_path = config.data_dir / STATE_FILE
        self.urls: list[str] = []
        self.oxend: OxendServer | None = None  # set by build_server when real nodes are configured

    # --- persistence ---------------------------------------------------------------------------
    def load_state(self) -> bool:
        """Load DATA_DIR/seed.json if present; returns whether a state was restored."""
        if not self.state_path.exists():
            return False
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StartupError(f"cannot read seed state {self.state_path}: {exc}; "
                               "fix or delete the file to start from an empty network") from exc
        try:
            self.core.load_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise StartupError(f"cannot load seed state {self.state_path}: {exc}") from exc
        self._saved_revision = self.core.revision
        self.log.info("state_loaded", path=str(self.state_path), height=self.core.height,
                      nodes=len(self.core.nodes), swarms=len(self.core.swarms()))
        return True

    def persist(self, force: bool = False) -> None:
        if not force and self.core.revision == self._saved_revision:
            return
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, self.core.to_json())
        self._saved_revision = self.core.revision

    # --- blocks --------------------------------------------------------------------------------
    def produce_block(self) -> dict[str, Any]:
        result = self.core.produce_block()
        self.persist()
        if self.oxend is not None:
            self.oxend.notify_block()
        return {"height": result.height, "block_hash": result.block_hash, "recomputed": result.recomputed,
                "deregistered": result.deregistered, "active": result.active,
                "swarms": [{"swarm_id": sid, "size": n} for sid, n in result.swarm_sizes.items()]}

    async def _block_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.block_interval
        if not self.core.first_block_done:
            self.log.info("waiting_for_nodes", expect=self.core.config.expect,
                          registered=len(self.core.nodes))
            while not self.core.first_block_done and not self.core.ready_for_first_block():
                self._wake.clear()
                await self._wake.wait()
            if not self.core.first_block_done:
                self._safe_block()
        next_due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_due - loop.time()))
            self._safe_block()
            next_due += interval
            if next_due < loop.time():  # fell behind (suspended / overloaded): do not burst
                next_due = loop.time() + interval

    async def _stall_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stalls.interval)
            self.stalls.tick()

    def _safe_block(self) -> None:
        self.core.excuse_stall(self.stalls.take())
        try:
            self.produce_block()
        except Exception as exc:  # noqa: BLE001 - keep producing blocks; the error is logged
            self.log.error("block_failed", error=repr(exc), height=self.core.height)

    # --- HTTP handlers -------------------------------------------------------------------------
    async def handle_json_rpc(self, request: web.Request) -> web.Response:
        try:
            body = jsonin.loads(await request.read())
        except jsonin.JsonEncodingError as exc:
            return json_response(self._rpc_error(None, PARSE_ERROR, f"Parse error: {exc}"), status=400)
        except jsonin.JsonInputError as exc:
            return json_response(self._rpc_error(None, PARSE_ERROR, f"Parse error: {exc}"))
        if isinstance(body, list):
            if not body:
                return json_response(self._rpc_error(None, INVALID_REQUEST, "Invalid Request: empty batch"))
            if len(body) > MAX_BATCH:
                return json_response(self._rpc_error(
                    None, INVALID_REQUEST, f"Invalid Request: a batch of {len(body)} requests exceeds this "
                                           f"seed's limit of {MAX_BATCH}; split it"), status=400)
            answers = []
            for item in body:
                answers.append(self._rpc_one(item))
                await asyncio.sleep(0)  # let proofs and blocks through between listings
            return json_response(answers)
        return json_response(self._rpc_one(body))

    @staticmethod
    def _rpc_error(req_id: Any, code: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}

    def _rpc_one(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return self._rpc_error(None, INVALID_REQUEST, "Invalid Request: expected a JSON object")
        req_id = req.get("id")
        method = req.get("method")
        if not isinstance(method, str):
            return self._rpc_error(req_id, INVALID_REQUEST, "Invalid Request: `method` must be a string")
        if req.get("jsonrpc", "2.0") != "2.0":
            return self._rpc_error(req_id, INVALID_REQUEST, "Invalid Request: `jsonrpc` must be \"2.0\"")
        if method not in RPC_METHODS:
            return self._rpc_error(req_id, METHOD_NOT_FOUND,
                                   f"Method not found: {method!r} (this seed serves {', '.join(RPC_METHODS)})")
        try:
            result = self.core.get_service_nodes(req.get("params"), self._rng_factory())
        except InvalidParams as exc:
            return self._rpc_error(req_id, INVALID_PARAMS, f"Invalid params: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported to the caller and logged
            self.log.error("rpc_failed", method=method, error=repr(exc))
            return self._rpc_error(req_id, INTERNAL_ERROR, f"Internal error: {exc}")
        return jsonrpc.result(req_id, result)

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        try:
            return await read_json(request)
        except InvalidJson as exc:
            raise RequestError(400, str(exc)) from None

    async def handle_proof(self, request: web.Request) -> web.Response:
        body: Any = None
        try:
            body = await self._json_body(request)
            if (denied := self._join_denied(request, body)) is not None:
                return denied
            result = self.core.accept_proof(body)
        except RequestError as exc:
            pk = body.get("pubkey_ed25519") if isinstance(body, dict) else None
            self.log.warning("proof_rejected", status=exc.status, error=exc.message, pubkey_ed25519=pk,
                             remote=request.remote)
            return json_error(exc.status, exc.message)
        self.persist()
        if not self.core.first_block_done and self.core.ready_for_first_block():
            self._wake.set()
        return json_response(result)

    def _join_denied(self, request: web.Request, body: Any) -> web.Response | None:
        """401 (logged) for a proof without the testnet's join token, when one is set."""
        token = self.config.join_token
        if not token or bearer_ok(request.headers.get("Authorization"), token):
            return None
        pk = body.get("pubkey_ed25519") if isinstance(body, dict) else None
        self.log.warning("proof_unauthorized", pubkey_ed25519=pk if isinstance(pk, str) else None,
                         remote=request.remote, known=isinstance(pk, str) and pk in self.core.nodes)
        return json_error(401, "missing or wrong join token: send 'Authorization: Bearer <join token>' "
                               "(a node of this testnet gets it from $SESSION_TESTNET_JOIN_TOKEN)")

    def _authorized(self, request: web.Request) -> web.Response | None:
        token = self.config.admin_token
        if not token:
            return json_error(401, "admin interface disabled: start the seed with an admin token "
                                   "(--admin-token-file or $SESSION_TESTNET_ADMIN_TOKEN)")
        if not bearer_ok(request.headers.get("Authorization"), token):
            self.log.warning("admin_unauthorized", method=request.method, path=request.path,
                             remote=request.remote)
            return json_error(401, "missing or wrong admin token: send 'Authorization: Bearer <token>'")
        return None

    async def handle_block(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        result = self.produce_block()
        self._wake.set()
        self.log.info("admin_block", height=result["height"])
        return json_response(result)

    def _admin_change(self, action: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            if (denied := self._authorized(request)) is not None:
                return denied
            try:
                body = await self._json_body(request)
                if not isinstance(body, dict):
                    raise RequestError(400, "body must be {\"pubkey_ed25519\": \"<64 hex chars>\"}")
                op = getattr(self.core, action)
                result = op(body.get("pubkey_ed25519"))
            except RequestError as exc:
                return json_error(exc.status, exc.message)
            self.persist()
            return json_response(result)
        return handler

    async def handle_state(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        return json_response(self.core.snapshot())

    async def handle_oxend(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        if self.oxend is None:
            return json_response({"hardfork": list(self.core.config.hardfork), "height": self.core.height,
                                  "nodes": []})
        return json_response(self.oxend.snapshot())

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[plain_http_errors, limits_middleware(self.config.limits, MAX_BODY_BYTES)],
                              client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/json_rpc", self.handle_json_rpc)
        app.router.add_post(PROOF_PATH, self.handle_proof)
        app.router.add_post("/internal/v1/block", self.handle_block)
        app.router.add_post("/internal/v1/decommission", self._admin_change("decommission"))
        app.router.add_post("/internal/v1/recommission", self._admin_change("recommission"))
        app.router.add_post("/internal/v1/deregister", self._admin_change("deregister"))
        app.router.add_get("/internal/v1/state", self.handle_state)
        app.router.add_get("/internal/v1/oxend", self.handle_oxend)
        return app

    # --- lifecycle -----------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        tls_dir = self.config.data_dir / "tls"
        try:
            return server_context_for(tls_dir, self.config.host, "session-testnet seed")
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise StartupError(f"cannot prepare the TLS certificate in {tls_dir}: {exc}") from exc

    async def start(self) -> None:
        """Listen on HTTP (and HTTPS) and start producing blocks; raises StartupError."""
        if not self.config.join_token:
            self.log.warning("registration_open", reason="no join token (--join-token-file or "
                             "$SESSION_TESTNET_JOIN_TOKEN): any process that can reach the seed may register a node")
        try:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {self.config.data_dir}: {exc}") from exc
        listeners: list[tuple[int, ssl.SSLContext | None, str]] = [(self.config.port, None, "HTTP port")]
        if self.config.https_port:
            listeners.append((self.config.https_port, self._ssl_context(), "HTTPS port"))
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     **self.config.limits.runner_kwargs())
        await self._runner.setup()
        try:
            for port, ctx, what in listeners:
                await start_site(self._runner, self.config.host, port, what=what, ssl_context=ctx,
                                 limits=self.config.limits)
                self.urls.append(f"{'https' if ctx else 'http'}://{self.config.host}:{port}")
        except StartupError:
            await self._runner.cleanup()
            self._runner = None
            self.urls = []
            raise
        if self.oxend is not None:
            try:
                await self.oxend.start()
            except StartupError:
                await self._runner.cleanup()
                self._runner = None
                self.urls = []
                raise
        self.persist(force=True)
        self.stalls = StallMeter()
        self._stall_task = asyncio.create_task(self._stall_loop(), name="seed-stall-meter")
        self._block_task = asyncio.create_task(self._block_loop(), name="seed-blocks")
        self.log.info("listening", urls=self.urls, height=self.core.height, expect=self.core.config.expect,
                      params=asdict(self.core.config.params), block_interval=self.config.block_interval,
                      proof_timeout=self.core.config.proof_timeout)

    async def stop(self) -> None:
        for task in (self._block_task, self._stall_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._block_task = self._stall_task = None
        if self.oxend is not None:
            await self.oxend.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.persist()
        self.log.info("stopped", height=self.core.height, nodes=len(self.core.nodes))


def build_server(*, host: str, port: int, https_port: int, data_dir: Path, testnet_seed: str, expect: int,
                 params: SwarmParams, block_interval: float, proof_timeout: float, admin_token: str,
                 logger: JsonLogger, clock: Callable[[], float] = time.time,
                 real_nodes: list[RealNodeSpec] | None = None, hardfork: tuple[int, int] = HARDFORK,
                 oxenmq_timeout: float = 90.0, oxenmq_min_nodes: int = SERVER_BOOTSTRAP_THRESHOLD,
                 start_height: int = DEFAULT_START_HEIGHT, join_token: str = "") -> SeedServer:
    core = SeedCore(SeedConfig(testnet_seed=testnet_seed, expect=expect, params=params,
                               proof_timeout=proof_timeout, hardfork=hardfork, oxenmq_timeout=oxenmq_timeout,
                               start_height=start_height),
                    clock=clock, logger=logger)
    server = SeedServer(core, ServerConfig(host=host, port=port, https_port=https_port, data_dir=data_dir,
                                           admin_token=admin_token, join_token=join_token,
                                           block_interval=block_interval), logger)
    server.load_state()
    if real_nodes:
        try:  # pyzmq: only a seed with real nodes needs it
            from .omq.server import OxendServer
        except ImportError as exc:
            raise StartupError(f"serving real storage servers over OxenMQ needs pyzmq ({exc}): "
                               "pip install 'pyzmq>=25'") from exc
        server.oxend = OxendServer(OxendCommands(core, real_nodes, testnet_seed, min_first_list=oxenmq_min_nodes),
                                   logger)
    return server
