"""Add IPv4 addresses (/32) to this host's network interface through rtnetlink, with the Python
standard library only (the node image has no iproute2). An address already present is fine.

The docker backend runs it inside a testnet's proxy host (``docker exec``, as root, which needs
``NET_ADMIN``) to own the Toxiproxy listen addresses::

    python -m nodes.common.netlink 10.130.1.1 10.130.2.1 ...

Exit status 0 when every address is present afterwards, else a message naming each address that
failed and its errno.
"""

from __future__ import annotations

import socket
import struct
import sys

RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2
EEXIST = 17


def default_interface() -> str:
    """``eth0`` when present, else the first interface that is not the loopback."""
    names = [n for _, n in socket.if_nameindex() if n != "lo"]
    if not names:
        raise OSError("no network interface besides lo")
    return "eth0" if "eth0" in names else names[0]


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def newaddr_request(ip: str, index: int, seq: int) -> bytes:
    """The RTM_NEWADDR message adding ``ip``/32 to interface ``index`` (acknowledged, exclusive)."""
    raw = socket.inet_aton(ip)
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, index) + _attr(IFA_LOCAL, raw) \
        + _attr(IFA_ADDRESS, raw)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWADDR, flags, seq, 0) + body


def reply_errno(reply: bytes) -> int:
    """The (positive) errno of a netlink acknowledgement, 0 for success."""
    kind = struct.unpack("=H", reply[4:6])[0]
    return -struct.unpack("=i", reply[16:20])[0] if kind == NLMSG_ERROR else 0


def add_addresses(ips: list[str], ifname: str) -> list[str]:
    """Add each of ``ips`` as a /32 on ``ifname``; return one message per address that failed."""
    index = socket.if_nametoindex(ifname)
    failed = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.bind((0, 0))
        for seq, ip in enumerate(ips, 1):
            s.send(newaddr_request(ip, index, seq))
            err = reply_errno(s.recv(65536))
            if err not in (0, EEXIST):
                failed.append(f"{ip}: errno {err}")
    return failed


def main(argv: list[str]) -> int:
    ifname = default_interface()
    failed = add_addresses(argv, ifname)
    if failed:
        print(f"adding addresses to {ifname} failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
