"""A storage node's storage port: the routes of its HTTPS server (``/storage_rpc/v1``,
``/onion_req/v2``, the swarm path, ``/get_stats/v1``, ``/ping_test/v1``) as an aiohttp app, and
the lean front (nodes/common/lean_http.py) that answers plain requests to the three busy ones
before aiohttp does. Each busy route has an aiohttp handler (``h_*``) and a lean one
(``lean_*``); the two differ only in how the request is read and the answer written, and share
the rest (refusals, observations, the node's handlers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from nodes.common.http import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    json_response,
    text_response,
)
from nodes.common.lean_http import LeanReply, LeanRequest, LeanRoutes
from nodes.common.limits import BodyBudget, ServerLimits, limits_middleware
from nodes.common.logs import JsonLogger
from nodes.protocol import jsonin
from nodes.protocol.constants import MAX_REQUEST_BODY, STORAGE_SERVER_VERSION

from .admin import Observations
from .behaviours import Behaviours
from .fanout import BUNDLE, MAX_BUNDLE_REQUESTS
from .onion_handler import OnionHandler
from .peers import SWARM_PATH, PeerAuthError, PeerClient
from .ratelimit import RateLimiter
from .replication import Replicator
from .requests import RECURSIVE_METHODS, accounts_of
from .rpc import Response, RpcHandler
from .swarm_view import SwarmView

__all__ = ["StoragePort", "to_lean", "to_web"]

_text = text_response


def to_lean(resp: Response) -> LeanReply:
    """A storage RPC answer as the storage server renders it: exactly ``application/json``,
    ``text/plain`` (error strings) or ``application/octet-stream`` (binary, active_nodes_bin)."""
    if resp.is_json:
        return LeanReply(resp.status, resp.body_text().encode("utf-8"), JSON_CONTENT_TYPE)
    if resp.is_binary:
        return LeanReply(resp.status, bytes(resp.body), BINARY_CONTENT_TYPE)  # type: ignore[arg-type]
    return LeanReply(resp.status, resp.body_text().encode("utf-8"), TEXT_CONTENT_TYPE)


def web_reply(reply: LeanReply) -> web.Response:
    """The same answer written by aiohttp (its Content-Type as given: no charset parameter)."""
    return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


def to_web(resp: Response) -> web.Response:
    """:func:`to_lean`'s answer written by aiohttp."""
    return web_reply(to_lean(resp))


class PortNode(Protocol):
    """What the storage port uses of its node (``Node``, nodes/snode/server.py)."""

    view: SwarmView
    limits: ServerLimits
    ratelimiter: RateLimiter
    rpc: RpcHandler
    onion: OnionHandler
    replicator: Replicator
    peers: PeerClient
    observations: Observations
    behaviours: Behaviours
    log: JsonLogger

    def request_poll(self) -> None: ...


