"""Bytes that reach the proxy before its upstream link exists must not be lost (on CPython
< 3.11.3 pausing a transport inside connection_made does not stop reading)."""

from __future__ import annotations

import pytest

from nodes.toxiproxy.link import _SideProtocol

pytestmark = pytest.mark.unit


class _Conn:
    def __init__(self) -> None:
        self.eofs: list[str] = []

    def on_eof(self, side: str) -> None:
        self.eofs.append(side)


def test_early_bytes_and_eof_are_handed_over_in_order():
    conn = _Conn()
    proto = _SideProtocol(conn, "client")  # type: ignore[arg-type]
    proto.data_received(b"POST /storage")
    proto.data_received(b"_rpc/v1")
    assert proto.eof_received() is True
    assert conn.eofs == []  # nothing to forward to yet
    got: list[bytes] = []
    proto.attach(got.append)
    assert b"".join(got) == b"POST /storage_rpc/v1"
    assert conn.eofs == ["client"]
    proto.data_received(b"more")
    assert got[-1] == b"more"
