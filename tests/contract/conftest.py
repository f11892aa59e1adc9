"""Fixtures of the Toxiproxy contract suite.

The suite runs against ``$TOXIPROXY_URL`` when it is set (an official Toxiproxy 2.x that shares
this host's network namespace, e.g. ``docker run --net=host ghcr.io/shopify/toxiproxy:2.12.0``),
else against ``python -m nodes.toxiproxy`` started here on 127.0.0.1 with a free port.

* ``toxiproxy_api`` (session): the server, as :class:`ToxiproxyServerInfo`.
* ``api``: an :class:`Api` helper on it; every proxy is deleted after the test.
* ``upstream`` (session): test servers on 127.0.0.1 in a background thread (their own asyncio
  loop): ``echo_port`` echoes everything and counts the bytes it received, ``hangup_port`` sends
  ``b"bye"`` and closes at once.
* ``tcp``: blocking-socket helpers (connect, timed round trips, read until EOF, ...).
* ``toxiproxy_client``: toxiproxy-python's ``Toxiproxy`` pointed at the server (its host/port are
  process-global class attributes: set for the test, restored after).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Any, timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll `cond()` until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


@dataclass
class ToxiproxyServerInfo:
    url: str
    host: str
    port: int
    external: bool  # True: $TOXIPROXY_URL (not ours)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


def _version_ok(url: str) -> bool:
    r = requests.get(url + "/version", timeout=1)
    return r.status_code == 200


@pytest.fixture(scope="session")
def toxiproxy_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServerInfo]:
    external = os.environ.get("TOXIPROXY_URL")
    if external:
        url = external.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        wait_until(lambda: _version_ok(url), STARTUP_TIMEOUT, f"Toxiproxy at {url} (TOXIPROXY_URL)")
        yield ToxiproxyServerInfo(url=url, host=parts.hostname or "127.0.0.1", port=parts.port or 8474,
                                  external=True)
        return
    port = free_port()
    log_path = tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodes.toxiproxy", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "debug"],
            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nodes.toxiproxy exited with {proc.returncode}: {log_path.read_text()}")
            return _version_ok(url)

        wait_until(ready, STARTUP_TIMEOUT, f"nodes.toxiproxy on {url}")
        yield ToxiproxyServerInfo(url=url, host="127.0.0.1", port=port, external=False, process=proc,
                                  log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Api:
    """Thin `requests` wrapper over the Toxiproxy HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.http.request(method, self.url + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def create_proxy(self, name: str, upstream_port: int, listen: str = "127.0.0.1:0",
                     **extra: Any) -> dict[str, Any]:
        r = self.post("/proxies", json={"name": name, "listen": listen,
                                        "upstream": f"127.0.0.1:{upstream_port}", **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def add_toxic(self, proxy: str, **toxic: Any) -> dict[str, Any]:
        r = self.post(f"/proxies/{proxy}/toxics", json=toxic)
        assert r.status_code == 200, r.text
        return r.json()

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        r = self.delete(f"/proxies/{proxy}/toxics/{toxic}")
        assert r.status_code == 204, r.text

    def set_enabled(self, proxy: str, enabled: bool) -> dict[str, Any]:
        r = self.post(f"/proxies/{proxy}", json={"enabled": enabled})
        assert r.status_code == 200, r.text
        return r.json()

    @staticmethod
    def port_of(proxy: dict[str, Any]) -> int:
        """The port of a proxy's ``listen`` address."""
        return int(proxy["listen"].rsplit(":", 1)[1])

    def delete_all(self) -> None:
        r = self.get("/proxies")
        r.raise_for_status()
        for name in r.json():
            self.delete(f"/proxies/{name}")


@pytest.fixture
def api(toxiproxy_api: ToxiproxyServerInfo) -> Iterator[Api]:
    a = Api(toxiproxy_api.url)
    a.delete_all()
    try:
        yield a
    finally:
        a.delete_all()
        a.http.close()


# -- upstream test servers ------------------------------------------------------------------------

@dataclass
class Upstream:
    echo_port: int = 0
    hangup_port: int = 0
    _received: int = 0
    _accepted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def received(self) -> int:
        with self._lock:
            return self._received

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def _count(self, n: int = 0, accepted: int = 0) -> None:
        with self._lock:
            self._received += n
            self._accepted += accepted


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    info = Upstream()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.Server] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info._count(accepted=1)
        try:
            while data := await reader.read(65536):
                info._count(len(data))
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def hangup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info._count(accepted=1)
        writer.write(b"bye")
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def start() -> None:
        for handler in (echo, hangup):
            servers.append(await asyncio.start_server(handler, "127.0.0.1", 0))
        info.echo_port = servers[0].sockets[0].getsockname()[1]
        info.hangup_port = servers[1].sockets[0].getsockname()[1]
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="contract-upstream", daemon=True)
    thread.start()
    assert started.wait(10), "upstream test servers did not start"
    try:
        yield info
    finally:
        async def stop() -> None:
            for s in servers:
                s.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- blocking-socket helpers ----------------------------------------------------------------------

class Tcp:
    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def connect(self, port: int, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sockets.append(s)
        return s

    @staticmethod
    def recv_exactly(s: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            data = s.recv(n - len(buf))
            if not data:
                raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
            buf += data
        return bytes(buf)

    def round_trip(self, s: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
        """Send `payload` to the echo server; return (echo, seconds)."""
        t0 = time.perf_counter()
        s.sendall(payload)
        data = self.recv_exactly(s, len(payload))
        return data, time.perf_counter() - t0

    def rtt(self, s: socket.socket, payload: bytes = b"ping") -> float:
        data, dt = self.round_trip(s, payload)
        assert data == payload
        return dt

    @staticmethod
    def read_until_eof(s: socket.socket, limit: int = 1 << 24) -> tuple[bytes, int]:
        """All bytes until EOF, and the number of recv() calls that returned data."""
        buf = bytearray()
        reads = 0
        while len(buf) < limit:
            data = s.recv(65536)
            if not data:
                break
            reads += 1
            buf += data
        return bytes(buf), reads

    @staticmethod
    def refused(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return False
        except ConnectionRefusedError:
            return True

    @staticmethod
    def is_closed(s: socket.socket, timeout: float = 2.0) -> bool:
        """True when the peer closed (EOF or reset) within `timeout`."""
        s.settimeout(timeout)
        try:
            return s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close_all(self) -> None:
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def tcp() -> Iterator[Tcp]:
    t = Tcp()
    try:
        yield t
    finally:
        t.close_all()


@pytest.fixture
def toxiproxy_client(toxiproxy_api: ToxiproxyServerInfo, api: Api) -> Iterator[Any]:
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    saved = (APIConsumer.host, APIConsumer.port)
    APIConsumer.host, APIConsumer.port = toxiproxy_api.host, toxiproxy_api.port
    try:
        yield Toxiproxy()
    finally:
        APIConsumer.host, APIConsumer.port = saved
