"""Structured logs of the seed: one JSON object per line (ts, level, component, event, fields…)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class SeedLogger:
    """Writes ``{"ts", "level", "component": "seed", "event", **fields}`` lines to a file or stderr."""

    def __init__(self, path: Path | None = None, *, level: str = "info", stream: TextIO | None = None,
                 component: str = "seed") -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {sorted(LEVELS)}")
        self.component = component
        self._min = LEVELS[level]
        self._lock = threading.Lock()
        self._own = path is not None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out: TextIO = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        else:
            self._out = stream if stream is not None else sys.stderr

    def log(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS.get(level, 20) < self._min:
            return
        rec: dict[str, Any] = {"ts": round(time.time(), 3), "level": level,
                               "component": self.component, "event": event}
        for k, v in fields.items():
            rec.setdefault(k, v)
        line = json.dumps(rec, default=str, separators=(",", ":"))
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except ValueError:  # stream closed during shutdown
                pass

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._out.close()


class NullLogger(SeedLogger):
    """Discards everything (default of the pure core)."""

    def __init__(self) -> None:  # noqa: D107 - no output stream
        self.component = "seed"
        self._min = 100

    def log(self, level: str, event: str, **fields: Any) -> None:
        return

    def close(self) -> None:
        return
