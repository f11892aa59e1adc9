"""Contract: every toxic takes effect measurably on real TCP traffic, composes with others, and goes
away cleanly (on live connections too); toxicity, streams, disabling, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import statistics
import time

import pytest

pytestmark = pytest.mark.integration

FAST = 0.06  # a round trip on loopback without toxics is far below this


def median_rtt(tcp, s, n: int = 3, payload: bytes = b"ping") -> float:
    return statistics.median(tcp.rtt(s, payload) for _ in range(n))


def test_latency_on_live_and_new_connections_and_clean_removal(api, upstream, tcp):
    p = api.create_proxy("lat", upstream.echo_port)
    port = api.port_of(p)
    s = tcp.connect(port)
    assert median_rtt(tcp, s) < FAST
    api.add_toxic("lat", type="latency", attributes={"latency": 150})
    assert tcp.rtt(s) >= 0.145  # existing connection
    s2 = tcp.connect(port)
    assert tcp.rtt(s2) >= 0.145  # new connection
    api.remove_toxic("lat", "latency_downstream")
    assert median_rtt(tcp, s) < FAST  # back to baseline on the same connections
    assert median_rtt(tcp, s2) < FAST
    assert median_rtt(tcp, tcp.connect(port)) < FAST


def test_latency_both_streams_and_chained_toxics_add_up(api, upstream, tcp):
    p = api.create_proxy("lat2", upstream.echo_port)
    api.add_toxic("lat2", name="up", type="latency", stream="upstream", attributes={"latency": 80})
    api.add_toxic("lat2", name="down1", type="latency", attributes={"latency": 60})
    api.add_toxic("lat2", name="down2", type="latency", attributes={"latency": 40})
    s = tcp.connect(api.port_of(p))
    dt = tcp.rtt(s)
    assert 0.175 <= dt < 1.0, dt
    api.remove_toxic("lat2", "up")
    dt = tcp.rtt(s)
    assert 0.095 <= dt < 0.170, dt


def test_toxicity_zero_never_applies_one_always_does(api, upstream, tcp):
    p = api.create_proxy("tox", upstream.echo_port)
    port = api.port_of(p)
    api.add_toxic("tox", type="latency", toxicity=0.0, attributes={"latency": 200})
    for _ in range(3):
        assert tcp.rtt(tcp.connect(port)) < FAST
    r = api.post("/proxies/tox/toxics/latency_downstream", json={"toxicity": 1.0})
    assert r.status_code == 200, r.text
    for _ in range(2):
        assert tcp.rtt(tcp.connect(port)) >= 0.195


def test_bandwidth_limits_throughput(api, upstream, tcp):
    p = api.create_proxy("bw", upstream.echo_port)
    s = tcp.connect(api.port_of(p))
    payload = os.urandom(60_000)
    data, base = tcp.round_trip(s, payload)
    assert data == payload and base < 0.2
    api.add_toxic("bw", type="bandwidth", attributes={"rate": 200})  # 200 KB/s → 60 kB in 300 ms
    data, dt = tcp.round_trip(s, payload)
    assert data == payload
    assert 0.25 <= dt < 3.0, dt
    api.remove_toxic("bw", "bandwidth_downstream")
    data, dt = tcp.round_trip(s, payload)
    assert data == payload and dt < 0.2


def test_timeout_zero_drops_data_and_removal_closes_connection(api, upstream, tcp):
    p = api.create_proxy("to0", upstream.echo_port)
    port = api.port_of(p)
    s = tcp.connect(port)
    assert tcp.rtt(s) < FAST
    api.add_toxic("to0", type="timeout", attributes={"timeout": 0})
    before = upstream.received
    s.sendall(b"ping")
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):
        s.recv(10)  # the echo is dropped on the way back (downstream)
    assert upstream.received == before + 4  # ... but the request did reach the server
    api.remove_toxic("to0", "timeout_downstream")
    assert tcp.is_closed(s), "removing a timeout toxic closes the connections it held (Toxiproxy's Cleanup)"
    assert tcp.rtt(tcp.connect(port)) < FAST


def test_timeout_upstream_drops_requests_and_closes_after_timeout(api, upstream, tcp):
    p = api.create_proxy("to1", upstream.echo_port)
    api.add_toxic("to1", type="timeout", stream="upstream", attributes={"timeout": 200})
    before = upstream.received
    t0 = time.perf_counter()
    s = tcp.connect(api.port_of(p))
    s.sendall(b"ping")
    assert tcp.is_closed(s, timeout=3.0)
    dt = time.perf_counter() - t0
    assert 0.18 <= dt < 2.0, dt
    assert upstream.received == before  # nothing reached the server


def test_reset_peer_downstream_after_timeout(api, upstream, tcp):
    p = api.create_proxy("rst", upstream.echo_port)
    api.add_toxic("rst", type="reset_peer", attributes={"timeout": 150})
    s = tcp.connect(api.port_of(p))
    t0 = time.perf_counter()
    s.sendall(b"ping")
    s.settimeout(3.0)
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    dt = time.perf_counter() - t0
    assert 0.14 <= dt < 2.0, dt


def test_reset_peer_upstream_immediate(api, upstream, tcp):
    p = api.create_proxy("rst0", upstream.echo_port)
    api.add_toxic("rst0", type="reset_peer", stream="upstream")
    s = tcp.connect(api.port_of(p))
    s.sendall(b"ping")
    s.settimeout(3.0)
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    api.remove_toxic("rst0", "reset_peer_upstream")
    assert tcp.rtt(tcp.connect(api.port_of(p))) < FAST


def test_slicer_splits_data_into_many_reads(api, upstream, tcp):
    p = api.create_proxy("sl", upstream.echo_port)
    api.add_toxic("sl", type="slicer", attributes={"average_size": 10, "size_variation": 4, "delay": 5000})
    s = tcp.connect(api.port_of(p))
    payload = bytes(range(200))
    t0 = time.perf_counter()
    s.sendall(payload)
    buf, reads = bytearray(), 0
    while len(buf) < len(payload):
        data = s.recv(4096)
        assert data, "connection closed early"
        reads += 1
        buf += data
    assert bytes(buf) == payload
    assert reads >= 5, reads
    assert time.perf_counter() - t0 >= 0.03  # ~14+ slices, 5 ms apart


def test_limit_data_closes_after_n_bytes_each_direction(api, upstream, tcp):
    p = api.create_proxy("lim", upstream.echo_port)
    api.add_toxic("lim", type="limit_data", attributes={"bytes": 100})
    s = tcp.connect(api.port_of(p))
    payload = os.urandom(300)
    s.sendall(payload)
    data, _ = tcp.read_until_eof(s)
    assert data == payload[:100]

    api.remove_toxic("lim", "limit_data_downstream")
    api.add_toxic("lim", type="limit_data", stream="upstream", attributes={"bytes": 50})
    before = upstream.received
    s = tcp.connect(api.port_of(p))
    s.sendall(payload)
    data, _ = tcp.read_until_eof(s)  # the upstream side closes right after 50 bytes: echo is cut
    assert len(data) <= 50 and data == payload[:len(data)]
    deadline = time.monotonic() + 2
    while upstream.received < before + 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert upstream.received == before + 50


def test_slow_close_delays_the_close(api, upstream, tcp):
    p = api.create_proxy("sc", upstream.hangup_port)
    port = api.port_of(p)
    t0 = time.perf_counter()
    data, _ = tcp.read_until_eof(tcp.connect(port))
    assert data == b"bye" and time.perf_counter() - t0 < 0.15
    api.add_toxic("sc", type="slow_close", attributes={"delay": 300})
    t0 = time.perf_counter()
    data, _ = tcp.read_until_eof(tcp.connect(port))
    dt = time.perf_counter() - t0
    assert data == b"bye"
    assert 0.29 <= dt < 2.0, dt


def test_removing_toxic_mid_flight_keeps_byte_order(api, upstream, tcp):
    p = api.create_proxy("order", upstream.echo_port)
    api.add_toxic("order", type="latency", attributes={"latency": 400})
    s = tcp.connect(api.port_of(p))
    before = upstream.received
    t0 = time.perf_counter()
    s.sendall(b"A")
    deadline = time.monotonic() + 2
    while upstream.received < before + 1:  # "A" is now held by the latency toxic
        assert time.monotonic() < deadline, "A never reached the upstream"
        time.sleep(0.002)
    api.remove_toxic("order", "latency_downstream")
    s.sendall(b"B")
    assert tcp.recv_exactly(s, 2) == b"AB"
    assert time.perf_counter() - t0 < 0.35  # A was released at removal, not after 400 ms


def test_disabled_proxy_refuses_connections(api, upstream, tcp):
    p = api.create_proxy("down", upstream.echo_port)
    port = api.port_of(p)
    assert tcp.rtt(tcp.connect(port)) < FAST
    api.set_enabled("down", False)
    assert tcp.refused(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    api.set_enabled("down", True)
    assert tcp.rtt(tcp.connect(port)) < FAST


def test_data_integrity_through_a_chain_of_toxics(api, upstream, tcp):
    p = api.create_proxy("chain", upstream.echo_port)
    for stream in ("upstream", "downstream"):
        api.add_toxic("chain", name=f"lat_{stream}", type="latency", stream=stream, attributes={"latency": 5})
        api.add_toxic("chain", name=f"sl_{stream}", type="slicer", stream=stream,
                      attributes={"average_size": 3000, "size_variation": 1000, "delay": 0})
        api.add_toxic("chain", name=f"bw_{stream}", type="bandwidth", stream=stream,
                      attributes={"rate": 100_000})
    s = tcp.connect(api.port_of(p), timeout=10)
    payload = os.urandom(1_000_000)
    received = hashlib.sha256()
    got = 0
    s.sendall(payload[:200_000])
    sent = 200_000
    while got < len(payload):
        if sent < len(payload):
            s.sendall(payload[sent:sent + 200_000])
            sent += 200_000
        data = s.recv(1 << 20)
        assert data, f"EOF after {got} bytes"
        received.update(data)
        got += len(data)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_many_concurrent_connections_are_served_in_parallel(api, upstream):
    p = api.create_proxy("many", upstream.echo_port)
    port = api.port_of(p)
    api.add_toxic("many", type="latency", attributes={"latency": 50})
    n_conns, n_trips = 100, 5

    async def client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for j in range(n_trips):
                msg = f"{i}:{j}:".encode() + os.urandom(500)
                writer.write(msg)
                assert await reader.readexactly(len(msg)) == msg
        finally:
            writer.close()

    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(n_conns))), 30)
        return time.perf_counter() - t0

    dt = asyncio.run(run())
    # serialised, 100 × 5 × 50 ms would be 25 s; in parallel it is ~5 × 50 ms
    assert 0.245 <= dt < 5.0, dt


def test_unreachable_upstream_closes_the_client(api, tcp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # nothing listens there once closed
    p = api.create_proxy("dead", dead_port)
    s = tcp.connect(api.port_of(p))  # the proxy accepts...
    assert tcp.is_closed(s)  # ...then closes when it cannot reach the upstream
