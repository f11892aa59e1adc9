"""Talking to the seed (the oxend stand-in): proofs and get_service_nodes polling."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp

from nodes.protocol.constants import STORAGE_SERVER_VERSION
from nodes.protocol.keys import Identity

from .tls import insecure_client_context


class SeedError(Exception):
    """The seed is unreachable or answered an error (the message says which)."""


def proof_message(pubkey_ed25519: str, public_ip: str, storage_port: int, timestamp: int) -> bytes:
    return f"proof{pubkey_ed25519}{public_ip}{storage_port}{timestamp}".encode("ascii")


class SeedClient:
    def __init__(self, seed_url: str, identity: Identity, public_ip: str, storage_port: int,
                 lmq_port: int, admin_port: int, timeout: float = 3.0) -> None:
        self.seed_url = seed_url.rstrip("/")
        self.identity = identity
        self.public_ip = public_ip
        self.storage_port = storage_port
        self.lmq_port = lmq_port
        self.admin_port = admin_port
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=insecure_client_context()),
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def proof_body(self, timestamp_ms: int | None = None) -> dict[str, Any]:
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        ed = self.identity.ed25519_hex
        sig = self.identity.sign(proof_message(ed, self.public_ip, self.storage_port, ts))
        return {
            "pubkey_ed25519": ed,
            "pubkey_x25519": self.identity.x25519_hex,
            "public_ip": self.public_ip,
            "storage_port": self.storage_port,
            "storage_lmq_port": self.lmq_port,
            "admin_port": self.admin_port,
            "version": list(STORAGE_SERVER_VERSION),
            "timestamp": ts,
            "signature": base64.b64encode(sig).decode("ascii"),
        }

    async def send_proof(self) -> dict[str, Any]:
        url = f"{self.seed_url}/internal/v1/proof"
        try:
            async with self.session.post(url, json=self.proof_body()) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise SeedError(f"proof rejected by {url}: HTTP {resp.status} {text[:200]}")
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    raise SeedError(f"proof reply from {url} is not JSON: {text[:200]}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SeedError(f"seed {url} unreachable: {e!r}") from None

    async def json_rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """JSON-RPC 2.0 call; returns `result` or raises SeedError with the seed's error text."""
        url = f"{self.seed_url}/json_rpc"
        body = {"jsonrpc": "2.0", "id": "0", "method": method, "params": params or {}}
        try:
            async with self.session.post(url, json=body) as resp:
                text = await resp.text()
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    raise SeedError(f"{method}: seed answered HTTP {resp.status} non-JSON {text[:200]}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SeedError(f"seed {url} unreachable: {e!r}") from None
        if not isinstance(doc, dict):
            raise SeedError(f"{method}: unexpected seed reply {text[:200]}")
        if doc.get("error"):
            err = doc["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            raise SeedError(f"{msg}")
        if "result" not in doc:
            raise SeedError(f"{method}: seed reply has no result: {text[:200]}")
        return doc["result"]

    async def get_service_nodes(self) -> dict[str, Any]:
        result = await self.json_rpc("get_service_nodes", {"active_only": False})
        if not isinstance(result, dict) or not isinstance(result.get("service_node_states"), list):
            raise SeedError(f"get_service_nodes: malformed result {str(result)[:200]}")
        return result
