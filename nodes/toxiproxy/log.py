"""JSON-lines logging for the Toxiproxy server: one object per line (``ts``, ``level``, ``node``,
``event``, fields...), the project's structured-log format (DESIGN.md)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50,
          "panic": 50}


def parse_level(name: str) -> int:
    """Level number of a level name (toxiproxy's names: trace, debug, info, warn, error, fatal)."""
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}") from None


@dataclass
class JsonLogger:
    """Writes ``{"ts", "level", "node", "event", ...}`` lines to `stream` (stderr by default)."""

    node: str = "toxiproxy"
    level: int = LEVELS["info"]
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def log(self, level: str, event: str, **fields: Any) -> None:
        num = LEVELS[level]
        if num < self.level:
            return
        rec: dict[str, Any] = {"ts": round(time.time(), 6), "level": level, "node": self.node,
                               "event": event}
        rec.update(fields)
        try:
            self.stream.write(json.dumps(rec, default=str, separators=(",", ":")) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed/broken log stream must never take the proxy down

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warn(self, event: str, **fields: Any) -> None:
        self.log("warn", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
