"""Go-compatible ``host:port`` handling (``net.SplitHostPort`` and address formatting)."""

from __future__ import annotations

import socket
from typing import Any


def split_host_port(addr: str) -> tuple[str, int]:
    """Go's ``net.SplitHostPort`` plus port parsing: ``host:port`` or ``[v6]:port``.

    Raises ValueError with Go's wording (``address X: missing port in address``, ...).
    """
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1:]
        if not rest.startswith(":"):
            raise ValueError(f"address {addr}: missing port in address")
        port_s = rest[1:]
    else:
        i = addr.rfind(":")
        if i < 0:
            raise ValueError(f"address {addr}: missing port in address")
        host, port_s = addr[:i], addr[i + 1:]
        if ":" in host:
            raise ValueError(f"address {addr}: too many colons in address")
    if port_s == "":
        port = 0
    elif port_s.isdigit():
        port = int(port_s)
        if port > 65535:
            raise ValueError(f"address {addr}: invalid port")
    else:
        try:
            port = socket.getservbyname(port_s, "tcp")
        except OSError:
            raise ValueError(f"lookup tcp/{port_s}: unknown port") from None
    return host, port


def format_addr(sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
