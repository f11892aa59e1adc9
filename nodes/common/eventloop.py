"""The event loop a node process runs on: uvloop when it is installed, asyncio's own otherwise.

uvloop (libuv, TLS in Cython) roughly halves the CPU a node spends in the event loop and in
asyncio's pure-Python TLS transport, the largest costs of the store and onion paths (docs/nodes.md
"Performance").  It is optional: without it, or with ``SESSION_TESTNET_UVLOOP=0`` in the
environment (to compare, or to rule it out when chasing a bug), the stock loop runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: set to 0 (or false/no/off) to run on asyncio's stock loop even when uvloop is installed
ENV_UVLOOP = "SESSION_TESTNET_UVLOOP"


def switched_on(name: str, environ: dict[str, str] | None = None) -> bool:
    """Whether the on-by-default switch ``name`` of a node process is on: anything but 0, false,
    no or off (any case) in the environment, or not set."""
    value = (os.environ if environ is None else environ).get(name, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def uvloop_wanted(environ: dict[str, str] | None = None) -> bool:
    return switched_on(ENV_UVLOOP, environ)


def loop_factory(environ: dict[str, str] | None = None) -> Any:
    """uvloop's loop class when installed and wanted, else None (asyncio's default)."""
    if not uvloop_wanted(environ):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    factory = loop_factory()
    if factory is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
