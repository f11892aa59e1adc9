"""Structured logs: one JSON object per line, ``{"ts", "level", "node", "event", **fields}``.

``node`` names the process that writes: a storage node's name (``sn01``), ``seed`` or
``toxiproxy``.  Fields never replace the four fixed keys.  Level names include Toxiproxy's
(``trace``, ``warn``, ``fatal``) so its server can keep its command-line levels.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40,
          "fatal": 50, "panic": 50}


def parse_level(name: str) -> int:
    """The number of a level name (case-insensitive)."""
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}") from None


class JsonLogger:
    """Writes JSON lines to ``path`` (appending, line-buffered) or to ``stream`` (default stderr)."""

    def __init__(self, node: str, path: Path | None = None, *, level: str | int = "info",
                 stream: TextIO | None = None) -> None:
        self.node = node
        self._min = level if isinstance(level, int) else parse_level(level)
        self._lock = threading.Lock()
        self._own = path is not None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out: TextIO = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        else:
            self._out = stream if stream is not None else sys.stderr

    def log(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS.get(level, LEVELS["info"]) < self._min:
            return
        rec: dict[str, Any] = {"ts": round(time.time(), 3), "level": level, "node": self.node,
                               "event": event}
        for k, v in fields.items():
            rec.setdefault(k, v)
        line = json.dumps(rec, default=str, separators=(",", ":"))
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):  # a closed/broken stream must never take a process down
                pass

    def enabled(self, level: int) -> bool:
        """Whether a record of level number ``level`` would be written (skip costly fields)."""
        return level >= self._min

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def warn(self, event: str, **fields: Any) -> None:
        self.log("warn", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._out.close()


class NullLogger(JsonLogger):
    """Discards everything (default of pure state machines and unit tests)."""

    def __init__(self, node: str = "null") -> None:  # noqa: D107 - no output stream
        self.node = node
        self._min = 100
        self._own = False

    def log(self, level: str, event: str, **fields: Any) -> None:
        return

    def close(self) -> None:
        return
