"""The seed's OxenMQ front end: one ZeroMQ ROUTER per real storage server (pyzmq, asyncio).

Each configured node gets its own endpoint (the server's key fetch is anonymous, so the endpoint
is what tells the seed who asks).  Requests are answered by :class:`OxendCommands`; on every new
block (:meth:`OxendServer.notify_block`) each ``sub.block`` subscriber gets ``notify.block``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from nodes.common.logs import JsonLogger
from nodes.common.service import StartupError

from . import framing
from .commands import COMMANDS, NOTIFY_BLOCK, OxendCommands

HOLD_LIMIT_S = 20.0  # a held request is forgotten after this (the server's own timeout is 15 s)


@dataclass
class HeldRequest:
    name: str
    route: bytes
    command: str
    rest: list[bytes]  # tag, data...
    since: float


class OxendServer:
    """Binds the endpoints of ``commands.specs`` and serves them until :meth:`stop`."""

    def __init__(self, commands: OxendCommands, logger: JsonLogger) -> None:
        self.commands = commands
        self.log = logger
        self._ctx: zmq.asyncio.Context | None = None
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._new_block = asyncio.Event()
        self._held: list[HeldRequest] = []

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: spec.endpoint for name, spec in self.commands.specs.items()}

    async def start(self) -> None:
        """Bind every endpoint and list every configured node; raises StartupError."""
        self._ctx = zmq.asyncio.Context()
        try:
            for name, spec in self.commands.specs.items():
                sock = self._ctx.socket(zmq.ROUTER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a push to a gone peer raises: drop it
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnect with the same identity takes over
                self._sockets[name] = sock
                try:
                    sock.bind(spec.endpoint)
                except zmq.ZMQError as exc:
                    raise StartupError(f"cannot bind the OxenMQ endpoint {spec.endpoint} of real node {name}: "
                                       f"{exc}; choose a free port / writable path in the real-node list") from exc
        except StartupError:
            self._close()
            raise
        self.commands.register_all()
        for name, sock in self._sockets.items():
            self._tasks.append(asyncio.create_task(self._serve(name, sock), name=f"oxend-{name}"))
        self._tasks.append(asyncio.create_task(self._push_blocks(), name="oxend-notify"))
        self.log.info("oxend_listening", endpoints=self.endpoints,
                      hardfork=list(self.commands.core.config.hardfork))

    def notify_block(self) -> None:
        """A new block was produced: push it to every subscriber (soon, from the pusher task)."""
        self._new_block.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._close()

    def _close(self) -> None:
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets = {}
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # --- serving ---------------------------------------------------------------------------
    async def _send(self, name: str, sock: zmq.asyncio.Socket, frames: list[bytes]) -> bool:
        try:
            await sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (peer gone) or EAGAIN (peer not reading)
            self.log.debug("oxend_send_failed", node=name, command=frames[1][:40].decode(errors="replace"),
                           error=str(exc))
            return False

    async def _serve(self, name: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                out = self._answer(name, frames)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the endpoint
                self.log.error("oxend_request_failed", node=name, error=repr(exc))
                continue
            if out is not None:
                await self._send(name, sock, out)
            await self._release_held()

    def _answer(self, name: str, frames: list[bytes]) -> list[bytes] | None:
        """The frames to send back for one received message (None: nothing)."""
        try:
            msg = framing.parse(frames)
        except framing.FramingError as exc:
            self.log.warning("oxend_bad_message", node=name, error=str(exc))
            return None
        if msg.command == "HI":
            return framing.hello(msg.route)
        if msg.command == "BYE":
            return None
        if msg.command in COMMANDS and not msg.rest:
            self.log.warning("oxend_request_without_tag", node=name, command=msg.command)
            return None
        if (reason := self.commands.first_list_held(msg.command, msg.rest[1:])) is not None:
            if not any(h.name == name for h in self._held):
                self.log.info("oxend_first_list_held", node=name, reason=reason)
            self.commands.observations.node(name).held += 1
            self.commands.contact(name)  # waiting is a sign of life too
            self._held.append(HeldRequest(name, msg.route, msg.command, msg.rest, time.monotonic()))
            return None
        answer = self.commands.handle(name, msg.route, msg.command, msg.rest[1:])
        if answer is None:
            self.log.warning("oxend_unknown_command", node=name, command=msg.command)
            return framing.unknown_command(msg.route, msg.command)
        self.log.debug("oxend_request", node=name, command=msg.command, status=answer[0][:8].decode())
        return framing.reply(msg.route, msg.rest[0], answer)

    async def _release_held(self) -> None:
        """Answer held first-list requests once the list is long enough; forget stale ones."""
        if not self._held:
            return
        now = time.monotonic()
        keep: list[HeldRequest] = []
        pending, self._held = self._held, []  # requests held while this awaits go to the new list
        for held in pending:
            sock = self._sockets.get(held.name)
            if sock is None or now - held.since > HOLD_LIMIT_S:
                continue
            if self.commands.first_list_held(held.command, held.rest[1:]) is not None:
                keep.append(held)
                continue
            answer = self.commands.handle(held.name, held.route, held.command, held.rest[1:])
            if answer is not None:
                self.log.info("oxend_first_list_released", node=held.name, waited=round(now - held.since, 3))
                await self._send(held.name, sock, framing.reply(held.route, held.rest[0], answer))
        self._held.extend(keep)

    async def _push_blocks(self) -> None:
        while True:
            await self._new_block.wait()
            self._new_block.clear()
            await self._release_held()
            data = self.commands.block_notification()
            for name, sock in self._sockets.items():
                for route in sorted(self.commands.subscribers[name]):
                    if not await self._send(name, sock, framing.push(route, NOTIFY_BLOCK, data)):
                        self.commands.unsubscribe(name, route)
                        self.log.info("oxend_unsubscribed", node=name, reason="peer gone")

    def snapshot(self) -> dict[str, Any]:
        return self.commands.snapshot()
