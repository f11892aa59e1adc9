"""Running a service process (seed, storage node) until SIGTERM/SIGINT.

Both services follow the same life cycle: start (a :class:`StartupError` is logged as
``startup_failed``, printed as ``<prog>: cannot start: <why>`` and exits 1), serve until SIGTERM
or SIGINT (logged as ``shutdown_requested``), stop cleanly, exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .limits import RateLimitedLoopErrors


class StartupError(RuntimeError):
    """The service cannot start; the message says what failed and what to do."""


async def run_service(prog: str, log: Any, start: Callable[[], Awaitable[None]],
                      stop: Callable[[], Awaitable[None]]) -> int:
    """Start, wait for SIGTERM/SIGINT, stop; returns the process exit code.

    ``start`` must clean up after itself when it raises; ``stop`` runs only after a successful
    start.  Signals that arrive during ``start`` are honoured once it returns.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # asyncio's own errors (accept() out of descriptors, failed TLS handshakes) as rate-limited
    # JSON lines instead of a traceback each
    loop.set_exception_handler(RateLimitedLoopErrors(log))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        try:
            await start()
        except StartupError as e:
            log.error("startup_failed", error=str(e))
            print(f"{prog}: cannot start: {e}", file=sys.stderr)
            return 1
        await stopping.wait()
        log.info("shutdown_requested")
        await stop()
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
