"""`python -m nodes.fileserver --ip IP [--port 22050] --admin-port A --data-dir D` (key seed and
admin token from the environment or files, docs/fileserver.md)."""

from __future__ import annotations

import asyncio
import sys

from nodes.common.service import StartupError, run_service

from .config import ConfigError, parse_args
from .server import FileServer


async def _main(argv: list[str] | None) -> int:
    try:
        cfg = parse_args(argv)
    except ConfigError as e:
        print(f"fileserver: {e}", file=sys.stderr)
        return 2
    server = FileServer(cfg)

    async def start() -> None:
        try:
            await server.start()
        except StartupError:
            await server.stop()
            raise

    try:
        return await run_service("fileserver", server.log, start, server.stop)
    finally:
        server.log.close()


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
