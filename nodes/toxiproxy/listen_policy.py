"""Which addresses a proxy may listen on (issue 12, finding 7).

Toxiproxy binds whatever ``listen`` address its API is given, so any local process that reaches
the API could publish a node's admin port on ``0.0.0.0``.  This server only binds addresses in
its allowed networks and answers anything else with Toxiproxy's error shape
(``{"error": ..., "status": 403}``) before binding:

* default: loopback (``127.0.0.0/8``, ``::1``) — what the process backend uses (127.X.*.*);
* when the API itself listens on a wildcard address (the docker backend runs it with
  ``--host 0.0.0.0`` inside the testnet's proxy container) also the networks of this network
  namespace's IPv4 interfaces — in that container only the testnet's own ``10.X.0.0/16``;
* ``--allow-listen CIDR`` (repeatable) replaces the default with exactly the given networks.

Wildcard listen addresses (``0.0.0.0``, ``::``, an empty host) are refused unless a network that
contains them (``0.0.0.0/0``) is allowed explicitly.  Host names other than ``localhost`` are
refused too: resolving them could query a DNS server outside the host.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .addr import split_host_port
from .errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
_SIOCGIFADDR, _SIOCGIFNETMASK = 0x8915, 0x891B


def interface_networks() -> list[Network]:
    """IPv4 networks of this network namespace's interfaces (Linux ioctls; [] elsewhere)."""
    found: list[Network] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, req)[20:24])
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(ipaddress.ip_network(f"{addr}/{mask}", strict=False))
    return found


@dataclass(frozen=True)
class ListenPolicy:
    networks: tuple[Network, ...]

    @classmethod
    def default(cls, api_host: str) -> ListenPolicy:
        nets = list(LOOPBACK)
        if api_host in WILDCARD_HOSTS:
            nets += [n for n in interface_networks() if not n.is_loopback]
        return cls(tuple(nets))

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> ListenPolicy:
        """``--allow-listen`` values; raises ValueError naming the bad one."""
        nets = []
        for c in cidrs:
            try:
                nets.append(ipaddress.ip_network(c.strip(), strict=False))
            except ValueError:
                raise ValueError(f"--allow-listen {c!r} is not a network like 10.7.0.0/16 or 127.0.0.1/32") from None
        return cls(tuple(nets))

    def describe(self) -> str:
        return ", ".join(str(n) for n in self.networks) or "none"

    def check(self, listen: str) -> None:
        """Raise ApiError(403) unless ``listen`` (``host:port``) is in an allowed network."""
        try:
            host = split_host_port(listen)[0] if listen else ""
        except ValueError:
            return  # malformed: bind_listener reports it in Toxiproxy's words
        if host == "localhost":
            host = "127.0.0.1"
        elif host == "":
            host = "0.0.0.0"
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise ApiError(f"listen address {listen!r} refused: use an IP address (this Toxiproxy does not "
                           "resolve host names)", 403) from None
        if not any(ip in n for n in self.networks if n.version == ip.version) or (
                ip.is_unspecified and not any(n.prefixlen == 0 for n in self.networks)):
            raise ApiError(f"listen address {listen!r} refused: this Toxiproxy only listens in "
                           f"{self.describe()} (start it with --allow-listen CIDR to allow another network)", 403)
