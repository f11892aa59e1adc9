"""Structured JSON-lines logging: one object per line with ts, level, node, event, fields."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLogger:
    def __init__(self, node: str, path: Path | None = None, level: str = "info",
                 stream: TextIO | None = None) -> None:
        self.node = node
        self._min = LEVELS.get(level, 20)
        self._lock = threading.Lock()
        self._own = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out: TextIO = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            self._own = True
        else:
            self._out = stream if stream is not None else sys.stderr

    def log(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS.get(level, 20) < self._min:
            return
        rec = {"ts": round(time.time(), 3), "level": level, "node": self.node, "event": event}
        rec.update(fields)
        line = json.dumps(rec, default=str, separators=(",", ":"))
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except ValueError:  # closed during shutdown
                pass

    def debug(self, event: str, **f: Any) -> None:
        self.log("debug", event, **f)

    def info(self, event: str, **f: Any) -> None:
        self.log("info", event, **f)

    def warning(self, event: str, **f: Any) -> None:
        self.log("warning", event, **f)

    def error(self, event: str, **f: Any) -> None:
        self.log("error", event, **f)

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._out.close()
