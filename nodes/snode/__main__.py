"""`python -m nodes.snode --ip IP --port P --admin-port A --seed-url URL --data-dir D --key-seed HEX`"""

from __future__ import annotations

import asyncio
import signal
import sys

from .config import ConfigError, parse_args
from .server import Node, StartupError


async def _main(argv: list[str] | None) -> int:
    try:
        cfg = parse_args(argv)
    except ConfigError as e:
        print(f"snode: {e}", file=sys.stderr)
        return 2
    node = Node(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    try:
        await node.start()
    except StartupError as e:
        node.log.error("startup_failed", error=str(e))
        print(f"snode: {e}", file=sys.stderr)
        await node.stop()
        return 1
    await node.run_until_stopped()
    node.log.info("shutdown_requested")
    await node.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
