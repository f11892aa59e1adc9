"""Proxies, their toxic collections, and the collection of proxies (Toxiproxy's proxy.go,
toxic_collection.go and proxy_collection.go).

All methods run on the event loop; mutating API calls are serialised by the API layer's lock,
so no method here needs its own locking.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from dataclasses import dataclass, field
from typing import Any

from .addr import format_addr, split_host_port
from .errors import (
    MISSING_FIELD,
    PROXY_ALREADY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_ALREADY_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    go_errno_text,
)
from .link import ClientProtocol, Connection
from .listen_policy import LOOPBACK, ListenPolicy
from .log import JsonLogger
from .toxics import DIRECTIONS, ToxicSpec


class ProxyAlreadyStarted(Exception):
    pass


async def bind_listener(listen: str) -> tuple[socket.socket, str]:
    """A listening socket for `listen` like Go's ``net.Listen("tcp", listen)``: a host name is
    resolved (IPv4 first), an empty host listens on every address (``[::]``), SO_REUSEADDR is set.
    Returns the socket and the address actually bound (``ip:port``; port 0 → the chosen port).
    Raises ApiError(500) with Go's message on failure.
    """
    try:
        host, port = split_host_port(listen) if listen else ("", 0)  # Go: "" = any address, any port
    except ValueError as e:
        raise ApiError(f"listen tcp: {e}", 500) from None
    candidates: list[tuple[int, tuple[Any, ...]]] = []
    if host == "":
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, ("::", port)))
        candidates.append((socket.AF_INET, ("0.0.0.0", port)))
    else:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            candidates.append((fam, (host, port)))
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                               flags=socket.AI_PASSIVE)
            except socket.gaierror:
                raise ApiError(f"listen tcp: lookup {host}: no such host", 500) from None
            infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
            if infos:
                candidates.append((infos[0][0], infos[0][4]))
    last_error: ApiError | None = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(sockaddr)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            last_error = ApiError(f"listen tcp {format_addr(sockaddr)}: bind: {go_errno_text(e)}", 500)
            if host == "" and family == socket.AF_INET6:
                continue  # no IPv6 here: fall back to 0.0.0.0
            raise last_error from None
        return sock, format_addr(sock.getsockname())
    raise last_error or ApiError(f"listen tcp: lookup {host}: no such host", 500)


class ToxicCollection:
    """The toxics of one proxy: an ordered chain per direction, applied to every live link."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.chains: dict[str, list[ToxicSpec]] = {d: [] for d in DIRECTIONS}

    def chain(self, direction: str) -> list[ToxicSpec]:
        return list(self.chains[direction])

    def all(self) -> list[ToxicSpec]:
        return [t for d in DIRECTIONS for t in self.chains[d]]

    def find(self, name: str) -> ToxicSpec | None:
        for d in DIRECTIONS:
            for t in self.chains[d]:
                if t.name == name:
                    return t
        return None

    def _links(self, direction: str) -> list[Any]:
        out = []
        for conn in self.proxy.connections:
            link = conn.up if direction == "upstream" else conn.down
            if link is not None:
                out.append(link)
        return out

    def add(self, spec: ToxicSpec) -> None:
        if self.find(spec.name) is not None:
            raise TOXIC_ALREADY_EXISTS
        self.chains[spec.direction].append(spec)
        for link in self._links(spec.direction):
            link.add_stage(spec)

    def update(self, spec: ToxicSpec) -> None:
        chain = self.chains[spec.direction]
        index = next(i for i, t in enumerate(chain) if t.name == spec.name)
        chain[index] = spec
        for link in self._links(spec.direction):
            link.update_stage(index, spec)

    def remove(self, name: str) -> None:
        for d in DIRECTIONS:
            chain = self.chains[d]
            for index, t in enumerate(chain):
                if t.name == name:
                    del chain[index]
                    for link in self._links(d):
                        link.remove_stage(index)
                    return
        raise TOXIC_NOT_FOUND

    def reset(self) -> None:
        for d in DIRECTIONS:
            while self.chains[d]:
                self.remove(self.chains[d][0].name)


