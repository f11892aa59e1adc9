"""Logs of several runtimes of a testnet, merged and readable (``testnet logs``).

Every runtime (seed, Toxiproxy, nodes) writes JSON lines ``{"ts", "level", "node", "event",
**fields}`` (``nodes.common.logs``). This module

- merges the logs of several runtimes, each line prefixed with its runtime (``sn01 | …``, as
  ``docker compose logs`` does): ordered by the lines' timestamps when reading
  (:func:`read_merged`), in arrival order when following (:func:`follow_merged`);
- renders a JSON line as ``time level event key=value …`` (:func:`render_record`); lines that are
  not JSON records (tracebacks before logging starts) are shown as they are.

Following keeps going across a runtime's kill and restart (the backends re-open / re-attach) and
ends when the testnet goes down or the caller stops.
"""

from __future__ import annotations

import datetime
import heapq
import json
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click

from harness.network import Testnet

#: prefix colours, one per runtime in turn (as docker compose does)
COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow",
           "bright_green", "bright_magenta", "bright_blue")
LEVEL_COLOURS = {"warn": "yellow", "warning": "yellow", "error": "red", "fatal": "red",
                 "panic": "red", "debug": "bright_black", "trace": "bright_black"}
#: fixed keys of a record, rendered in their own places
FIXED_KEYS = ("ts", "level", "node", "event")


@dataclass(frozen=True)
class LogLine:
    """One line of one runtime's log."""

    source: str
    text: str

    @property
    def record(self) -> dict[str, Any] | None:
        """The JSON record of the line, or None for a line that is not one."""
        return parse_record(self.text)


def parse_record(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "event" in rec else None


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v if v and not any(c.isspace() or c in "\"=" for c in v) else json.dumps(v)
    return json.dumps(v, separators=(",", ":"), default=str)


def render_record(text: str, *, colour: bool = False) -> str:
    """``12:00:01.250 info  event key=value …`` for a JSON record; other lines unchanged."""
    rec = parse_record(text)
    if rec is None:
        return text
    ts = rec.get("ts")
    when = (datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]
            if isinstance(ts, int | float) else "--:--:--.---")
    level = str(rec.get("level", "info"))
    level_s = f"{level:<5}"
    if colour and level in LEVEL_COLOURS:
        level_s = click.style(level_s, fg=LEVEL_COLOURS[level])
    fields = " ".join(f"{k}={_value(v)}" for k, v in rec.items() if k not in FIXED_KEYS)
    return " ".join(p for p in (when, level_s, str(rec["event"]), fields) if p)


class Renderer:
    """Formats merged lines: ``<source padded> | <rendered line>`` (raw JSON with ``raw``)."""

    def __init__(self, sources: Sequence[str], *, raw: bool = False, colour: bool = False) -> None:
        self.width = max((len(s) for s in sources), default=0)
        self.raw = raw
        self.colour = colour
        self._colours = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(sources)}

    def __call__(self, line: LogLine) -> str:
        prefix = f"{line.source:<{self.width}} |"
        if self.colour:
            prefix = click.style(prefix, fg=self._colours.get(line.source, COLOURS[0]))
        body = line.text if self.raw else render_record(line.text, colour=self.colour)
        return f"{prefix} {body}"


def _timed(source: str, lines: Iterable[str]) -> Iterator[tuple[float, int, LogLine]]:
    """Lines with a sort key: their own timestamp, or the previous line's (tracebacks stay
    under the record they follow)."""
    ts = float("-inf")
    for i, text in enumerate(lines):
        rec = parse_record(text)
        if rec is not None and isinstance(rec.get("ts"), int | float):
            ts = float(rec["ts"])
        yield ts, i, LogLine(source, text)


def read_merged(net: Testnet, targets: Sequence[str] = (), *,
                tail: int | None = None) -> list[LogLine]:
    """The logs of ``targets`` (every runtime when empty; the last ``tail`` lines of each),
    merged in time order."""
    streams = []
    for t in net.log_targets(targets):
        lines = net.backend.read_log(net.state, t, tail=tail).splitlines()
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        streams.append(_timed(t, lines))
    return [line for _, _, line in heapq.merge(*streams, key=lambda x: x[0])]


_END = object()


def follow_merged(net: Testnet, targets: Sequence[str] = (), *, tail: int | None = None,
                  stop: threading.Event | None = None,
                  poll: float = 0.25) -> Generator[LogLine, None, None]:
    """The logs of ``targets`` (every runtime when empty, including nodes that join while
    following), each from its last ``tail`` lines (all when None), then lines as they are
    written, merged in arrival order. Keeps following across kill/restart of a runtime; ends
    when ``stop`` is set, when the testnet goes down, or when the caller closes the iterator
    (e.g. on Ctrl-C)."""
    stop = stop or threading.Event()
    every = not targets
    lines: queue.Queue[Any] = queue.Queue(maxsize=10_000)
    workers: dict[str, threading.Thread] = {}
    errors: list[BaseException] = []

    def put(item: Any) -> None:
        while not stop.is_set():  # never block for good on a consumer that has gone
            try:
                lines.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def pump(source: str, start_tail: int | None) -> None:
        try:
            for text in net.follow_logs(source, tail=start_tail, stop=stop):
                put(LogLine(source, text))
        except BaseException as e:  # reported by the consumer, which stops the others
            errors.append(e)
        finally:
            put(_END)

    def start(sources: Iterable[str], start_tail: int | None) -> None:
        for s in sources:
            if s not in workers:
                workers[s] = threading.Thread(target=pump, args=(s, start_tail), daemon=True,
                                              name=f"logs-{s}")
                workers[s].start()

    start(net.log_targets(targets), tail)
    running = len(workers)
    try:
        while running and not stop.is_set():
            try:
                item = lines.get(timeout=poll)
            except queue.Empty:
                if not net.statedir.exists():
                    return  # the testnet is down
                if every:
                    known = len(workers)
                    start(net.log_targets(), None)  # a node joined: all of its log
                    running += len(workers) - known
                continue
            if item is _END:
                running -= 1
                if errors:
                    raise errors[0]
                continue
            yield item
    finally:
        stop.set()
        for w in workers.values():
            w.join(timeout=2.0)


__all__ = ["LogLine", "Renderer", "follow_merged", "parse_record", "read_merged", "render_record"]
