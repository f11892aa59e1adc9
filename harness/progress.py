"""Progress output: a live spinner line on a terminal, plain timestamped lines in CI or pipes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from harness.backends.base import Reporter


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Reporter]:
    """Yield a reporter. Lines go to stderr so that ``--json`` output on stdout stays clean."""
    if not enabled:
        yield lambda _msg: None
        return
    start = time.monotonic()
    if interactive():
        console = Console(stderr=True)
        with console.status("starting…") as status:
            def report(msg: str) -> None:
                console.log(msg)
                status.update(msg)

            yield report
        return

    def plain(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    yield plain
