"""The TCP side of a proxy: one :class:`Connection` per accepted client, two :class:`Link` s per
connection (``upstream``: client → server, ``downstream``: server → client), and on each link a
chain of :class:`Stage` s, one per toxic of that direction, in the order they were added (the
model of Toxiproxy's ToxicLink/ToxicStub).

Data path. Sockets are asyncio transports driven by small protocols. A link with no toxic writes
what it reads straight into the destination transport (no task switch, no copy); flow control is
the transports' own: when the destination's write buffer is full the source stops reading. With
toxics, each read becomes a :class:`~nodes.toxiproxy.toxics.Chunk` stamped with the loop time and
is put into the first stage; a stage's task applies its toxic and passes chunks to the next stage,
the last one to the link's *sink*, which writes to the destination. At most
:data:`HIGH_WATER` bytes are in a link's stages at once (the source stops reading above it and
resumes below :data:`LOW_WATER`).

End of stream. End-of-file or an error on a source puts :data:`EOF` into its link; when it reaches
the sink, the destination is closed (fully, as Toxiproxy does: it has no half-close), which in
turn ends the other link. Data still inside the other link's stages is delivered before that
link closes its own destination.

Live changes (applied to every open connection, at once):

* add: the new stage goes at the end of the chain; chunks emitted by the stage before it from
  then on pass through it.
* update: the stage's task is stopped, the chunk it was holding goes back to the head of its
  queue, and it restarts with the new attributes (toxicity is rolled again, like Toxiproxy).
* remove: the stage is unlinked and everything it held or had queued is handed to the next stage
  at once, in order, without the toxic's effect; removing a ``timeout`` toxic closes the link
  (Toxiproxy's ``Cleanup``).

Toxicity is rolled per link and toxic when the stage starts: with probability ``toxicity`` the
toxic applies to that connection, else the stage passes data straight through.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from .addr import split_host_port
from .log import JsonLogger
from .toxics import DOWNSTREAM, EOF, TIMEOUT, UPSTREAM, Chunk, ToxicSpec

#: bytes a link may hold inside its toxic stages before it stops reading its source
HIGH_WATER = 4 * 1024 * 1024
#: ... and below which it reads again
LOW_WATER = 1 * 1024 * 1024

CLIENT = "client"
SERVER = "upstream"

_LINGER_RST = struct.pack("ii", 1, 0)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ToxicChains(Protocol):
    """The proxy's toxics as a connection needs them: the chain of each direction, in order."""

    def chain(self, direction: str) -> list[ToxicSpec]: ...


class ConnectionOwner(Protocol):
    """What a connection uses of the proxy that accepted it (:class:`nodes.toxiproxy.proxy.Proxy`):
    its name and upstream, its RNG and logger, its live connections, its toxics, and the
    generation of its listener (bumped on every start/stop)."""

    name: str
    upstream: str
    rng: random.Random
    log: JsonLogger
    generation: int
    connections: set[Connection]

    @property
    def toxics(self) -> ToxicChains: ...


