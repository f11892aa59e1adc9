"""The Toxiproxy 2.x HTTP API (api.go) on aiohttp.

Status codes, JSON shapes and error bodies are Toxiproxy's:

=========================================  ======  ===============================================
``GET /proxies``                           200     ``{name: proxy}``
``POST /proxies``                          201     proxy; 400 bad body / missing field, 409 name
                                                   taken, 500 listen failure
``POST /populate``                         201     ``{"proxies": [...]}``; on failure the error
                                                   status with ``{"error","status","proxies"}``
``GET /proxies/{proxy}``                   200     proxy; 404
``POST|PATCH /proxies/{proxy}``            200     proxy (listen/upstream/enabled); 400, 404, 500
``DELETE /proxies/{proxy}``                204     404
``GET /proxies/{proxy}/toxics``            200     ``[toxic, ...]`` (upstream chain, then downstream)
``POST /proxies/{proxy}/toxics``           200     toxic; 400 body/stream/type/attributes, 404, 409
``GET /proxies/{proxy}/toxics/{toxic}``    200     toxic; 404
``POST|PATCH /proxies/{proxy}/toxics/{t}`` 200     toxic; 400, 404
``DELETE /proxies/{proxy}/toxics/{t}``     204     404
``POST /reset``                            204     every proxy enabled, every toxic removed
``GET /version``                           200     ``{"version": "..."}`` + newline
=========================================  ======  ===============================================

A proxy is ``{"name","listen","upstream","enabled","toxics"}``, a toxic
``{"attributes","name","type","stream","toxicity"}``. Errors are ``{"error": msg, "status": code}``
plus a newline, sent as ``text/plain; charset=utf-8`` (Go's ``http.Error``). Unknown paths answer
``404 page not found``, a known path with another method 405. Browsers (``User-Agent: Mozilla/...``)
get 403. Every response has an ``X-Toxiproxy-Request-Id`` header.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import (
    PROXY_NOT_FOUND,
    TOXIC_NOT_FOUND,
    ApiError,
    check_bool,
    check_str,
    decode_json,
    pick_fields,
    top_level_error,
)
from .log import JsonLogger
from .proxy import ProxyAlreadyStarted, ProxyCollection, ProxyInput
from .toxics import parse_new_toxic, parse_toxic_update

#: API version this server implements (build metadata marks it as this project's implementation)
VERSION = "2.12.0+session-testnet"

_XID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def _request_id() -> str:
    return "".join(secrets.choice(_XID_ALPHABET) for _ in range(20))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(value), status=status, content_type="application/json")


def error_response(err: ApiError) -> web.Response:
    resp = web.Response(body=_dumps(err.to_json()) + b"\n", status=err.status,
                        content_type="text/plain", charset="utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _proxy_input(body: Any, defaults: ProxyInput, go_type: str = "toxiproxy.Proxy") -> ProxyInput:
    if not isinstance(body, dict):
        raise top_level_error(body, go_type)
    f = pick_fields(body, ("name", "listen", "upstream", "enabled"))
    name = check_str(f, "name", "Proxy")
    listen = check_str(f, "listen", "Proxy")
    upstream = check_str(f, "upstream", "Proxy")
    enabled = check_bool(f, "enabled", "Proxy")
    return ProxyInput(name=defaults.name if name is None else name,
                      listen=defaults.listen if listen is None else listen,
                      upstream=defaults.upstream if upstream is None else upstream,
                      enabled=defaults.enabled if enabled is None else enabled)


class ToxiproxyApi:
    """Request handlers over a :class:`ProxyCollection`. Mutations hold one lock, so concurrent
    API calls apply one after the other, like Toxiproxy's collection mutex."""

    def __init__(self, collection: ProxyCollection, log: JsonLogger, version: str = VERSION) -> None:
        self.collection = collection
        self.log = log
        self.version = version
        self.lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        r = app.router
        r.add_route("POST", "/reset", self.reset_state)
        r.add_route("GET", "/proxies", self.proxy_index)
        r.add_route("POST", "/proxies", self.proxy_create)
        r.add_route("POST", "/populate", self.populate)
        r.add_route("GET", "/proxies/{proxy}", self.proxy_show)
        r.add_route("POST", "/proxies/{proxy}", self.proxy_update)
        r.add_route("PATCH", "/proxies/{proxy}", self.proxy_update)
        r.add_route("DELETE", "/proxies/{proxy}", self.proxy_delete)
        r.add_route("GET", "/proxies/{proxy}/toxics", self.toxic_index)
        r.add_route("POST", "/proxies/{proxy}/toxics", self.toxic_create)
        r.add_route("GET", "/proxies/{proxy}/toxics/{toxic}", self.toxic_show)
        r.add_route("POST", "/proxies/{proxy}/toxics/{toxic}", self.toxic_update)
        r.add_route("PATCH", "/proxies/{proxy}/toxics/{toxic}", self.toxic_update)
        r.add_route("DELETE", "/proxies/{proxy}/toxics/{toxic}", self.toxic_delete)
        r.add_route("GET", "/version", self.version_handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        t0 = time.monotonic()
        resp: web.StreamResponse
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            resp = web.Response(status=403, text="User agent not allowed\n", content_type="text/plain",
                                charset="utf-8")
        else:
            try:
                resp = await handler(request)
            except ApiError as e:
                resp = error_response(e)
            except web.HTTPMethodNotAllowed:
                resp = web.Response(status=405)
            except web.HTTPNotFound:
                resp = web.Response(status=404, text="404 page not found\n", content_type="text/plain",
                                    charset="utf-8")
            except web.HTTPException:
                raise
            except Exception as e:  # what Go's apiError does with an error that has no status
                self.log.error("api_internal_error", method=request.method, path=request.path,
                               error=repr(e))
                resp = error_response(ApiError(str(e) or repr(e), 500))
        resp.headers["X-Toxiproxy-Request-Id"] = _request_id()
        if self.log.enabled(10):
            self.log.debug("api_request", method=request.method, path=request.path,
                           status=resp.status, client=request.remote,
                           duration_ms=round((time.monotonic() - t0) * 1000, 3))
        return resp

    # -- proxies --

    async def proxy_index(self, request: web.Request) -> web.Response:
        proxies = self.collection.proxies
        return json_response({name: proxies[name].to_json() for name in sorted(proxies)})

    async def proxy_create(self, request: web.Request) -> web.Response:
        body = decode_json(await request.read())
        p = _proxy_input(body, ProxyInput(name="", listen="", upstream="", enabled=True))
        if not p.name:
            raise ApiError("missing required field: name", 400)
        if not p.upstream:
            raise ApiError("missing required field: upstream", 400)
        async with self.lock:
            proxy = await self.collection.add(p)
        return json_response(proxy.to_json(), status=201)

    async def populate(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = decode_json(raw)
            if not isinstance(body, list):
                raise top_level_error(body, "[]struct { toxiproxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }")
            empty = ProxyInput(name="", listen="", upstream="", enabled=True)
            inputs = [_proxy_input(item, empty, "struct { toxiproxy.Proxy; Enabled *bool }")
                      for item in body]
        except ApiError as e:
            return json_response({**e.to_json(), "proxies": None}, status=e.status)
        async with self.lock:
            done, err = await self.collection.populate(inputs)
        proxies = [p.to_json() for p in done] or None  # Go marshals an empty result as null
        if err is not None:
            self.log.warn("populate_failed", error=err.message, status=err.status)
            return json_response({**err.to_json(), "proxies": proxies}, status=err.status)
        return json_response({"proxies": proxies}, status=201)

    async def proxy_show(self, request: web.Request) -> web.Response:
        proxy = self.collection.get(request.match_info["proxy"])
        return json_response(proxy.to_json())

    async def proxy_update(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.collection.get(request.match_info["proxy"])
            body = decode_json(await request.read())
            p = _proxy_input(body, ProxyInput(name=proxy.name, listen=proxy.listen,
                                              upstream=proxy.upstream, enabled=proxy.enabled))
            await proxy.update(p.listen, p.upstream, p.enabled)
            return json_response(proxy.to_json())

    async def proxy_delete(self, request: web.Request) -> web.Response:
        async with self.lock:
            self.collection.remove(request.match_info["proxy"])
        return web.Response(status=204)

    async def reset_state(self, request: web.Request) -> web.Response:
        async with self.lock:
            for proxy in list(self.collection.proxies.values()):
                try:
                    await proxy.start()
                except ProxyAlreadyStarted:
                    pass
                proxy.toxics.reset()
        return web.Response(status=204)

    # -- toxics --

    async def toxic_index(self, request: web.Request) -> web.Response:
        proxy = self.collection.get(request.match_info["proxy"])
        return json_response([t.to_json() for t in proxy.toxics.all()])

    async def toxic_create(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.collection.get(request.match_info["proxy"])
            body = decode_json(await request.read())
            spec = parse_new_toxic(body, lambda name: proxy.toxics.find(name) is not None)
            proxy.toxics.add(spec)
        self.log.info("toxic_added", proxy=proxy.name, toxic=spec.name, type=spec.type,
                      stream=spec.stream, toxicity=spec.toxicity, attributes=spec.attributes)
        return json_response(spec.to_json())

    async def toxic_show(self, request: web.Request) -> web.Response:
        proxy = self.collection.get(request.match_info["proxy"])
        toxic = proxy.toxics.find(request.match_info["toxic"])
        if toxic is None:
            raise TOXIC_NOT_FOUND
        return json_response(toxic.to_json())

    async def toxic_update(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.collection.get(request.match_info["proxy"])
            current = proxy.toxics.find(request.match_info["toxic"])
            if current is None:
                raise TOXIC_NOT_FOUND
            spec = parse_toxic_update(current, decode_json(await request.read()))
            proxy.toxics.update(spec)
        self.log.info("toxic_updated", proxy=proxy.name, toxic=spec.name, toxicity=spec.toxicity,
                      attributes=spec.attributes)
        return json_response(spec.to_json())

    async def toxic_delete(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.collection.get(request.match_info["proxy"])
            proxy.toxics.remove(request.match_info["toxic"])
        self.log.info("toxic_removed", proxy=proxy.name, toxic=request.match_info["toxic"])
        return web.Response(status=204)

    async def version_handler(self, request: web.Request) -> web.Response:
        body = json.dumps({"version": self.version}, separators=(", ", ": ")) + "\n"
        return web.Response(body=body.encode("utf-8"), headers={"Content-Type": "application/json;charset=utf-8"})


__all__ = ["PROXY_NOT_FOUND", "ToxiproxyApi", "VERSION", "error_response", "json_response"]
