"""The rtnetlink request the docker backend runs in a proxy host (nodes/common/netlink.py)."""

import socket
import struct

import pytest

from nodes.common.netlink import EEXIST, newaddr_request, reply_errno

pytestmark = pytest.mark.unit


def test_newaddr_request_adds_a_slash_32_with_local_and_address_attributes():
    msg = newaddr_request("10.130.4.1", index=7, seq=3)
    length, kind, flags, seq, pid = struct.unpack("=IHHII", msg[:16])
    assert (length, kind, seq, pid) == (len(msg), 20, 3, 0)  # RTM_NEWADDR
    assert flags == 0x1 | 0x4 | 0x200 | 0x400  # request, ack, exclusive, create
    family, prefix, _, _, index = struct.unpack("=BBBBI", msg[16:24])
    assert (family, prefix, index) == (socket.AF_INET, 32, 7)
    raw = socket.inet_aton("10.130.4.1")
    assert msg[24:32] == struct.pack("=HH", 8, 2) + raw  # IFA_LOCAL
    assert msg[32:40] == struct.pack("=HH", 8, 1) + raw  # IFA_ADDRESS


def _ack(err: int, kind: int = 2) -> bytes:
    return struct.pack("=IHHII", 36, kind, 0, 1, 0) + struct.pack("=i", err) + b"\0" * 16


def test_reply_errno_reads_the_acknowledgement():
    assert reply_errno(_ack(0)) == 0
    assert reply_errno(_ack(-EEXIST)) == EEXIST
    assert reply_errno(_ack(-1)) == 1  # EPERM: no NET_ADMIN
    assert reply_errno(_ack(-1, kind=3)) == 0  # not an error message
