"""The Toxiproxy server process: HTTP API + proxies on one asyncio loop, clean SIGTERM shutdown.

``python -m nodes.toxiproxy [--host HOST] [--port PORT] [--config FILE] [--seed N]
[--allow-listen CIDR ...] [--log-level LEVEL]`` — the flags of ``toxiproxy-server`` (``-host``,
``-port``, ``-config``, ``-seed``; ``LOG_LEVEL`` in the environment as the default level), plus
``--allow-listen``: the networks proxies may listen in (see listen_policy.py; default loopback,
and the host's interface networks when the API listens on a wildcard address).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from nodes.common import eventloop

from .api import VERSION, ToxiproxyApi
from .errors import ApiError, decode_json
from .listen_policy import ListenPolicy
from .log import JsonLogger, parse_level
from .proxy import ProxyCollection, ProxyInput


@dataclass
class ToxiproxyServer:
    """A Toxiproxy-compatible server that can also be embedded in another asyncio program.

    ``await start()`` binds the API (``api_port`` then holds the real port when `port` is 0);
    ``await stop()`` closes every proxy and connection, then the API.
    """

    host: str = "localhost"
    port: int = 8474
    log: JsonLogger = field(default_factory=lambda: JsonLogger("toxiproxy"))
    seed: int | None = None
    version: str = VERSION
    listen_policy: ListenPolicy | None = None  # None: ListenPolicy.default(host)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        if self.listen_policy is None:
            self.listen_policy = ListenPolicy.default(self.host)
        self.collection = ProxyCollection(self.log, rng, self.listen_policy)
        self.api = ToxiproxyApi(self.collection, self.log, self.version)
        self._runner: web.AppRunner | None = None
        self.api_port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            self._runner = None
            raise RuntimeError(f"cannot listen for the API on {self.host}:{self.port}: {e}. "
                               "Is another Toxiproxy running there? Choose another --port.") from e
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.api_port = sockets[0].getsockname()[1] if sockets else self.port
        assert self.listen_policy is not None
        self.log.info("api_listening", address=f"{self.host}:{self.api_port}", version=self.version,
                      allow_listen=[str(n) for n in self.listen_policy.networks])

    async def populate_file(self, path: Path) -> None:
        """Create the proxies of a JSON config file (``-config``), like ``POST /populate``."""
        try:
            body = decode_json(path.read_bytes())
        except OSError as e:
            self.log.error("config_read_failed", config=str(path), error=str(e))
            return
        except ApiError as e:
            self.log.error("config_invalid", config=str(path), error=e.message)
            return
        if not isinstance(body, list) or not all(isinstance(x, dict) for x in body):
            self.log.error("config_invalid", config=str(path), error="expected a JSON array of proxies")
            return
        inputs = []
        for item in body:
            enabled = item.get("enabled")
            inputs.append(ProxyInput(name=str(item.get("name") or ""), listen=str(item.get("listen") or ""),
                                     upstream=str(item.get("upstream") or ""),
                                     enabled=True if enabled is None else bool(enabled)))
        async with self.api.lock:
            done, err = await self.collection.populate(inputs)
        if err is not None:
            self.log.error("config_populate_failed", config=str(path), error=err.message)
        else:
            self.log.info("config_populated", config=str(path), proxies=len(done))

    async def stop(self) -> None:
        async with self.api.lock:
            self.collection.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.log.info("shutdown_complete")


async def serve(args: argparse.Namespace, log: JsonLogger) -> int:
    server = ToxiproxyServer(host=args.host, port=args.port, log=log, seed=args.seed,
                             listen_policy=ListenPolicy.parse(args.allow_listen) if args.allow_listen else None)
    try:
        await server.start()
    except RuntimeError as e:
        log.error("api_listen_failed", error=str(e))
        return 1
    if args.config:
        await server.populate_file(Path(args.config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutdown_requested")
    await server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.toxiproxy",
                                description="Toxiproxy 2.x compatible TCP fault-injection proxy.")
    p.add_argument("--host", "-host", default="localhost", help="API host (default localhost)")
    p.add_argument("--port", "-port", type=int, default=8474, help="API port (default 8474; 0 = any)")
    p.add_argument("--config", "-config", default="", help="JSON file of proxies to create at start")
    p.add_argument("--seed", "-seed", type=int, default=None,
                   help="seed of the toxicity random generator (default: random)")
    p.add_argument("--allow-listen", action="append", default=[], metavar="CIDR",
                   help="network proxies may listen in; repeat for several (default: loopback, plus this "
                        "host's interface networks when --host is a wildcard such as 0.0.0.0)")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"),
                   help="trace|debug|info|warn|error (default $LOG_LEVEL or info)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ListenPolicy.parse(args.allow_listen)
    except ValueError as e:
        parser.error(str(e))
    try:
        level = parse_level(args.log_level)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = JsonLogger("toxiproxy", level=level)
    try:
        return eventloop.run(serve(args, log))
    except KeyboardInterrupt:
        return 0
