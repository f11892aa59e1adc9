"""Toxic types: their JSON form, attribute defaults and validation, and what each does to data.

A toxic is described by a :class:`ToxicSpec` (the API object). On every live link of its
direction it runs as one stage (:class:`ToxicStage`, implemented by
:class:`nodes.toxiproxy.link.Stage`): an asyncio task executing the toxic's ``run`` coroutine,
which takes chunks from the stage's input queue with ``stage.get()`` and hands them on with
``stage.emit()``. Semantics follow
Toxiproxy 2.x (``toxics/*.go``):

* ``latency``   ``latency``, ``jitter`` (ms): each chunk leaves ``latency ± jitter`` after it
  entered the link; chunks are pipelined, several latency toxics add up.
* ``bandwidth`` ``rate`` (KB/s, 1 KB = 1000 bytes; <= 0 = unlimited); chunks bigger than 100 ms
  worth of data are split and sent every 100 ms.
* ``slow_close`` ``delay`` (ms): data passes, the close is delayed.
* ``timeout``   ``timeout`` (ms): all data is dropped; after ``timeout`` ms the connection is
  closed; 0 = never closed while the toxic exists. Removing it closes the connection (as
  Toxiproxy's ``Cleanup``).
* ``reset_peer`` ``timeout`` (ms): on the first data (or close) seen, wait ``timeout`` ms, then
  reset both sockets (SO_LINGER 0 → TCP RST).
* ``slicer``    ``average_size``, ``size_variation`` (bytes), ``delay`` (µs): chunks are cut in
  pieces of about ``average_size ± size_variation`` bytes, ``delay`` µs apart.
* ``limit_data`` ``bytes``: pass at most ``bytes`` bytes (counted per connection and toxic),
  then close.
* ``noop``: passes everything (Toxiproxy registers it too).
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import (
    BAD_REQUEST_BODY,
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_ALREADY_EXISTS,
    check_float,
    check_int,
    check_str,
    pick_fields,
    top_level_error,
    type_error,
)

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
DIRECTIONS = (UPSTREAM, DOWNSTREAM)  # Toxiproxy's order (stream.Upstream = 0)


class Chunk:
    """Bytes travelling through a link, with the loop time they entered it (for latency)."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: end of stream: the source closed (or a toxic closed the link); the sink closes the destination
EOF: Any = _Sentinel("EOF")
#: returned by ``Stage.get(deadline)`` when the deadline passed before a chunk arrived
TIMEOUT: Any = _Sentinel("TIMEOUT")


class ToxicStage(Protocol):
    """What a toxic's ``run`` coroutine sees of the stage it runs in (one toxic on one link).

    ``await get(deadline=None)`` → next :class:`Chunk`, :data:`EOF`, or :data:`TIMEOUT` (only when
    `deadline`, a loop time, passed); ``held`` = the chunk taken but not emitted yet (a toxic must
    keep it current across every await); ``emit(chunk)``; ``drop(chunk)`` / ``drop_bytes(n)`` for
    data the toxic discards; ``close()`` ends the link's direction (EOF downstream); ``reset()``
    resets the connection; ``spec``, ``state`` (per-connection, survives updates), ``rng``,
    ``loop``. The link owns the stage and drives its lifecycle; a toxic only uses this.
    """

    spec: ToxicSpec
    state: dict[str, Any]
    held: Any
    rng: random.Random
    loop: asyncio.AbstractEventLoop

    async def get(self, deadline: float | None = None) -> Any: ...

    def emit(self, c: Any) -> None: ...

    def drop(self, c: Chunk) -> None: ...

    def drop_bytes(self, n: int) -> None: ...

    def close(self) -> None: ...

    def reset(self) -> None: ...


# -- run coroutines (one per toxic type) ----------------------------------------------------------

async def run_latency(st: ToxicStage) -> None:
    loop = st.loop
    while True:
        c = await st.get()
        if c is EOF:
            st.close()
            return
        attrs = st.spec.attributes
        delay = attrs["latency"]
        jitter = attrs["jitter"]
        if jitter > 0:
            delay += st.rng.randrange(2 * jitter) - jitter  # Go: rand.Int63n(2*jitter) - jitter
        target = c.ts + delay / 1000.0
        wait = target - loop.time()
        if wait > 0:
            st.held = c
            await asyncio.sleep(wait)
            st.held = None
            c.ts = target
        else:
            c.ts = loop.time()
        st.emit(c)