@dataclass(eq=False)
class Proxy:
    name: str
    listen: str
    upstream: str
    log: JsonLogger
    rng: random.Random
    policy: ListenPolicy = field(default_factory=lambda: ListenPolicy(LOOPBACK))
    enabled: bool = False
    connections: set[Connection] = field(default_factory=set)
    server: asyncio.AbstractServer | None = None
    generation: int = 0  # bumped on every start/stop: connections of an old listener are refused

    def __post_init__(self) -> None:
        self.toxics = ToxicCollection(self)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics.all()]}

    async def start(self) -> None:
        if self.enabled:
            raise ProxyAlreadyStarted(self.name)
        self.policy.check(self.listen)
        sock, bound = await bind_listener(self.listen)
        self.generation += 1  # before serving: the first accepts belong to this run
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: ClientProtocol(self), sock=sock)
        except OSError as e:
            sock.close()
            raise ApiError(f"listen tcp {bound}: {go_errno_text(e)}", 500) from None
        self.listen = bound
        self.enabled = True
        self.log.info("proxy_started", proxy=self.name, listen=self.listen, upstream=self.upstream)

    def stop(self) -> None:
        """Stop listening and close every connection (Toxiproxy's ``stop``)."""
        if not self.enabled:
            return
        self.enabled = False
        self.generation += 1
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.abort()
        self.log.info("proxy_stopped", proxy=self.name, listen=self.listen, upstream=self.upstream)

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        if listen != self.listen:
            self.policy.check(listen)  # refused before anything changes
        if listen != self.listen or upstream != self.upstream:
            self.stop()
            self.listen = listen
            self.upstream = upstream
        if enabled != self.enabled:
            if enabled:
                await self.start()
            else:
                self.stop()


@dataclass
class ProxyInput:
    name: str
    listen: str
    upstream: str
    enabled: bool


class ProxyCollection:
    """All proxies of the server, by name."""

    def __init__(self, log: JsonLogger, rng: random.Random, policy: ListenPolicy | None = None) -> None:
        self.log = log
        self.rng = rng
        self.policy = policy or ListenPolicy(LOOPBACK)
        self.proxies: dict[str, Proxy] = {}

    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise PROXY_NOT_FOUND from None

    def new_proxy(self, p: ProxyInput) -> Proxy:
        return Proxy(name=p.name, listen=p.listen, upstream=p.upstream, log=self.log, rng=self.rng,
                     policy=self.policy)

    async def add(self, p: ProxyInput) -> Proxy:
        if p.name in self.proxies:
            raise PROXY_ALREADY_EXISTS
        self.policy.check(p.listen)
        proxy = self.new_proxy(p)
        if p.enabled:
            await proxy.start()
        self.proxies[p.name] = proxy
        return proxy

    async def add_or_replace(self, p: ProxyInput) -> Proxy:
        existing = self.proxies.get(p.name)
        if existing is not None:
            if existing.listen == p.listen and existing.upstream == p.upstream:
                return existing
        self.policy.check(p.listen)
        if existing is not None:
            existing.stop()
        proxy = self.new_proxy(p)
        if p.enabled:
            await proxy.start()
        self.proxies[p.name] = proxy
        return proxy

    async def populate(self, inputs: list[ProxyInput]) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace each proxy in order; stop at the first failure and return the
        proxies done so far with the error (Toxiproxy 2.x behaviour)."""
        for i, p in enumerate(inputs, start=1):
            if not p.name:
                return [], MISSING_FIELD.wrap(f"name at proxy {i}")
            if not p.upstream:
                return [], MISSING_FIELD.wrap(f"upstream at proxy {i}")
        done: list[Proxy] = []
        for p in inputs:
            try:
                done.append(await self.add_or_replace(p))
            except ApiError as e:
                return done, e
        return done, None

    def remove(self, name: str) -> None:
        proxy = self.get(name)
        proxy.stop()
        del self.proxies[name]

    def clear(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.stop()
        self.proxies.clear()
