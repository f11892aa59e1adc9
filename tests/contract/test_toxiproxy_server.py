"""Our server process itself (skipped against an external Toxiproxy): JSON-lines logs, ``--config``,
clean shutdown on SIGTERM with open connections."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_server(toxiproxy_api):
    if toxiproxy_api.external:
        pytest.skip("tests nodes.toxiproxy itself; TOXIPROXY_URL points at another server")


def start(args: list[str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start `python -m nodes.toxiproxy --port 0 ...`; return (process, api url, log lines so far)."""
    proc = subprocess.Popen([sys.executable, "-m", "nodes.toxiproxy", "--host", "127.0.0.1", "--port", "0",
                             *args], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        rec = json.loads(line)
        if rec["event"] == "api_listening":
            return proc, f"http://{rec['address']}", lines
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"server did not report api_listening: {''.join(lines)}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_sigterm_closes_connections_and_exits_cleanly_with_json_logs(own_server, upstream, tcp, tmp_path):
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "from_config", "listen": "127.0.0.1:0",
                                   "upstream": f"127.0.0.1:{upstream.echo_port}"}]))
    proc, url, lines = start(["--config", str(config), "--log-level", "debug"])
    try:
        proxies = requests.get(url + "/proxies", timeout=5).json()
        assert set(proxies) == {"from_config"} and proxies["from_config"]["enabled"] is True
        port = int(proxies["from_config"]["listen"].rsplit(":", 1)[1])
        s = tcp.connect(port)
        assert tcp.rtt(s) < 0.1
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        assert tcp.is_closed(s)
        assert tcp.refused(port)
        assert proc.stderr is not None
        lines += proc.stderr.readlines()
    finally:
        stop(proc)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for rec in records:
        assert {"ts", "level", "node", "event"} <= set(rec), rec
        assert rec["node"] == "toxiproxy"
    events = [r["event"] for r in records]
    for expected in ("api_listening", "config_populated", "proxy_started", "client_accepted",
                     "shutdown_requested", "proxy_stopped", "shutdown_complete"):
        assert expected in events, events
    assert events.index("shutdown_requested") < events.index("shutdown_complete")


def test_api_port_in_use_fails_with_a_clear_error(own_server, toxiproxy_api):
    proc = subprocess.run([sys.executable, "-m", "nodes.toxiproxy", "--host", "127.0.0.1", "--port",
                           str(toxiproxy_api.port)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1
    rec = json.loads(proc.stderr.strip().splitlines()[-1])
    assert rec["event"] == "api_listen_failed" and "--port" in rec["error"]


def test_run_bench_reports_latency_and_throughput(toxiproxy_api, api):
    from nodes.toxiproxy.bench import run_bench

    r = run_bench(echoes=100, transfer_mb=2, repeats=1, toxiproxy_url=toxiproxy_api.url)
    assert r["server"].startswith("2.")
    for target in ("direct", "proxy"):
        rtt = r["rtt_us"][target]
        assert 0 < rtt["median"] <= rtt["p99"]
        assert r["throughput_mb_s"][target]["download"] > 1
        assert r["throughput_mb_s"][target]["upload"] > 1
    assert r["rtt_us"]["proxy"]["median"] > r["rtt_us"]["direct"]["median"] - 50  # same order
    assert r["added_rtt_us"]["median"] < 5000  # no toxic: well under 5 ms added
    assert r["transfer_bytes"] == 2_000_000
    assert api.get("/proxies").json() == {}  # the bench removed its proxy


def test_closed_connections_release_their_state(own_server, upstream):
    """Embedded server: after clients close (normally, half-close, reset) and a proxy is disabled,
    no Connection and no toxic task is left behind."""
    import asyncio
    import socket
    import struct

    from nodes.toxiproxy import ToxiproxyServer
    from nodes.toxiproxy.log import JsonLogger
    from nodes.toxiproxy.proxy import ProxyInput
    from nodes.toxiproxy.toxics import parse_new_toxic

    def stage_tasks() -> list[asyncio.Task]:
        return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "Stage._run"]

    async def wait_for(cond, what: str) -> None:
        deadline = time.monotonic() + 5
        while not cond():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)

    async def main() -> None:
        server = ToxiproxyServer(host="127.0.0.1", port=0, log=JsonLogger("toxiproxy", level=50))
        await server.start()
        try:
            proxy = await server.collection.add(
                ProxyInput("leak", "127.0.0.1:0", f"127.0.0.1:{upstream.echo_port}", True))
            for stream in ("upstream", "downstream"):
                proxy.toxics.add(parse_new_toxic({"type": "latency", "stream": stream,
                                                  "attributes": {"latency": 1}}))
            port = int(proxy.listen.rsplit(":", 1)[1])
            for i in range(30):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"x" * 100)
                assert await r.readexactly(100) == b"x" * 100
                if i % 3 == 0:
                    w.close()
                elif i % 3 == 1:
                    w.write_eof()  # half-close: Toxiproxy closes the whole connection
                    assert await r.read() == b""
                    w.close()
                else:
                    w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                          struct.pack("ii", 1, 0))
                    w.transport.abort()  # RST
            await wait_for(lambda: not proxy.connections, "connections released")
            await wait_for(lambda: not stage_tasks(), "toxic tasks finished")
            open_conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
            # one latency task per direction and connection, once the upstream is dialled
            await wait_for(lambda: len(proxy.connections) == 5 and len(stage_tasks()) == 10,
                           "5 live connections with 2 toxic tasks each")
            proxy.stop()
            for r, _ in open_conns:
                assert await r.read() == b""
            await wait_for(lambda: not proxy.connections and not stage_tasks(), "released after stop")
        finally:
            await server.stop()

    asyncio.run(main())