async def run_bandwidth(st: ToxicStage) -> None:
    loop = st.loop
    next_t = 0.0  # virtual clock: when the bytes sent so far are "paid for"
    while True:
        c = await st.get()
        if c is EOF:
            st.close()
            return
        rate = st.spec.attributes["rate"]
        if rate <= 0:
            st.emit(c)
            continue
        now = loop.time()
        if next_t < now:
            next_t = now
        piece = rate * 100  # bytes in 100 ms
        data = c.data
        st.held = c
        while len(data) > piece:
            next_t += 0.1
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            head, data = data[:piece], data[piece:]
            st.held = Chunk(data, c.ts)
            st.emit(Chunk(head, c.ts))
        next_t += len(data) / (rate * 1000.0)
        wait = next_t - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        st.held = None
        st.emit(Chunk(data, c.ts) if data is not c.data else c)


async def run_slow_close(st: ToxicStage) -> None:
    while True:
        c = await st.get()
        if c is EOF:
            st.held = EOF
            await asyncio.sleep(st.spec.attributes["delay"] / 1000.0)
            st.held = None
            st.close()
            return
        st.emit(c)


async def run_timeout(st: ToxicStage) -> None:
    timeout = st.spec.attributes["timeout"]
    deadline = st.loop.time() + timeout / 1000.0 if timeout > 0 else None
    while True:
        c = await st.get(deadline)
        if c is EOF or c is TIMEOUT:
            st.close()
            return
        st.drop(c)  # data is dropped on the ground


async def run_reset_peer(st: ToxicStage) -> None:
    c = await st.get()
    st.held = c
    timeout = st.spec.attributes["timeout"]
    if timeout > 0:
        await asyncio.sleep(timeout / 1000.0)
    st.held = None
    if c is not EOF:
        st.drop(c)
    st.reset()


