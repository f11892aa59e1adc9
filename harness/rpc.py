"""Control-plane calls the harness makes: seed JSON-RPC, seed admin, node admin, storage RPC.

All calls are asyncio (aiohttp). :func:`run_sync` runs a coroutine from synchronous code, also
when the caller is already inside an event loop (pytest-asyncio tests, notebooks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=5)


class RpcError(RuntimeError):
    """A control-plane call failed; the message names the URL and the answer."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.status = status


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def new_session(timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT) -> aiohttp.ClientSession:
    # nodes use self-signed certificates: the storage port is HTTPS without verification,
    # exactly as Session clients talk to service nodes.
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=False))


async def _json(resp: aiohttp.ClientResponse, url: str) -> Any:
    text = await resp.text()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        raise RpcError(url, f"HTTP {resp.status}, not JSON: {text[:200]!r}", resp.status) from None


async def seed_rpc(session: aiohttp.ClientSession, seed_url: str, method: str,
                   params: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{seed_url}/json_rpc"
    body = {"jsonrpc": "2.0", "id": 0, "method": method, "params": params or {}}
    try:
        async with session.post(url, json=body) as resp:
            data = await _json(resp, url)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise RpcError(url, f"{method} failed: {e!r}") from None
    if not isinstance(data, dict) or "result" not in data:
        raise RpcError(url, f"{method} returned no result: {data!r}")
    result: dict[str, Any] = data["result"]
    return result


async def _bearer_call(session: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any] | None,
                       method: str, what: str) -> Any:
    """``method url`` with the bearer ``token`` and a JSON body; the parsed answer, or RpcError
    (with the status for an answer of 300 and more)."""
    try:
        async with session.request(method, url, json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            data = await _json(resp, url)
            if resp.status >= 300:
                raise RpcError(url, f"HTTP {resp.status}: {data!r}", resp.status)
            return data
    except (aiohttp.ClientError, TimeoutError) as e:
        raise RpcError(url, f"{what} failed: {e!r}") from None


async def seed_admin(session: aiohttp.ClientSession, seed_url: str, token: str, path: str,
                     body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    """A call to the seed's admin interface (``/internal/v1/PATH``)."""
    return await _bearer_call(session, f"{seed_url}/internal/v1/{path}", token, body, method,
                              "seed admin call")


async def node_admin(session: aiohttp.ClientSession, admin_url: str, token: str, path: str,
                     body: dict[str, Any] | None = None, method: str = "GET") -> Any:
    """A call to a node's admin interface, authenticated with the testnet's admin token."""
    return await _bearer_call(session, f"{admin_url}/admin/v1/{path}", token, body, method,
                              "admin call")


async def storage_rpc(session: aiohttp.ClientSession, storage_url: str, method: str,
                      params: dict[str, Any]) -> tuple[int, Any]:
    """A direct (not onion-routed) storage RPC; returns (HTTP status, parsed body or text)."""
    url = f"{storage_url}/storage_rpc/v1"
    try:
        async with session.post(url, json={"method": method, "params": params}) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text
    except (aiohttp.ClientError, TimeoutError) as e:
        raise RpcError(url, f"{method} failed: {e!r}") from None