class StoragePort:
    """The storage port of ``node``: ``app`` (aiohttp) and ``lean`` (its front)."""

    def __init__(self, node: PortNode) -> None:
        self.node = node
        max_size = MAX_REQUEST_BODY + 1024 * 1024
        budget = BodyBudget(node.limits.max_inflight_body_bytes)
        self.lean = LeanRoutes(
            {"/storage_rpc/v1": self._leaned(self.lean_storage_rpc),
             "/onion_req/v2": self._leaned(self.lean_onion), SWARM_PATH: self._leaned(self.lean_swarm)},
            max_body=MAX_REQUEST_BODY, limits=self.node.limits, budget=budget,
            on_error=lambda path, e: node.log.error("request_failed", path=path, error=repr(e)))
        app = web.Application(client_max_size=max_size,
                              middlewares=[self._middleware, limits_middleware(node.limits, max_size, budget)])
        app.router.add_post("/storage_rpc/v1", self.h_storage_rpc)
        app.router.add_post("/onion_req/v2", self.h_onion)
        app.router.add_post(SWARM_PATH, self.h_swarm)
        app.router.add_get("/get_stats/v1", self.h_stats)
        app.router.add_post("/ping_test/v1", self.h_ping)
        self.app = app

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
        delay = self.node.behaviours.delay_ms
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
        if self.node.view.ready:
            return None
        return Response(503, f"Service node is not ready: {self.node.view.not_ready_reason()}\n")

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
            self.node.observations.record(remote_addr=remote, channel="storage_rpc", status=body.status)
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
        if resp is None and not self.node.ratelimiter.allow(remote or ""):
            resp = Response(429, "Too Many Requests\n")
        if resp is None and headers.get("X-Loki-Long-Poll"):
            resp = Response(410, "long polling is no longer supported, client upgrade required")
        if resp is not None:
            self.node.observations.record(remote_addr=remote, channel="storage_rpc", status=resp.status)
        return resp

    async def _rpc_answer(self, remote: str | None, body: bytes) -> Response:
        r, method, accounts = await self.node.rpc.handle_body(body)
        self.node.observations.record(remote_addr=remote, channel="storage_rpc", method=method,
                                      accounts=accounts, status=r.status)
        return r

    async def h_onion(self, request: web.Request) -> web.Response:
        remote = request.remote
        not_ready = self._not_ready()
        if not_ready is not None:
            self.node.observations.record(remote_addr=remote, channel="onion", status=not_ready.status)
            return to_web(not_ready)
        body = await self._read(request)
        if isinstance(body, web.Response):
            self.node.observations.record(remote_addr=remote, channel="onion", status=body.status)
            return body
        return web_reply(await self._onion_answer(remote, body))

    async def lean_onion(self, request: LeanRequest) -> LeanReply:
        not_ready = self._not_ready()
        if not_ready is not None:
            self.node.observations.record(remote_addr=request.remote, channel="onion", status=not_ready.status)
            return to_lean(not_ready)
        return await self._onion_answer(request.remote, request.body)

    async def _onion_answer(self, remote: str | None, body: bytes) -> LeanReply:
        out = await self.node.onion.handle(body)
        self.node.observations.record(
            remote_addr=remote, channel="onion", hop=out.hop, next_hop=out.next_hop,
            method=out.method, accounts=out.accounts, server=out.server,
            status=out.inner_status if out.hop == "destination" and out.inner_status else out.status)
        return LeanReply(out.status, out.body, out.content_type)

    async def h_swarm(self, request: web.Request) -> web.Response:
        remote = request.remote
        body = await self._read(request)
        if isinstance(body, web.Response):
            self.node.observations.record(remote_addr=remote, channel="swarm", status=body.status)
            return body
        return to_web(await self._swarm_request(remote, request.headers, body))

    async def lean_swarm(self, request: LeanRequest) -> LeanReply:
        return to_lean(await self._swarm_request(request.remote, request.headers, request.body))

    async def _swarm_request(self, remote: str | None, headers: Mapping[str, str], body: bytes) -> Response:
        """A peer's request on the swarm path: authenticated, then one method or a bundle."""
        try:
            sender = self.node.peers.auth.verify(headers, body, self.node.view)
        except PeerAuthError as e:
            if "unknown sender" in str(e):
                self.node.request_poll()
            self.node.log.info("swarm_auth_rejected", remote=remote, reason=str(e))
            self.node.observations.record(remote_addr=remote, channel="swarm", status=401)
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
            pr = await self.node.replicator.receive_push(params)
            return Response(pr.status, pr.body)
        if method in RECURSIVE_METHODS:
            return await self.node.rpc.handle(method, params, forwarded=True)
        where = f" in {BUNDLE}" if bundled else ""
        return Response(400, f"invalid swarm request{where}: unknown method {method!r}")

    def _swarm_observed(self, remote: str | None, sender: str, method: Any, params: Any,
                        status: int) -> None:
        self.node.observations.record(remote_addr=remote, channel="swarm", method=method,
                                 accounts=accounts_of(method, params), status=status)
        if status >= 400:
            self.node.log.debug("swarm_request_failed", sender=sender, method=method, status=status)

    async def _swarm_bundle(self, remote: str | None, sender: str, params: dict[str, Any]) -> Response:
        """A peer's bundle (nodes/snode/fanout.py): each request handled as if it had come on its
        own, all at once (so their stores share a commit), each observed on its own; the answer
        lists each one's status and body in order."""
        requests = params.get("requests")
        if not isinstance(requests, list) or not requests or len(requests) > MAX_BUNDLE_REQUESTS:
            self.node.observations.record(remote_addr=remote, channel="swarm", method=BUNDLE, status=400)
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