def slice_offsets(size: int, average: int, variation: int, randrange: Callable[[int], int]) -> list[int]:
    """Cut points ``[0, a, b, ..., size]`` splitting `size` bytes like Toxiproxy's slicer.

    A range is kept whole when ``len - average <= variation``; otherwise it is split near its
    middle (± `variation`) and both halves are treated the same way. Every piece is non-empty.
    """
    if size <= 0:
        return [0, size]
    cuts: list[int] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        n = end - start
        if n - average <= variation or n <= 1:
            cuts.append(start)
            continue
        mid = start + n // 2
        if variation > 0:
            mid += randrange(variation * 2) - variation
        mid = min(max(mid, start + 1), end - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    cuts.append(size)
    return cuts


async def run_slicer(st: ToxicStage) -> None:
    while True:
        c = await st.get()
        if c is EOF:
            st.close()
            return
        attrs = st.spec.attributes
        delay = attrs["delay"] / 1_000_000.0
        data = c.data
        cuts = slice_offsets(len(data), attrs["average_size"], attrs["size_variation"], st.rng.randrange)
        last = len(cuts) - 2
        for i in range(len(cuts) - 1):
            a, b = cuts[i], cuts[i + 1]
            st.held = Chunk(data[b:], c.ts) if i < last else None
            st.emit(Chunk(data[a:b], c.ts))
            if delay > 0:
                await asyncio.sleep(delay)
        st.held = None


async def run_limit_data(st: ToxicStage) -> None:
    state = st.state
    while True:
        c = await st.get()
        if c is EOF:
            st.close()
            return
        limit = st.spec.attributes["bytes"]
        sent = state.get("sent", 0)
        remaining = max(limit - sent, 0)
        if remaining < len(c.data):
            st.drop_bytes(len(c.data) - remaining)
            c = Chunk(c.data[:remaining], c.ts)
        if c.data:
            state["sent"] = sent + len(c.data)
            st.emit(c)
        if limit - state.get("sent", 0) <= 0:
            st.close()
            return


# -- types ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToxicType:
    name: str
    struct: str  # Go struct name, for error messages
    attrs: tuple[tuple[str, str], ...]  # (attribute, Go type) in Go field order
    run: Callable[[ToxicStage], Awaitable[None]] | None  # None: passes data straight through
    stateful: bool = False  # keeps per-connection state across updates (limit_data)


TOXIC_TYPES: dict[str, ToxicType] = {t.name: t for t in (
    ToxicType("latency", "LatencyToxic", (("latency", "int64"), ("jitter", "int64")), run_latency),
    ToxicType("bandwidth", "BandwidthToxic", (("rate", "int64"),), run_bandwidth),
    ToxicType("slow_close", "SlowCloseToxic", (("delay", "int64"),), run_slow_close),
    ToxicType("timeout", "TimeoutToxic", (("timeout", "int64"),), run_timeout),
    ToxicType("reset_peer", "ResetToxic", (("timeout", "int64"),), run_reset_peer),
    ToxicType("slicer", "SlicerToxic",
              (("average_size", "int"), ("size_variation", "int"), ("delay", "int")), run_slicer),
    ToxicType("limit_data", "LimitDataToxic", (("bytes", "int64"),), run_limit_data, stateful=True),
    ToxicType("noop", "NoopToxic", (), None),
)}


def float32(value: float) -> float:
    """`value` rounded to float32 and given its shortest decimal form (what Go prints)."""
    try:
        f32 = float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return value
    for digits in range(1, 10):
        candidate = float(f"{f32:.{digits}g}")
        if float(struct.unpack("<f", struct.pack("<f", candidate))[0]) == f32:
            return candidate
    return f32


def json_number(value: float) -> int | float:
    return int(value) if value == int(value) and abs(value) < 2**53 else value


@dataclass(frozen=True)
class ToxicSpec:
    """A toxic as the API shows it. Immutable: an update makes a new one."""

    name: str
    type: str
    stream: str  # as the client spelled it
    direction: str  # "upstream" | "downstream"
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> ToxicType:
        return TOXIC_TYPES[self.type]

    def to_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": json_number(self.toxicity)}


def _parse_attributes(kind: ToxicType, raw: Any, base: dict[str, int]) -> dict[str, int]:
    out = dict(base)
    if raw is None:
        return out
    if not isinstance(raw, dict):
        raise type_error(raw, kind.struct, "attributes", f"toxics.{kind.struct}")
    names = tuple(name for name, _ in kind.attrs)
    types = dict(kind.attrs)
    for name, value in pick_fields(raw, names).items():
        out[name] = check_int(value, kind.struct, f"attributes.{name}", types[name])
    return out


def parse_new_toxic(body: Any, name_taken: Callable[[str], bool] = lambda _n: False) -> ToxicSpec:
    """A new toxic from a ``POST /proxies/{proxy}/toxics`` body. Raises ApiError with Toxiproxy's
    status and message, checked in Toxiproxy's order: body, stream, type, name clash (409, via
    `name_taken`), attributes."""
    if not isinstance(body, dict):
        raise top_level_error(body, "toxics.ToxicWrapper")
    fields = pick_fields(body, ("attributes", "name", "type", "stream", "toxicity"))
    name = check_str(fields, "name", "ToxicWrapper") or ""
    type_name = check_str(fields, "type", "ToxicWrapper") or ""
    stream = check_str(fields, "stream", "ToxicWrapper")
    toxicity = check_float(fields, "toxicity", "ToxicWrapper")
    if "attributes" in fields and not isinstance(fields["attributes"], dict):
        raise type_error(fields["attributes"], "ToxicWrapper", "attributes", "toxics.NoopToxic")
    if stream is None:
        stream = DOWNSTREAM
    direction = stream.lower()
    if direction not in DIRECTIONS:
        raise INVALID_STREAM
    if not name:
        name = f"{type_name}_{stream}"
    kind = TOXIC_TYPES.get(type_name)
    if kind is None:
        raise INVALID_TOXIC_TYPE
    if name_taken(name):
        raise TOXIC_ALREADY_EXISTS
    attrs = _parse_attributes(kind, fields.get("attributes"), {a: 0 for a, _ in kind.attrs})
    return ToxicSpec(name=name, type=type_name, stream=stream, direction=direction,
                     toxicity=float32(1.0 if toxicity is None else toxicity), attributes=attrs)


def parse_toxic_update(current: ToxicSpec, body: Any) -> ToxicSpec:
    """``POST|PATCH /proxies/{proxy}/toxics/{toxic}``: only ``attributes`` (merged into the current
    ones) and ``toxicity`` change; other fields of the body are ignored like in Toxiproxy."""
    if not isinstance(body, dict):
        raise top_level_error(body, "struct { Attributes interface {}; Toxicity float32 }")
    fields = pick_fields(body, ("attributes", "toxicity"))
    toxicity = check_float(fields, "toxicity", "")
    attrs = _parse_attributes(current.kind, fields.get("attributes"), current.attributes)
    return ToxicSpec(name=current.name, type=current.type, stream=current.stream,
                     direction=current.direction,
                     toxicity=current.toxicity if toxicity is None else float32(toxicity),
                     attributes=attrs)


__all__ = ["BAD_REQUEST_BODY", "Chunk", "DIRECTIONS", "DOWNSTREAM", "EOF", "TIMEOUT", "TOXIC_TYPES",
           "ToxicSpec", "ToxicType", "UPSTREAM", "parse_new_toxic", "parse_toxic_update",
           "slice_offsets"]
