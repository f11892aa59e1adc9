"""nodes.udprelay: datagrams reach the upstream, answers reach the sender, bad configs are named."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from nodes.common.logs import JsonLogger
from nodes.udprelay.relay import load_config, serve


def _free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def test_datagrams_go_both_ways_per_sender() -> None:
    async def scenario() -> list[tuple[bytes, tuple[str, int]]]:
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.bind(("127.0.0.1", 0))
        up.setblocking(False)
        listen = ("127.0.0.1", _free_udp_port("127.0.0.1"))
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve([(listen, up.getsockname())], 60.0, JsonLogger("t"), stop, started))
        await asyncio.wait_for(started.wait(), 5)
        loop = asyncio.get_running_loop()
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        got = []
        try:
            for i, s in enumerate(senders):
                s.setblocking(False)
                s.bind(("127.0.0.1", 0))
                await loop.sock_sendto(s, b"hello%d" % i, listen)
                data, src = await asyncio.wait_for(loop.sock_recvfrom(up, 100), 5)
                assert data == b"hello%d" % i
                await loop.sock_sendto(up, b"answer" + data, src)
                got.append(await asyncio.wait_for(loop.sock_recvfrom(s, 100), 5))
        finally:
            stop.set()
            await task
            for s in (*senders, up):
                s.close()
        return got

    got = asyncio.run(scenario())
    assert [d for d, _ in got] == [b"answerhello0", b"answerhello1"]
    assert all(src[1] == got[0][1][1] for _, src in got), "answers come from the relay's listen address"


def test_bad_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "relays.json"
    path.write_text(json.dumps({"relays": [{"listen": "127.0.0.1", "upstream": "127.0.0.2:1"}]}))
    with pytest.raises(ValueError, match="relays.json.*expected IP:PORT"):
        load_config(path)
