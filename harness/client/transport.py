"""HTTP transport of the client.  One small interface so tests can swap the network.

Service nodes use self-signed certificates; Session clients do not verify them (session-desktop's
``snodeHttpsAgent`` has ``rejectUnauthorized: false``), and neither does this transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

CONNECT = "connect"  # nothing listens / host unreachable / TLS handshake failed
TIMEOUT = "timeout"  # no (complete) answer in time
DISCONNECTED = "disconnected"  # the peer closed the connection mid-request


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class TransportError(Exception):
    """No HTTP answer: ``kind`` is one of CONNECT, TIMEOUT, DISCONNECTED."""

    def __init__(self, kind: str, url: str, detail: str) -> None:
        super().__init__(f"{kind} error on {url}: {detail}")
        self.kind = kind
        self.url = url
        self.detail = detail


class Transport(Protocol):
    async def post(self, url: str, data: bytes, *, timeout: float,
                   content_type: str = "application/octet-stream") -> HttpResult: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """aiohttp, one connection pool per client, certificates not verified."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, limit=self._limit),
                headers={"User-Agent": "session-testnet-client"},
            )
        return self._session

    async def post(self, url: str, data: bytes, *, timeout: float,
                   content_type: str = "application/octet-stream") -> HttpResult:
        session = self._get()
        try:
            async with session.post(url, data=data, headers={"Content-Type": content_type},
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await resp.read()
                return HttpResult(resp.status, body)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransportError(TIMEOUT, url, f"no answer within {timeout:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(CONNECT, url, str(exc.os_error if exc.os_error is not None else exc)) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                aiohttp.ClientOSError) as exc:
            raise TransportError(DISCONNECTED, url, repr(exc)) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(CONNECT, url, repr(exc)) from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
