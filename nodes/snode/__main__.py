"""`python -m nodes.snode --ip IP --port P --admin-port A --seed-url URL --data-dir D --key-seed HEX`"""

from __future__ import annotations

import sys

from nodes.common.eventloop import run
from nodes.common.service import StartupError, run_service

from .config import ConfigError, parse_args
from .server import Node


async def _main(argv: list[str] | None) -> int:
    try:
        cfg = parse_args(argv)
    except ConfigError as e:
        print(f"snode: {e}", file=sys.stderr)
        return 2
    node = Node(cfg)

    async def start() -> None:
        try:
            await node.start()
        except StartupError:
            await node.stop()
            raise

    try:
        return await run_service("snode", node.log, start, node.stop)
    finally:
        node.log.close()


def main(argv: list[str] | None = None) -> int:
    return run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
