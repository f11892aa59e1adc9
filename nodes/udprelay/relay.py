"""Relays UDP datagrams from advertised addresses to where nodes listen.

The real storage server runs QUIC (UDP) on its OxenMQ port, and its peers reach it at the address
the node list advertises — under faults that is the node's proxy address, where Toxiproxy only
relays TCP. This relay makes the UDP side of such an address lead to the node as well: for every
``{"listen": "IP:PORT", "upstream": "IP:PORT"}`` of the config file it binds ``listen``, gives every
sender its own upstream socket (so answers find their way back) and forgets senders idle for
``--idle`` seconds. It injects no faults: UDP traffic of a node is not under Toxiproxy's faults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from nodes.common.logs import JsonLogger, parse_level

Addr = tuple[str, int]


def parse_addr(text: str) -> Addr:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected IP:PORT, got {text!r}")
    return host, int(port)


class _Upstream(asyncio.DatagramProtocol):
    """One sender's socket towards the upstream: answers go back to that sender."""

    def __init__(self, relay: _Listener, sender: Addr) -> None:
        self.relay = relay
        self.sender = sender
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.last = time.monotonic()
        if self.relay.transport is not None:
            self.relay.transport.sendto(data, self.sender)

    def error_received(self, exc: Exception) -> None:  # e.g. ECONNREFUSED: upstream not up yet
        pass


@dataclass
class _Listener(asyncio.DatagramProtocol):
    listen: Addr
    upstream: Addr
    log: JsonLogger
    transport: asyncio.DatagramTransport | None = None
    senders: dict[Addr, _Upstream] = field(default_factory=dict)
    pending: dict[Addr, list[bytes]] = field(default_factory=dict)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        up = self.senders.get(addr)
        if up is not None and up.transport is not None:
            up.last = time.monotonic()
            up.transport.sendto(data)
            return
        queue = self.pending.setdefault(addr, [])
        queue.append(data)
        if len(queue) == 1:  # first datagram of this sender: open its upstream socket
            asyncio.get_running_loop().create_task(self._open(addr))

    def error_received(self, exc: Exception) -> None:
        pass

    async def _open(self, sender: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Upstream(self, sender), remote_addr=self.upstream)
        except OSError as e:
            self.log.log("warning", "upstream_failed", listen=self.listen, error=repr(e))
            self.pending.pop(sender, None)
            return
        self.senders[sender] = proto
        for data in self.pending.pop(sender, []):
            if proto.transport is not None:
                proto.transport.sendto(data)

    def close(self) -> None:
        for up in self.senders.values():
            if up.transport is not None:
                up.transport.close()
        self.senders.clear()
        if self.transport is not None:
            self.transport.close()

    def expire(self, idle: float) -> None:
        now = time.monotonic()
        for sender, up in list(self.senders.items()):
            if now - up.last > idle:
                if up.transport is not None:
                    up.transport.close()
                del self.senders[sender]


def load_config(path: Path) -> list[tuple[Addr, Addr]]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return [(parse_addr(e["listen"]), parse_addr(e["upstream"])) for e in data["relays"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: expected {{\"relays\": [{{\"listen\": \"IP:PORT\", "
                         f"\"upstream\": \"IP:PORT\"}}]}}: {e}") from None


async def serve(relays: list[tuple[Addr, Addr]], idle: float, log: JsonLogger,
                stop: asyncio.Event | None = None, started: asyncio.Event | None = None) -> int:
    """Relay until SIGTERM/SIGINT (or ``stop`` is set); ``started`` is set once all listen."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    listeners = []
    for listen, upstream in relays:
        try:
            _, proto = await loop.create_datagram_endpoint(
                lambda listen=listen, upstream=upstream: _Listener(listen, upstream, log),  # type: ignore[misc]
                local_addr=listen)
        except OSError as e:
            log.log("error", "bind_failed", listen=listen, error=repr(e))
            return 1
        listeners.append(proto)
        log.log("info", "relay_started", listen=f"{listen[0]}:{listen[1]}",
                upstream=f"{upstream[0]}:{upstream[1]}")
    if started is not None:
        started.set()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=min(idle, 5.0))
        except TimeoutError:
            for proto in listeners:
                proto.expire(idle)
    for proto in listeners:
        proto.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.udprelay", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True, help='JSON {"relays": [{"listen", "upstream"}]}')
    p.add_argument("--idle", type=float, default=60.0, help="forget senders idle this long (s)")
    p.add_argument("--log-file", type=Path, default=None)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    try:
        relays = load_config(args.config)
        log = JsonLogger("udprelay", args.log_file, level=parse_level(args.log_level))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return asyncio.run(serve(relays, args.idle, log))
