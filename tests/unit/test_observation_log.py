"""The observation buffer the storage node and the file server share, and its admin routes."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nodes.common.observations import ObservationLog, add_observation_routes
from nodes.fileserver.admin import Observations as FileObservations
from nodes.snode.admin import Observations as NodeObservations

pytestmark = pytest.mark.unit


def test_sequence_numbers_grow_past_clears_and_the_buffer_keeps_the_last():
    log = ObservationLog(maxlen=3)
    assert [log.add({"n": i}) for i in range(5)] == [1, 2, 3, 4, 5]
    assert [o["n"] for o in log.since(0)] == [2, 3, 4] and len(log) == 3
    assert [o["seq"] for o in log.since(4)] == [4, 5]
    log.clear()
    assert len(log) == 0 and log.since(0) == []
    assert log.add({"n": 9}) == 6 and log.next_seq == 7


def test_each_kind_records_its_own_fields():
    node = NodeObservations()
    node.record(remote_addr="10.0.0.1", channel="onion", hop="relay", next_hop="ab", status=200)
    (o,) = node.since(0)
    assert list(o) == ["seq", "ts", "remote_addr", "channel", "hop", "next_hop", "method",
                       "accounts", "status", "server"]
    files = FileObservations()
    files.record(remote_addr=None, channel="http", method="POST", endpoint="/file", status=200,
                 file_id="7", size=3)
    (f,) = files.since(0)
    assert list(f) == ["seq", "ts", "remote_addr", "channel", "method", "endpoint", "file_id",
                       "size", "status"]
    assert (f["file_id"], f["size"]) == ("7", 3)


async def test_routes_read_from_a_sequence_number_and_clear():
    log = ObservationLog()
    for i in range(3):
        log.add({"n": i})
    app = web.Application()
    add_observation_routes(app, log)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/admin/v1/observations", params={"since": "2"})
        assert r.status == 200
        body = await r.json()
        assert body["next"] == 4 and [o["n"] for o in body["observations"]] == [1, 2]
        r = await client.get("/admin/v1/observations", params={"since": "x"})
        assert r.status == 400 and "since must be an integer" in (await r.json())["error"]
        r = await client.delete("/admin/v1/observations")
        assert await r.json() == {"cleared": True, "next": 4}
        assert len(log) == 0
