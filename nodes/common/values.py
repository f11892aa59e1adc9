"""Strict checks of JSON values shared by the seed and the storage node.

JSON ``true``/``false`` are Python bools, which are ints: every integer check here rejects them.
"""

from __future__ import annotations

import ipaddress
from typing import Any, TypeGuard


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (not a bool, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_hex32(value: Any) -> bytes:
    """A 32-byte key given as 64 hex characters; raises ValueError saying what is wrong."""
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError(f"expected 64 hex characters (a 32-byte key), got {value!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"not valid hex: {value!r}") from None


def parse_ipv4_port(value: Any) -> tuple[str, int]:
    """``"a.b.c.d:port"`` → (ip, port); raises ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"expected \"ip:port\", got {value!r}")
    ip, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected \"ip:port\" (e.g. \"127.3.2.4:22021\"), got {value!r}")
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(f"{ip!r} in {value!r} is not a dotted IPv4 address") from None
    if addr.is_unspecified:
        raise ValueError(f"{value!r}: 0.0.0.0 is not an address to connect to")
    n = int(port)
    if not 1 <= n <= 65535:
        raise ValueError(f"port {n} in {value!r} is not a TCP port (1-65535)")
    return str(addr), n
