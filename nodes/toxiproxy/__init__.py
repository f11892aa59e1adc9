"""A Toxiproxy 2.x compatible server in pure asyncio (docs/toxiproxy.md).

``python -m nodes.toxiproxy --host 0.0.0.0 --port 8474`` speaks Toxiproxy's HTTP API (aiohttp)
and proxies TCP with asyncio transports; toxics run as a chain of asyncio stages per direction.
"""

from .api import VERSION
from .server import ToxiproxyServer, main

__all__ = ["VERSION", "ToxiproxyServer", "main"]
