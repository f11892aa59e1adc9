"""Talking to the seed (the oxend stand-in): proofs and get_service_nodes polling."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from nodes.common import jsonrpc
from nodes.common.auth import bearer
from nodes.common.http import ClientSessions
from nodes.common.proof import PROOF_PATH, build_proof
from nodes.protocol.keys import Identity

#: the listing fields a node's swarm view is built of (swarm_view.NodeInfo.from_seed)
VIEW_FIELDS = ("service_node_pubkey", "active", "swarm_id", "storage_server_version", "public_ip",
               "storage_port", "storage_lmq_port", "pubkey_ed25519", "pubkey_x25519")


class SeedError(Exception):
    """The seed is unreachable or answered an error (the message says which)."""


class SeedClient:
    def __init__(self, seed_url: str, identity: Identity, public_ip: str, storage_port: int,
                 lmq_port: int, admin_port: int, timeout: float = 3.0, join_token: str = "") -> None:
        self.seed_url = seed_url.rstrip("/")
        self.identity = identity
        self.public_ip = public_ip
        self.storage_port = storage_port
        self.lmq_port = lmq_port
        self.admin_port = admin_port
        #: the testnet's join token, sent with every proof (the seed refuses proofs without it)
        self.join_token = join_token
        self._sessions = ClientSessions(timeout=timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._sessions.session

    @property
    def requests_sent(self) -> int:
        return self._sessions.requests_sent

    async def close(self) -> None:
        await self._sessions.close()

    def proof_body(self, timestamp_ms: int | None = None) -> dict[str, Any]:
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return build_proof(self.identity, public_ip=self.public_ip, storage_port=self.storage_port,
                           storage_lmq_port=self.lmq_port, admin_port=self.admin_port, timestamp_ms=ts)

    async def send_proof(self) -> dict[str, Any]:
        url = f"{self.seed_url}{PROOF_PATH}"
        try:
            async with self.session.post(url, json=self.proof_body(),
                                         headers=bearer(self.join_token) if self.join_token else None) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise SeedError(f"proof rejected by {url}: HTTP {resp.status} {text[:200]}")
                try:
                    answer: dict[str, Any] = await resp.json(content_type=None)
                    return answer
                except ValueError:
                    raise SeedError(f"proof reply from {url} is not JSON: {text[:200]}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SeedError(f"seed {url} unreachable: {e!r}") from None

    async def json_rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """JSON-RPC 2.0 call; returns `result` or raises SeedError with the seed's error text."""
        url = f"{self.seed_url}/json_rpc"
        try:
            async with self.session.post(url, json=jsonrpc.request(method, params, "0")) as resp:
                text = await resp.text()
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    raise SeedError(f"{method}: seed answered HTTP {resp.status} non-JSON {text[:200]}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SeedError(f"seed {url} unreachable: {e!r}") from None
        try:
            return jsonrpc.unwrap(doc, method)
        except jsonrpc.JsonRpcError as e:
            raise SeedError(e.message) from None

    async def get_service_nodes(self, nodes_hash: str | None = None) -> dict[str, Any]:
        """The seed's node list; with ``nodes_hash`` (the ``nodes_hash`` of the last list, ``""``
        at first) only the fields a node's view needs, and ``{"unchanged": true, …}`` without
        nodes while the list is still the one of that digest (the testnet's ``poll_nodes_hash``)."""
        params: dict[str, Any] = {"active_only": False}
        if nodes_hash is not None:
            params.update(fields=list(VIEW_FIELDS), poll_nodes_hash=nodes_hash)
        result = await self.json_rpc("get_service_nodes", params)
        if not isinstance(result, dict):
            raise SeedError(f"get_service_nodes: malformed result {str(result)[:200]}")
        if nodes_hash and result.get("unchanged") is True and result.get("nodes_hash") == nodes_hash:
            return result
        if not isinstance(result.get("service_node_states"), list):
            raise SeedError(f"get_service_nodes: malformed result {str(result)[:200]}")
        return result