class Stage:
    """One toxic on one link: implements :class:`nodes.toxiproxy.toxics.ToxicStage` (the contract
    a toxic's ``run`` coroutine relies on); the link drives its lifecycle (see the module
    docstring).
    """

    __slots__ = ("link", "spec", "loop", "rng", "queue", "waiter", "held", "out", "task", "closed",
                 "state", "passthrough")

    def __init__(self, link: Link, spec: ToxicSpec) -> None:
        self.link = link
        self.spec = spec
        self.loop = link.loop
        self.rng = link.rng
        self.queue: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.held: Any = None
        self.out: Callable[[Any], None] = link.sink
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.state: dict[str, Any] = {}
        self.passthrough = True

    # -- lifecycle (driven by Link) --

    def roll(self) -> None:
        active = self.rng.random() < self.spec.toxicity
        self.passthrough = not active or self.spec.kind.run is None

    def start(self) -> None:
        if self.closed:
            self._discard_queue()
            return
        if self.passthrough:
            while self.queue and not self.closed:
                self._forward(self.queue.popleft())
            return
        self.task = self.loop.create_task(self._run())

    def stop(self) -> list[Any]:
        """Stop the running toxic; return what it had not emitted yet (held chunk first)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        pending: list[Any] = []
        if self.held is not None:
            pending.append(self.held)
            self.held = None
        pending.extend(self.queue)
        self.queue.clear()
        w = self.waiter
        if w is not None and not w.done():
            w.cancel()
        self.waiter = None
        return pending

    async def _run(self) -> None:
        run = self.spec.kind.run
        assert run is not None
        try:
            await run(self)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a toxic bug must not leave the link hanging
            self.link.conn.log.error("toxic_failed", proxy=self.link.conn.proxy.name,
                                     toxic=self.spec.name, error=repr(e))
            self.held = None
            self.close()

    # -- input side --

    def put(self, c: Any) -> None:
        if self.closed:
            if c is not EOF:
                self.link.release(len(c.data))
            return
        if self.task is None:  # passthrough: no task, hand on at once
            self._forward(c)
            return
        self.queue.append(c)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _forward(self, c: Any) -> None:
        if c is EOF:
            self.closed = True
        self.out(c)

    def _discard_queue(self) -> None:
        while self.queue:
            c = self.queue.popleft()
            if c is not EOF:
                self.link.release(len(c.data))

    # -- the toxic's API --

    async def get(self, deadline: float | None = None) -> Any:
        while not self.queue:
            if deadline is not None and self.loop.time() >= deadline:
                return TIMEOUT
            fut = self.loop.create_future()
            self.waiter = fut
            handle = self.loop.call_at(deadline, _wake, fut) if deadline is not None else None
            try:
                await fut
            finally:
                if handle is not None:
                    handle.cancel()
                if self.waiter is fut:
                    self.waiter = None
        return self.queue.popleft()

    def emit(self, c: Any) -> None:
        self.out(c)

    def drop(self, c: Chunk) -> None:
        self.link.release(len(c.data))

    def drop_bytes(self, n: int) -> None:
        self.link.release(n)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._discard_queue()
        self.out(EOF)

    def reset(self) -> None:
        self.closed = True
        self._discard_queue()
        self.link.conn.reset()


class Link:
    """One direction of a connection: source transport → stages → destination transport."""

    __slots__ = ("conn", "direction", "source", "dest", "loop", "rng", "stages", "head", "inflight",
                 "inflight_paused", "dest_paused", "reading_paused", "eof_in", "finished")

    def __init__(self, conn: Connection, direction: str, source: asyncio.Transport,
                 dest: asyncio.Transport, specs: list[ToxicSpec]) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.loop = conn.loop
        self.rng = conn.rng
        self.stages: list[Stage] = []
        self.head: Callable[[Any], None] = self.sink
        self.inflight = 0
        self.inflight_paused = False
        self.dest_paused = False
        self.reading_paused = False
        self.eof_in = False
        self.finished = False
        for spec in specs:
            self.add_stage(spec)

    # -- data path --

    def push(self, data: bytes) -> None:
        if self.finished:
            return
        if not self.stages:
            self.dest.write(data)
            return
        self.inflight += len(data)
        self.head(Chunk(data, self.loop.time()))
        if not self.inflight_paused and self.inflight > HIGH_WATER:
            self.inflight_paused = True
            self._sync_reading()

    def push_eof(self) -> None:
        if self.eof_in:
            return
        self.eof_in = True
        self.head(EOF)

    def sink(self, c: Any) -> None:
        if c is EOF:
            self.finish()
            return
        if not self.finished:
            self.dest.write(c.data)
        self.release(len(c.data))

    def release(self, n: int) -> None:
        self.inflight -= n
        if self.inflight_paused and self.inflight <= LOW_WATER:
            self.inflight_paused = False
            self._sync_reading()

    def finish(self) -> None:
        """EOF reached the sink: close the destination (which ends the other direction too)."""
        if self.finished:
            return
        self.finished = True
        self.conn.close_transport(self.dest)

    def dest_gone(self) -> None:
        self.finished = True

    def set_dest_paused(self, paused: bool) -> None:
        self.dest_paused = paused
        self._sync_reading()

    def _sync_reading(self) -> None:
        want = self.dest_paused or self.inflight_paused
        if want == self.reading_paused:
            return
        self.reading_paused = want
        if self.source.is_closing():
            return
        if want:
            self.source.pause_reading()
        else:
            self.source.resume_reading()

    # -- live toxic changes --

    def add_stage(self, spec: ToxicSpec) -> None:
        st = Stage(self, spec)
        st.roll()
        if self.stages:
            self.stages[-1].out = st.put
        else:
            self.head = st.put
        self.stages.append(st)
        st.start()

    def update_stage(self, index: int, spec: ToxicSpec) -> None:
        st = self.stages[index]
        pending = st.stop()
        st.spec = spec
        if st.closed:
            for c in pending:
                if c is not EOF:
                    self.release(len(c.data))
            return
        st.queue.extend(pending)
        st.roll()
        st.start()

    def remove_stage(self, index: int) -> None:
        st = self.stages.pop(index)
        pending = st.stop()
        nxt = st.out
        if index == 0:
            self.head = nxt
        else:
            self.stages[index - 1].out = nxt
        was_closed = st.closed
        st.closed = True
        if st.spec.type == "timeout" and not was_closed:
            # Toxiproxy's TimeoutToxic.Cleanup closes the stub: the link ends
            for c in pending:
                if c is not EOF:
                    self.release(len(c.data))
            nxt(EOF)
            return
        for c in pending:
            nxt(c)

    def cancel(self) -> None:
        for st in self.stages:
            st.stop()
            st.closed = True


class _SideProtocol(asyncio.Protocol):
    """Glue between one socket and its Connection. Reading starts paused; the Connection resumes
    it once both links exist.

    Bytes (and an EOF) that arrive before the links exist are kept and handed over by
    :meth:`attach`: pausing in ``connection_made`` is not reliable on every CPython (before
    3.11.3 the selector transport re-adds its reader after ``connection_made``), and dropping
    those bytes would silently lose the start of a request.
    """

    __slots__ = ("conn", "side", "push", "transport", "pending", "pending_eof")

    def __init__(self, conn: Connection | None, side: str) -> None:
        self.conn = conn
        self.side = side
        self.push: Callable[[bytes], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.pending_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        transport.pause_reading()

    def attach(self, push: Callable[[bytes], None]) -> None:
        """Start forwarding to ``push``, first whatever arrived before."""
        self.push = push
        pending, self.pending = self.pending, []
        for chunk in pending:
            push(chunk)
        if self.pending_eof and self.conn is not None:
            self.pending_eof = False
            self.conn.on_eof(self.side)

    def data_received(self, data: bytes) -> None:
        push = self.push
        if push is not None:
            push(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        if self.push is None:
            self.pending_eof = True
        elif self.conn is not None:
            self.conn.on_eof(self.side)
        return True  # keep the transport: the other direction may still write to it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.on_lost(self.side, exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.on_dest_paused(self.side, True)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.on_dest_paused(self.side, False)


class ClientProtocol(_SideProtocol):
    """Protocol of an accepted client socket: creates the Connection."""

    __slots__ = ("proxy", "generation")

    def __init__(self, proxy: ConnectionOwner) -> None:
        super().__init__(None, CLIENT)
        self.proxy = proxy
        self.generation = proxy.generation  # the listener run that accepted this socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        if self.generation != self.proxy.generation:
            transport.abort()  # accepted just before the proxy was stopped
            return
        transport.pause_reading()
        self.conn = Connection(self.proxy, transport, self)
        self.conn.start()


class Connection:
    """An accepted client and its upstream connection."""

    def __init__(self, proxy: ConnectionOwner, client: asyncio.Transport, client_proto: _SideProtocol) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.rng: random.Random = proxy.rng
        self.log = proxy.log
        self.client = client
        self.client_proto = client_proto
        self.upstream: asyncio.Transport | None = None
        self.upstream_proto: _SideProtocol | None = None
        self.up: Link | None = None
        self.down: Link | None = None
        self.client_lost = False
        self.upstream_lost = False
        self.dial_task: asyncio.Task[None] | None = None
        self.done = False
        peer = client.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def start(self) -> None:
        self.proxy.connections.add(self)
        self.dial_task = self.loop.create_task(self._dial())

    async def _dial(self) -> None:
        proxy = self.proxy
        if self.log.enabled(10):
            self.log.debug("client_accepted", proxy=proxy.name, client=self.peer, upstream=proxy.upstream)
        proto = _SideProtocol(self, SERVER)
        try:
            host, port = split_host_port(proxy.upstream)
            # an empty host (":port") dials the local system, as Go's net.Dial does: asyncio
            # resolves None to the loopback addresses (typeshed only allows str here)
            transport, _ = await self.loop.create_connection(
                lambda: proto, host or None, port)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            if proto.transport is not None:  # connected just as we were cancelled
                proto.transport.abort()
            return
        except (OSError, ValueError) as e:
            self.log.error("upstream_dial_failed", proxy=proxy.name, client=self.peer,
                           upstream=proxy.upstream, error=str(e))
            self.client.close()
            return
        finally:
            self.dial_task = None
        if self.client_lost or self.done:
            transport.abort()
            return
        self.upstream = transport
        self.upstream_proto = proto
        toxics = proxy.toxics
        self.up = Link(self, UPSTREAM, self.client, transport, toxics.chain(UPSTREAM))
        self.down = Link(self, DOWNSTREAM, transport, self.client, toxics.chain(DOWNSTREAM))
        self.client_proto.attach(self.up.push)
        proto.attach(self.down.push)
        self.client.resume_reading()
        transport.resume_reading()

    # -- events from the protocols --

    def _links(self, side: str) -> tuple[Link | None, Link | None]:
        """(link reading from `side`, link writing to `side`)"""
        if side == CLIENT:
            return self.up, self.down
        return self.down, self.up

    def on_eof(self, side: str) -> None:
        src, _ = self._links(side)
        if src is not None:
            src.push_eof()

    def on_lost(self, side: str, exc: Exception | None) -> None:
        if side == CLIENT:
            self.client_lost = True
            if self.dial_task is not None:
                self.dial_task.cancel()
        else:
            self.upstream_lost = True
        src, dst = self._links(side)
        if dst is not None:
            dst.dest_gone()
        if src is not None:
            src.push_eof()
        if self.client_lost and (self.upstream is None or self.upstream_lost):
            self._cleanup()

    def on_dest_paused(self, side: str, paused: bool) -> None:
        _, dst = self._links(side)
        if dst is not None:
            dst.set_dest_paused(paused)

    # -- closing --

    def close_transport(self, transport: asyncio.Transport) -> None:
        transport.close()

    def reset(self) -> None:
        """TCP RST to both peers (reset_peer): SO_LINGER 0, then close."""
        for t in (self.client, self.upstream):
            if t is None:
                continue
            sock = t.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass
            t.abort()

    def abort(self) -> None:
        """Close both sockets now (proxy disabled, deleted or server shutting down)."""
        if self.dial_task is not None:
            self.dial_task.cancel()
        self.client.abort()
        if self.upstream is not None:
            self.upstream.abort()
        if self.upstream is None:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.done:
            return
        self.done = True
        for link in (self.up, self.down):
            if link is not None:
                link.cancel()
        self.proxy.connections.discard(self)
        if self.log.enabled(10):
            self.log.debug("client_closed", proxy=self.proxy.name, client=self.peer)
