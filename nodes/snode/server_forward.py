"""The exit node's POST to a server named by an onion request (docs/fileserver.md).

Production (session-storage-server ``RequestHandler::process_onion_req`` for a server) POSTs the
exit node's whole decrypted layer to ``protocol://host[:port]target`` with curl (25 s timeout, no
redirects, certificate verification on) and passes the server's answer back; when curl fails it
answers 502 (504 for a timeout) with curl's error text, in plaintext.

The testnet adds one rule, the no-traffic-leaves rule: a node forwards only to addresses of the
testnet itself — loopback, and the networks given with ``--forward-allow`` (the harness passes
the testnet's container network on the docker backend). The host must be an IP address or
``localhost``: names are not resolved (a DNS query could leave the machine). Anything else is
refused before a connection is made; the caller answers it like a URL production will not
forward to (400 ``Invalid url``).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from nodes.protocol.onion_server import ONION_URL_TIMEOUT_S, ServerRoute

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class ForwardRefused(ValueError):
    """The host is not an address of the testnet; the message says why (for the node's log)."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings → networks; ValueError naming the bad one."""
    out: list[IPNetwork] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--forward-allow {v!r}: expected a network such as 10.130.0.0/16") from None
    return tuple(out)


@dataclass(frozen=True)
class ForwardPolicy:
    """Where onion requests may be forwarded: loopback plus ``extra`` networks."""

    extra: tuple[IPNetwork, ...] = ()

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return LOOPBACK + self.extra

    def address_for(self, host: str) -> str:
        """The IP to connect to for ``host``; ForwardRefused if it is not the testnet's."""
        if host.lower() == "localhost":
            return "127.0.0.1"
        literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            addr = ipaddress.ip_address(literal)
        except ValueError:
            raise ForwardRefused(f"host {host!r} is not an IP address: the testnet resolves no "
                                 "names (a DNS query could leave the machine)") from None
        if not any(addr in net for net in self.networks):
            allowed = ", ".join(str(n) for n in self.networks)
            raise ForwardRefused(f"host {host} is outside the testnet (allowed: {allowed})")
        return str(addr)


@dataclass(frozen=True)
class ServerAnswer:
    status: int
    body: bytes
    content_type: str


class ServerForwarder:
    """POSTs onion payloads to servers, with production's answers for failures."""

    def __init__(self, policy: ForwardPolicy, timeout: float = ONION_URL_TIMEOUT_S) -> None:
        self.policy = policy
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, route: ServerRoute, payload: bytes) -> ServerAnswer:
        """POST ``payload`` to the route's URL (ForwardRefused before connecting if the host is
        not the testnet's).  Connection failures become curl's answers (502/504, plaintext)."""
        ip = self.policy.address_for(route.host)
        target = ServerRoute(host=ip, target=route.target, port=route.port, protocol=route.protocol)
        started = time.monotonic()
        try:
            async with self.session.post(
                    target.url, data=payload, allow_redirects=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                body = await resp.read()
                ctype = resp.headers.get("Content-Type", "text/plain").split(";")[0].strip()
                return ServerAnswer(resp.status, body, ctype or "text/plain")
        except TimeoutError:
            ms = int(self.timeout * 1000)
            return ServerAnswer(504, f"Operation timed out after {ms} milliseconds with 0 bytes "
                                     "received".encode(), "text/plain")
        except aiohttp.ClientConnectorCertificateError as e:
            return ServerAnswer(502, f"SSL certificate problem: {e.certificate_error}".encode(),
                                "text/plain")
        except aiohttp.ClientConnectorError:
            ms = int((time.monotonic() - started) * 1000)
            return ServerAnswer(502, f"Failed to connect to {route.host} port {route.port} after "
                                     f"{ms} ms: Couldn't connect to server".encode(), "text/plain")
        except (aiohttp.ClientError, OSError) as e:
            return ServerAnswer(502, f"Failure when receiving data from the peer: {e}".encode(),
                                "text/plain")
