"""The storage node: wiring, the storage-port HTTPS app, background loops, startup/shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from nodes.common.http import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    binary_response,
    json_response,
    json_text_response,
    start_site,
    text_response,
)
from nodes.common.lean_http import LeanReply, LeanRequest, LeanRoutes
from nodes.common.limits import BodyBudget, ServerLimits, limits_middleware
from nodes.common.logs import JsonLogger
from nodes.common.service import StartupError
from nodes.common.tls import server_context_for
from nodes.protocol import jsonin
from nodes.protocol.constants import MAX_REQUEST_BODY, STORAGE_SERVER_VERSION
from nodes.protocol.keys import Identity

from .admin import Observations, make_admin_app
from .behaviours import Behaviours
from .clock import Clock
from .config import Config
from .fanout import BUNDLE, MAX_BUNDLE_REQUESTS, SwarmFanout
from .onion_handler import OnionHandler
from .peers import SWARM_PATH, PeerAuthError, PeerClient, PeerOverrides
from .ratelimit import RateLimiter
from .replication import Replicator
from .requests import RECURSIVE_METHODS, accounts_of
from .rpc import Response, RpcHandler
from .seed_client import SeedClient, SeedError
from .server_forward import ForwardPolicy, ServerForwarder
from .storage import Storage
from .swarm_view import SwarmView, swarm_id_str

__all__ = ["Node", "StartupError", "to_lean", "to_web"]

#: first retry of a proof the seed did not take before the node was ever registered (doubling
#: up to ``proof_interval``): the seed may still be starting when the node is
STARTUP_RETRY_S = 0.1
#: polls of the seed a second by all nodes not in a swarm yet together (see Node.poll_delay)
UNREADY_POLLS_PER_S = 40.0
#: the shortest poll interval of a node not in a swarm yet
UNREADY_POLL_MIN_S = 0.1


_text = text_response


def to_web(resp: Response) -> web.Response:
    """A storage RPC answer as the storage server renders it: exactly ``application/json``,
    ``text/plain`` (error strings) or ``application/octet-stream`` (binary, active_nodes_bin)."""
    if resp.is_json:
        return json_text_response(resp.body_text(), resp.status)
    if resp.is_binary:
        return binary_response(bytes(resp.body), resp.status)  # type: ignore[arg-type]
    return text_response(resp.status, resp.body_text())


def to_lean(resp: Response) -> LeanReply:
    """The same answer as :func:`to_web`, for the lean front (nodes/common/lean_http.py)."""
    if resp.is_json:
        return LeanReply(resp.status, resp.body_text().encode("utf-8"), JSON_CONTENT_TYPE)
    if resp.is_binary:
        return LeanReply(resp.status, bytes(resp.body), BINARY_CONTENT_TYPE)  # type: ignore[arg-type]
    return LeanReply(resp.status, resp.body_text().encode("utf-8"), TEXT_CONTENT_TYPE)


class Node:
    def __init__(self, cfg: Config, log: JsonLogger | None = None) -> None:
        self.cfg = cfg
        self.identity = Identity.from_seed_hex(cfg.key_seed_hex)
        self.name = cfg.name or self.identity.ed25519_hex[:12]
        self.log = log or JsonLogger(self.name, cfg.log_file, level=cfg.log_level)
        self.clock = Clock()
        self.behaviours = Behaviours()
        self.observations = Observations()
        self.view = SwarmView(my_pubkey=self.identity.ed25519_hex)
        self.ratelimiter = RateLimiter(cfg.rate_limit)
        self.limits = ServerLimits()
        #: the storage port's lean front (made with the app: make_storage_app)
        self.lean: LeanRoutes | None = None
        self.storage: Storage | None = None
        self.peer_overrides = PeerOverrides()
        self.peers = PeerClient(self.identity, overrides=self.peer_overrides)
        self.forwarder = ServerForwarder(ForwardPolicy(cfg.forward_allow))
        self.seed = SeedClient(cfg.seed_url, self.identity, cfg.public_ip, cfg.port, cfg.lmq_port,
                               cfg.admin_port, timeout=cfg.seed_timeout, join_token=cfg.join_token)
        self.fanout = SwarmFanout(self.peers, cfg.fanout_timeout, self.log)
        self._poll_now = asyncio.Event()
        self._replicate_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.AppRunner] = []
        self._seed_ok: bool | None = None
        #: digest of the last node list from the seed ("": none yet, or a seed without digests)
        self._nodes_hash = ""
        self._proof_ok: bool | None = None
        self.rpc: RpcHandler
        self.onion: OnionHandler
        self.replicator: Replicator

    # --- view ----------------------------------------------------------------------------------
    def get_view(self) -> SwarmView:
        return self.view

    def set_view(self, new: SwarmView) -> None:
        old = self.view
        self.view = new
        changed = dict(old.swarms) != dict(new.swarms) or old.my_swarm_id != new.my_swarm_id
        if old.ready != new.ready:
            if new.ready:
                self.log.info("ready", swarm_id=swarm_id_str(new.my_swarm_id or 0),
                              members=list(new.swarms.get(new.my_swarm_id or 0, ())))
            else:
                self.log.warning("not_ready", reason=new.not_ready_reason())
        if changed:
            self.log.info("swarm_map_changed", height=new.height, my_swarm=(
                swarm_id_str(new.my_swarm_id) if new.my_swarm_id is not None else None),
                swarms={swarm_id_str(k): len(v) for k, v in new.swarms.items()})
            self.replicator.on_view_change(old if old.nodes else None, new)
            self._replicate_now.set()

    def request_poll(self) -> None:
        self._poll_now.set()

    # --- startup -------------------------------------------------------------------------------
    def _build_handlers(self) -> None:
        assert self.storage is not None
        self.rpc = RpcHandler(self.identity, self.storage, self.clock, self.get_view, self.fanout,
                              self.seed.json_rpc, self.behaviours, self.log)
        self.onion = OnionHandler(self.identity, self.get_view, self.rpc, self.peers, self.behaviours,
                                  self.cfg.relay_timeout, self.log, self.forwarder)
        self.replicator = Replicator(self.storage, self.clock, self.peers, self.get_view, self.log,
                                     on_stale_view=self.request_poll)

    async def start(self) -> None:
        cfg = self.cfg
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            ctx = server_context_for(cfg.data_dir / "tls", cfg.public_ip, self.identity.ed25519_hex)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise StartupError(f"cannot prepare TLS certificate in {cfg.data_dir / 'tls'}: {e}") from e
        try:
            self.storage = Storage(cfg.data_dir / "storage.db")
        except Exception as e:  # noqa: BLE001 - sqlite3/OS errors: report and stop
            raise StartupError(f"cannot open database {cfg.data_dir / 'storage.db'}: {e}") from e
        self._build_handlers()
        if not cfg.admin_token:
            self.log.warning("admin_disabled", reason="no admin token (--admin-token-file or "
                             "$SESSION_TESTNET_ADMIN_TOKEN): every admin call is refused")
        app = self.make_storage_app()
        await self._listen(app, cfg.ip, cfg.port, ctx, "storage", lean=self.lean)
        await self._listen(make_admin_app(self.admin_state, self.observations, self.behaviours,
                                          self.clock, self.peer_overrides, self.log,
                                          token=cfg.admin_token),
                           cfg.ip, cfg.admin_port, None, "admin")
        self.log.info("started", ip=cfg.ip, public_ip=cfg.public_ip, port=cfg.port,
                      admin_port=cfg.admin_port, pubkey_ed25519=self.identity.ed25519_hex,
                      pubkey_x25519=self.identity.x25519_hex, seed_url=cfg.seed_url,
                      messages=await self.storage.count())
        for coro in (self._proof_loop(), self._poll_loop(), self._purge_loop(), self._replication_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def _listen(self, app: web.Application, ip: str, port: int, ctx: ssl.SSLContext | None,
                      what: str, lean: LeanRoutes | None = None) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.limits.runner_kwargs())
        await runner.setup()
        try:
            await start_site(runner, ip, port, what=f"{what} port", ssl_context=ctx, limits=self.limits,
                             lean=lean)
        except StartupError:
            await runner.cleanup()
            raise
        self._runners.append(runner)

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in reversed(self._runners):
            await r.cleanup()
        await self.peers.close()
        await self.forwarder.close()
        await self.seed.close()
        if self.storage is not None:
            self.storage.close()
        self.log.info("stopped")

    # --- background loops ----------------------------------------------------------------------
    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if event is not None:
            waiters.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if event is not None:
            event.clear()

    async def _proof_loop(self) -> None:
        retry = STARTUP_RETRY_S  # until the first proof is accepted (the seed may start later)
        registered = False
        while not self._stop.is_set():
            try:
                await self.seed.send_proof()
                if self._proof_ok is not True:
                    self.log.info("proof_accepted", seed_url=self.cfg.seed_url)
                self._proof_ok = True
                if not registered:  # fetch the node list now, not a poll interval later
                    registered = True
                    self.request_poll()
            except SeedError as e:
                wait = self.cfg.proof_interval if registered else min(retry, self.cfg.proof_interval)
                retry *= 2
                if self._proof_ok is not False:
                    self.log.warning("proof_failed", error=str(e), retry_in_s=wait)
                self._proof_ok = False
                await self._sleep(wait)
                continue
            await self._sleep(self.cfg.proof_interval)

    async def poll_once(self) -> None:
        result = await self.seed.get_service_nodes(self._nodes_hash)
        height, block_hash = int(result.get("height") or 0), str(result.get("block_hash") or "")
        if "service_node_states" not in result:  # unchanged since the list of self._nodes_hash
            self.set_view(dataclasses.replace(self.view, height=height, block_hash=block_hash))
            return
        self.set_view(SwarmView.build(self.identity.ed25519_hex, result["service_node_states"],
                                      height, block_hash))
        self._nodes_hash = str(result.get("nodes_hash") or "")

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.poll_once()
                if self._seed_ok is not True:
                    self.log.info("seed_poll_ok", nodes=len(self.view.nodes), swarms=len(self.view.swarms))
                self._seed_ok = True
            except SeedError as e:
                if self._seed_ok is not False:
                    self.log.warning("seed_poll_failed", error=str(e), retry_in_s=self.cfg.poll_interval)
                self._seed_ok = False
            except Exception as e:  # noqa: BLE001 - keep polling whatever the seed sends
                self.log.error("seed_poll_error", error=repr(e))
            await self._sleep(self.poll_delay(), self._poll_now)

    def poll_delay(self) -> float:
        """Seconds until the next poll of the seed: ``poll_interval`` once the node is in a
        swarm (or while the seed has not taken its proof); registered but not in a swarm yet,
        shorter (the first block assigns swarms right after the last expected
        node registered, and readiness waits for every node to see it), scaled with the listed
        nodes so that the unready nodes of a testnet ask the seed ~UNREADY_POLLS_PER_S times
        a second together, whatever its size."""
        if self.view.ready or self._proof_ok is not True:  # in a swarm, or not registered
            return self.cfg.poll_interval
        fast = max(UNREADY_POLL_MIN_S, len(self.view.nodes) / UNREADY_POLLS_PER_S)
        return min(self.cfg.poll_interval, fast)

    async def _purge_loop(self) -> None:
        assert self.storage is not None
        while not self._stop.is_set():
            try:
                n = await self.storage.purge_expired(self.clock.now_ms())
                if n:
                    self.log.info("purged_expired", messages=n)
            except Exception as e:  # noqa: BLE001
                self.log.error("purge_failed", error=repr(e))
            await self._sleep(self.cfg.purge_interval)

    async def _replication_loop(self) -> None:
        while not self._stop.is_set():
            await self._sleep(self.cfg.poll_interval, self._replicate_now)
            if self._stop.is_set():
                break
            if self.replicator.has_work:
                try:
                    await self.replicator.sync_once()
                except Exception as e:  # noqa: BLE001
                    self.log.error("replication_failed", error=repr(e))

    # --- admin ---------------------------------------------------------------------------------
    async def admin_state(self) -> dict[str, Any]:
        v = self.view
        sid = v.my_swarm_id
        assert self.storage is not None
        return {
            "name": self.name,
            "pubkey_ed25519": self.identity.ed25519_hex,
            "pubkey_x25519": self.identity.x25519_hex,
            "public_ip": self.cfg.public_ip,
            "storage_port": self.cfg.port,
            "admin_port": self.cfg.admin_port,
            "swarm_id": sid,
            "swarm_members": list(v.swarms.get(sid, ())) if sid is not None else [],
            "ready": v.ready,
            "not_ready_reason": None if v.ready else v.not_ready_reason(),
            "height": v.height,
            "messages": await self.storage.count(),
            "clock_offset_ms": self.clock.offset_ms,
            "behaviours": self.behaviours.to_json(),
            "peer_overrides": self.peer_overrides.to_json(),
            "version": list(STORAGE_SERVER_VERSION),
            # requests this node started since it started (idle traffic: testnet bench --scale)
            "requests_sent": {"seed": self.seed.requests_sent, "peers": self.peers.requests_sent},
            # requests to peers that went in bundles (nodes/snode/fanout.py)
            "fanout": self.fanout.stats(),
            # storage-port requests answered by the lean front, and connections it handed to aiohttp
            "lean_http": ({"answered": self.lean.answered, "handed_over": self.lean.handed_over}
                          if self.lean is not None else None),
        }

    # --- storage-port app ----------------------------------------------------------------------
    def make_storage_app(self) -> web.Application:
        """The storage port's aiohttp app, and (``self.lean``) the lean front that answers its
        busiest routes before it (nodes/common/lean_http.py): the same handlers' work, and one
        budget of request bodies held at once for both."""
        max_size = MAX_REQUEST_BODY + 1024 * 1024
        budget = BodyBudget(self.limits.max_inflight_body_bytes)
        self.lean = LeanRoutes(
            {"/storage_rpc/v1": self._leaned(self.lean_storage_rpc),
             "/onion_req/v2": self._leaned(self.lean_onion), SWARM_PATH: self._leaned(self.lean_swarm)},
            max_body=MAX_REQUEST_BODY, limits=self.limits, budget=budget,
            on_error=lambda path, e: self.log.error("request_failed", path=path, error=repr(e)))
        app = web.Application(client_max_size=max_size,
                              middlewares=[self._middleware, limits_middleware(self.limits, max_size, budget)])
        app.router.add_post("/storage_rpc/v1", self.h_storage_rpc)
        app.router.add_post("/onion_req/v2", self.h_onion)
        app.router.add_post(SWARM_PATH, self.h_swarm)
        app.router.add_get("/get_stats/v1", self.h_stats)
        app.router.add_post("/ping_test/v1", self.h_ping)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            resp = _text(404, f"{request.method.lower()} {request.path} Not Found")  # as uWebSockets writes it
        except web.HTTPRequestEntityTooLarge:
            resp = _text(413, "Request body too large")
        await self._delay()
        return resp

    async def _delay(self) -> None:
        """The ``delay_ms`` behaviour: every storage-port answer waits this long."""
        delay = self.behaviours.delay_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def _leaned(self, handler: Callable[[LeanRequest], Awaitable[LeanReply]]
                ) -> Callable[[LeanRequest], Awaitable[LeanReply]]:
        """A lean route's handler with what the app's middleware adds (the delay behaviour)."""
        async def answer(request: LeanRequest) -> LeanReply:
            reply = await handler(request)
            await self._delay()
            return reply
        return answer

    def _not_ready(self) -> Response | None:
        if self.view.ready:
            return None
        return Response(503, f"Service node is not ready: {self.view.not_ready_reason()}\n")

    @staticmethod
    def _too_large(request: web.Request) -> web.Response | None:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
            return _text(413, "Request body too large")
        return None

    async def _read(self, request: web.Request) -> bytes | web.Response:
        early = self._too_large(request)
        if early is not None:
            return early
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _text(413, "Request body too large")
        if len(body) > MAX_REQUEST_BODY:
            return _text(413, "Request body too large")
        return body

    # --- the storage-port routes: each one's aiohttp handler and lean handler share the rest ---
    async def h_storage_rpc(self, request: web.Request) -> web.Response:
        remote = request.remote
        refused = self._rpc_refused(remote, request.headers)
        if refused is not None:
            return to_web(refused)
        body = await self._read(request)
        if isinstance(body, web.Response):
            self.observations.record(remote_addr=remote, channel="storage_rpc", status=body.status)
            return body
        return to_web(await self._rpc_answer(remote, body))

    async def lean_storage_rpc(self, request: LeanRequest) -> LeanReply:
        refused = self._rpc_refused(request.remote, request.headers)
        if refused is not None:
            return to_lean(refused)
        return to_lean(await self._rpc_answer(request.remote, request.body))

    def _rpc_refused(self, remote: str | None, headers: Mapping[str, str]) -> Response | None:
        """The answer to a storage RPC refused before its body is read (observed), or None."""
        resp = self._not_ready()
        if resp is None and not self.ratelimiter.allow(remote or ""):
            resp = Response(429, "Too Many Requests\n")
        if resp is None and headers.get("X-Loki-Long-Poll"):
            resp = Response(410, "long polling is no longer supported, client upgrade required")
        if resp is not None:
            self.observations.record(remote_addr=remote, channel="storage_rpc", status=resp.status)
        return resp

    async def _rpc_answer(self, remote: str | None, body: bytes) -> Response:
        r, method, accounts = await self.rpc.handle_body(body)
        self.observations.record(remote_addr=remote, channel="storage_rpc", method=method,
                                 accounts=accounts, status=r.status)
        return r

    async def h_onion(self, request: web.Request) -> web.Response:
        remote = request.remote
        not_ready = self._not_ready()
        if not_ready is not None:
            self.observations.record(remote_addr=remote, channel="onion", status=not_ready.status)
            return to_web(not_ready)
        body = await self._read(request)
        if isinstance(body, web.Response):
            self.observations.record(remote_addr=remote, channel="onion", status=body.status)
            return body
        out = await self._onion_answer(remote, body)
        return web.Response(status=out.status, body=out.body, content_type=out.content_type)

    async def lean_onion(self, request: LeanRequest) -> LeanReply:
        not_ready = self._not_ready()
        if not_ready is not None:
            self.observations.record(remote_addr=request.remote, channel="onion", status=not_ready.status)
            return to_lean(not_ready)
        return await self._onion_answer(request.remote, request.body)

    async def _onion_answer(self, remote: str | None, body: bytes) -> LeanReply:
        out = await self.onion.handle(body)
        self.observations.record(
            remote_addr=remote, channel="onion", hop=out.hop, next_hop=out.next_hop,
            method=out.method, accounts=out.accounts, server=out.server,
            status=out.inner_status if out.hop == "destination" and out.inner_status else out.status)
        return LeanReply(out.status, out.body, out.content_type)

    async def h_swarm(self, request: web.Request) -> web.Response:
        remote = request.remote
        body = await self._read(request)
        if isinstance(body, web.Response):
            self.observations.record(remote_addr=remote, channel="swarm", status=body.status)
            return body
        return to_web(await self._swarm_request(remote, request.headers, body))

    async def lean_swarm(self, request: LeanRequest) -> LeanReply:
        return to_lean(await self._swarm_request(request.remote, request.headers, request.body))

    async def _swarm_request(self, remote: str | None, headers: Mapping[str, str], body: bytes) -> Response:
        """A peer's request on the swarm path: authenticated, then one method or a bundle."""
        try:
            sender = self.peers.auth.verify(headers, body, self.view)
        except PeerAuthError as e:
            if "unknown sender" in str(e):
                self.request_poll()
            self.log.info("swarm_auth_rejected", remote=remote, reason=str(e))
            self.observations.record(remote_addr=remote, channel="swarm", status=401)
            return Response(401, f"Unauthorized: {e}")
        method, params, problem = None, None, "expected {\"method\", \"params\"}"
        try:
            doc = jsonin.loads(body)
            method, params = doc.get("method"), doc.get("params")
        except jsonin.JsonInputError as e:
            problem = str(e)
        except AttributeError:
            pass
        if not isinstance(method, str) or not isinstance(params, dict):
            answer = Response(400, f"invalid swarm request: {problem}")
        elif method == BUNDLE:
            return await self._swarm_bundle(remote, sender.pubkey_ed25519, params)
        else:
            answer = await self._swarm_answer(method, params)
        self._swarm_observed(remote, sender.pubkey_ed25519, method, params, answer.status)
        return answer

    async def _swarm_answer(self, method: str, params: dict[str, Any], *, bundled: bool = False) -> Response:
        """The answer to one swarm request; a bundle carries only the recursive methods."""
        if method == "push" and not bundled:
            pr = await self.replicator.receive_push(params)
            return Response(pr.status, pr.body)
        if method in RECURSIVE_METHODS:
            return await self.rpc.handle(method, params, forwarded=True)
        where = f" in {BUNDLE}" if bundled else ""
        return Response(400, f"invalid swarm request{where}: unknown method {method!r}")

    def _swarm_observed(self, remote: str | None, sender: str, method: Any, params: Any,
                        status: int) -> None:
        self.observations.record(remote_addr=remote, channel="swarm", method=method,
                                 accounts=accounts_of(method, params), status=status)
        if status >= 400:
            self.log.debug("swarm_request_failed", sender=sender, method=method, status=status)

    async def _swarm_bundle(self, remote: str | None, sender: str, params: dict[str, Any]) -> Response:
        """A peer's bundle (nodes/snode/fanout.py): each request handled as if it had come on its
        own, all at once (so their stores share a commit), each observed on its own; the answer
        lists each one's status and body in order."""
        requests = params.get("requests")
        if not isinstance(requests, list) or not requests or len(requests) > MAX_BUNDLE_REQUESTS:
            self.observations.record(remote_addr=remote, channel="swarm", method=BUNDLE, status=400)
            return Response(400, f"invalid swarm request: a {BUNDLE} needs \"requests\": a list of 1 to "
                                 f"{MAX_BUNDLE_REQUESTS} {{\"method\", \"params\"}}")

        async def one(item: Any) -> Response:
            method = item.get("method") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(method, str) or not isinstance(params, dict):
                answer = Response(400, f"invalid swarm request in {BUNDLE}: expected {{\"method\", \"params\"}}")
            else:
                answer = await self._swarm_answer(method, params, bundled=True)
            self._swarm_observed(remote, sender, method if isinstance(method, str) else None, params,
                                 answer.status)
            return answer

        answers = await asyncio.gather(*(one(item) for item in requests))
        return Response(200, {"results": [
            {"status": a.status, "body": a.body if a.is_json else a.body_text()} for a in answers]})

    async def h_stats(self, request: web.Request) -> web.Response:
        return json_response({"version": ".".join(map(str, STORAGE_SERVER_VERSION))})

    async def h_ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)
