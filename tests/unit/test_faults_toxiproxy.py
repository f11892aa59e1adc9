"""harness.faults.toxiproxy: the Toxiproxy API client (toxiproxy-python, bound per client),
against an in-memory fake of the HTTP API and against ``python -m nodes.toxiproxy`` (a real
server, when present).

``FakeToxiproxy`` is also used by the other test_faults_* unit tests: it models the API state
(proxies, toxics, enabled flags, error answers) without carrying traffic.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import toxiproxy.api as lib_api
import toxiproxy.exceptions as lib_exc
import toxiproxy.proxy as lib_proxy
import toxiproxy.server as lib_server

from harness.faults.toxiproxy import (
    Proxy,
    ToxiproxyBadRequest,
    ToxiproxyClient,
    ToxiproxyError,
    ToxiproxyExists,
    ToxiproxyNotFound,
    ToxiproxyUnreachable,
)

pytestmark = pytest.mark.unit

TOXIC_TYPES = {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer",
               "limit_data", "noop"}


class FakeToxiproxy:
    """In-memory Toxiproxy 2.x API (state and error answers only; no traffic is proxied)."""

    def __init__(self) -> None:
        self.proxies: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next: tuple[int, str] | None = None
        self.answer_next: tuple[int, bytes] | None = None  # raw answer to the next request
        self.delay = 0.0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                if fake.delay:
                    time.sleep(fake.delay)
                with fake._lock:
                    fake.requests.append((method, self.path, body))
                    status, out = fake.dispatch(method, self.path, body)
                data = b"" if out is None else (out if isinstance(out, bytes)
                                                else json.dumps(out).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _err(status: int, msg: str) -> tuple[int, Any]:
        return status, {"error": msg, "status": status}

    def _proxy_json(self, p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "toxics": list(p["toxics"].values())}

    def dispatch(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.answer_next:
            answer, self.answer_next = self.answer_next, None
            return answer
        if self.fail_next:
            status, msg = self.fail_next
            self.fail_next = None
            return self._err(status, msg)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["version"] and method == "GET":
            return 200, b"2.5.0"
        if parts == ["reset"] and method == "POST":
            for p in self.proxies.values():
                p["enabled"] = True
                p["toxics"] = {}
            return 204, None
        if parts == ["populate"] and method == "POST":
            out = []
            for item in body:
                self.proxies[item["name"]] = {"name": item["name"], "listen": item["listen"],
                                              "upstream": item["upstream"],
                                              "enabled": item.get("enabled", True), "toxics": {}}
                out.append(self._proxy_json(self.proxies[item["name"]]))
            return 201, {"proxies": out}
        if parts == ["proxies"]:
            if method == "GET":
                return 200, {n: self._proxy_json(p) for n, p in self.proxies.items()}
            if not body.get("name") or not body.get("upstream"):
                return self._err(400, "missing required field")
            if body["name"] in self.proxies:
                return self._err(409, "proxy already exists")
            self.proxies[body["name"]] = {"name": body["name"], "listen": body["listen"],
                                          "upstream": body["upstream"],
                                          "enabled": body.get("enabled", True), "toxics": {}}
            return 201, self._proxy_json(self.proxies[body["name"]])
        if len(parts) >= 2 and parts[0] == "proxies":
            p = self.proxies.get(parts[1])
            if p is None:
                return self._err(404, "proxy not found")
            if len(parts) == 2:
                if method == "GET":
                    return 200, self._proxy_json(p)
                if method == "DELETE":
                    del self.proxies[parts[1]]
                    return 204, None
                for k in ("listen", "upstream", "enabled"):
                    if k in body:
                        p[k] = body[k]
                return 200, self._proxy_json(p)
            if len(parts) == 3:
                if method == "GET":
                    return 200, list(p["toxics"].values())
                if body.get("type") not in TOXIC_TYPES:
                    return self._err(400, "invalid toxic type")
                name = body.get("name") or f"{body['type']}_{body.get('stream', 'downstream')}"
                if name in p["toxics"]:
                    return self._err(409, "toxic already exists")
                p["toxics"][name] = {"name": name, "type": body["type"],
                                     "stream": body.get("stream", "downstream"),
                                     "toxicity": body.get("toxicity", 1.0),
                                     "attributes": body.get("attributes") or {}}
                return 200, p["toxics"][name]
            t = p["toxics"].get(parts[3])
            if t is None:
                return self._err(404, "toxic not found")
            if method == "DELETE":
                del p["toxics"][parts[3]]
                return 204, None
            if method == "POST":
                t["attributes"].update(body.get("attributes") or {})
                if "toxicity" in body:
                    t["toxicity"] = body["toxicity"]
            return 200, t
        return self._err(404, "not found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake() -> Iterator[FakeToxiproxy]:
    f = FakeToxiproxy()
    try:
        yield f
    finally:
        f.close()


HAVE_SERVER = importlib.util.find_spec("nodes.toxiproxy.server") is not None


@pytest.fixture
def real_url(tmp_path: Path) -> Iterator[str]:
    if not HAVE_SERVER:
        pytest.skip("nodes.toxiproxy is not available")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    log = tmp_path / "toxiproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nodes.toxiproxy", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        client = ToxiproxyClient(url, timeout=1.0)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.version()
                break
            except ToxiproxyUnreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nodes.toxiproxy did not start: {log.read_text()}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["fake", "real"])
def client(request: pytest.FixtureRequest) -> Iterator[ToxiproxyClient]:
    if request.param == "fake":
        f = FakeToxiproxy()
        try:
            with ToxiproxyClient(f.url) as c:
                yield c
        finally:
            f.close()
    else:
        url = request.getfixturevalue("real_url")
        with ToxiproxyClient(url) as c:
            yield c


def test_proxy_lifecycle_and_toxics(client: ToxiproxyClient):
    assert client.version().startswith("2.")
    up = f"127.0.0.1:{free_port()}"
    p = client.create_proxy("p1", f"127.0.0.1:{free_port()}", up)
    assert (p.name, p.upstream, p.enabled) == ("p1", up, True)
    t = client.add_toxic("p1", "latency", {"latency": 150, "jitter": 5})
    assert t.name == "latency_downstream" and t.attributes["latency"] == 150
    client.add_toxic("p1", "bandwidth", {"rate": 10}, stream="upstream", name="bw", toxicity=0.5)
    toxics = {x.name: x for x in client.toxics("p1")}
    assert set(toxics) == {"latency_downstream", "bw"}
    assert toxics["bw"].stream == "upstream" and toxics["bw"].toxicity == 0.5
    updated = client.update_toxic("p1", "bw", {"rate": 20})
    assert updated.attributes["rate"] == 20
    assert client.disable("p1").enabled is False
    assert client.get_proxy("p1").enabled is False
    assert client.enable("p1").enabled is True
    assert client.remove_toxic("p1", "bw") is True
    assert client.remove_toxic("p1", "bw", missing_ok=True) is False
    assert [x.name for x in client.get_proxy("p1").toxics] == ["latency_downstream"]
    client.reset()
    assert client.get_proxy("p1").toxics == []
    assert "p1" in client.proxies()
    assert client.delete_proxy("p1") is True
    assert client.delete_proxy("p1", missing_ok=True) is False
    assert client.find_proxy("p1") is None


def test_populate_creates_and_replaces(client: ToxiproxyClient):
    a = f"127.0.0.1:{free_port()}"
    out = client.populate([Proxy("pa", a, "127.0.0.1:1"),
                           {"name": "pb", "listen": f"127.0.0.1:{free_port()}",
                            "upstream": "127.0.0.1:2"}])
    assert sorted(p.name for p in out) == ["pa", "pb"]
    client.populate([{"name": "pa", "listen": a, "upstream": "127.0.0.1:3"}])
    assert client.get_proxy("pa").upstream == "127.0.0.1:3"


def test_errors_name_url_proxy_status_and_message(client: ToxiproxyClient):
    with pytest.raises(ToxiproxyNotFound) as e:
        client.get_proxy("missing")
    err = e.value
    assert err.status == 404 and err.proxy == "missing" and client.url in str(err)
    assert "proxy not found" in str(err) and "'missing'" in str(err)
    assert isinstance(err, lib_exc.NotFound)  # toxiproxy-python's type still catches it
    client.create_proxy("dup", f"127.0.0.1:{free_port()}", "127.0.0.1:1")
    with pytest.raises(ToxiproxyExists) as e2:
        client.create_proxy("dup", f"127.0.0.1:{free_port()}", "127.0.0.1:1")
    assert e2.value.status == 409 and isinstance(e2.value, lib_exc.ProxyExists)
    with pytest.raises(ToxiproxyBadRequest) as e3:
        client.add_toxic("dup", "no_such_type")
    assert e3.value.status == 400 and "invalid toxic type" in e3.value.server_message
    assert e3.value.toxic == "no_such_type_downstream"
    with pytest.raises(ToxiproxyNotFound):
        client.remove_toxic("dup", "nothing")


def test_other_status_is_a_toxiproxy_error(fake: FakeToxiproxy):
    fake.fail_next = (500, "boom")
    with ToxiproxyClient(fake.url) as c, pytest.raises(ToxiproxyError) as e:
        c.proxies()
    assert e.value.status == 500 and "boom" in str(e.value)


def test_timeout_and_unreachable_are_reported(fake: FakeToxiproxy):
    fake.delay = 1.0
    with ToxiproxyClient(fake.url, timeout=0.2) as c:
        t0 = time.monotonic()
        with pytest.raises(ToxiproxyUnreachable) as e:
            c.proxies()
        assert time.monotonic() - t0 < 0.9
        assert "0.2s" in str(e.value)
    with ToxiproxyClient(f"http://127.0.0.1:{free_port()}", timeout=1) as c:
        with pytest.raises(ToxiproxyUnreachable) as e2:
            c.version()
        assert "running" in str(e2.value)


def test_clients_are_independent(fake: FakeToxiproxy):
    other = FakeToxiproxy()
    try:
        a, b = ToxiproxyClient(fake.url), ToxiproxyClient(other.url)
        a.create_proxy("only-a", "127.0.0.1:1", "127.0.0.1:2")
        assert "only-a" in a.proxies() and "only-a" not in b.proxies()
    finally:
        other.close()


def test_rejects_bad_arguments_before_calling():
    with pytest.raises(ValueError):
        ToxiproxyClient("127.0.0.1:8474")
    c = ToxiproxyClient("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        c.add_toxic("p", "latency", stream="sideways")
    with pytest.raises(ValueError):
        c.add_toxic("p", "latency", toxicity=2)


def _library_names() -> tuple[Any, ...]:
    return (lib_server.APIConsumer, lib_proxy.APIConsumer, lib_server.can_connect_to,
            lib_api.APIConsumer.host, lib_api.APIConsumer.port)


def test_every_request_goes_through_bound_toxiproxy_python(fake: FakeToxiproxy,
                                                           monkeypatch: pytest.MonkeyPatch):
    library_ops = {lib_server.Toxiproxy: ("version", "reset", "proxies", "create", "get_proxy",
                                          "destroy"),
                   lib_proxy.Proxy: ("toxics", "add_toxic", "destroy_toxic", "enable",
                                     "disable")}
    used: list[str] = []

    def spy(name: str, orig: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            used.append(name)
            return orig(*a, **k)
        return wrapper

    for cls, names in library_ops.items():
        for name in names:
            monkeypatch.setattr(cls, name, spy(name, getattr(cls, name)))
    seen: list[tuple[str, str, Any, Any, Any]] = []
    session_request = requests.Session.request

    def request(self: requests.Session, method: str, url: str, *a: Any, **k: Any) -> Any:
        seen.append((method, url, lib_server.APIConsumer, lib_proxy.APIConsumer, k.get("timeout")))
        return session_request(self, method, url, *a, **k)

    def unbound(*a: Any, **k: Any) -> Any:
        raise AssertionError("toxiproxy-python's unbound requests.get/post/delete was used")

    monkeypatch.setattr(requests.Session, "request", request)
    for fn in ("get", "post", "delete"):
        monkeypatch.setattr(lib_api.requests, fn, unbound)
    before = _library_names()

    with ToxiproxyClient(fake.url, timeout=3.0) as c:
        assert c.version() == "2.5.0"
        c.create_proxy("p", "127.0.0.1:1", "127.0.0.1:2")
        c.add_toxic("p", "latency", {"latency": 10})
        assert [t.name for t in c.toxics("p")] == ["latency_downstream"]
        assert c.disable("p").enabled is False and c.enable("p").enabled is True
        assert c.get_proxy("p").toxics[0].attributes == {"latency": 10}
        c.update_toxic("p", "latency_downstream", {"latency": 20})  # not in the library
        c.update_proxy("p", upstream="127.0.0.1:3")  # not in the library
        c.populate([{"name": "q", "listen": "127.0.0.1:4", "upstream": "127.0.0.1:5"}])
        assert c.remove_toxic("p", "latency_downstream") is True
        c.reset()
        assert set(c.proxies()) == {"p", "q"}
        assert c.delete_proxy("q") is True

    assert set(used) == {n for names in library_ops.values() for n in names}
    # every request the server got was made while this client's consumer was installed in the
    # library's modules, with the client's timeout
    assert len(seen) == len(fake.requests) > 0
    port = int(fake.url.rsplit(":", 1)[1])
    for method, url, server_consumer, proxy_consumer, timeout in seen:
        assert url.startswith(fake.url + "/"), url
        assert server_consumer is proxy_consumer is not lib_api.APIConsumer
        assert issubclass(server_consumer, lib_api.APIConsumer)
        assert (server_consumer.host, server_consumer.port) == ("127.0.0.1", port)
        assert timeout == 3.0, (method, url)
    assert _library_names() == before  # the library's own names are back


def test_library_names_are_restored_after_errors(fake: FakeToxiproxy,
                                                 monkeypatch: pytest.MonkeyPatch):
    other = FakeToxiproxy()
    try:
        before = _library_names()
        with ToxiproxyClient(fake.url) as c:
            fake.fail_next = (500, "boom")
            with pytest.raises(ToxiproxyError):
                c.delete_proxy("x")
            with pytest.raises(ToxiproxyNotFound):
                c.get_proxy("x")
            assert _library_names() == before
            # direct users of toxiproxy-python keep their own (global) server
            monkeypatch.setattr(lib_api.APIConsumer, "host", "127.0.0.1")
            monkeypatch.setattr(lib_api.APIConsumer, "port", int(other.url.rsplit(":", 1)[1]))
            c.create_proxy("mine", "127.0.0.1:1", "127.0.0.1:2")
            lib_server.Toxiproxy().create(upstream="127.0.0.1:2", name="theirs",
                                          listen="127.0.0.1:3")
            assert set(fake.proxies) == {"mine"} and set(other.proxies) == {"theirs"}
    finally:
        other.close()


@pytest.mark.parametrize("status", [401, 500, 503])
@pytest.mark.parametrize("op", ["delete_proxy", "remove_toxic", "add_toxic", "enable", "toxics",
                                "reset", "update_proxy"])
def test_every_error_status_raises_with_details(fake: FakeToxiproxy, op: str, status: int):
    """toxiproxy-python alone maps only 400/404/409; a 5xx would pass silently."""
    with ToxiproxyClient(fake.url) as c:
        c.create_proxy("p", "127.0.0.1:1", "127.0.0.1:2")
        c.add_toxic("p", "noop", name="t")
        calls = {"delete_proxy": lambda: c.delete_proxy("p"),
                 "remove_toxic": lambda: c.remove_toxic("p", "t"),
                 "add_toxic": lambda: c.add_toxic("p", "latency", {"latency": 1}),
                 "enable": lambda: c.enable("p"), "toxics": lambda: c.toxics("p"),
                 "reset": c.reset, "update_proxy": lambda: c.update_proxy("p", enabled=False)}
        fake.fail_next = (status, f"failure {status}")
        with pytest.raises(ToxiproxyError) as e:
            calls[op]()
        err = e.value
        assert err.status == status and f"failure {status}" in str(err)
        assert f"HTTP {status}" in str(err) and c.url in str(err)
        assert err.proxy == (None if op == "reset" else "p")
        assert not isinstance(err, (lib_exc.NotFound, lib_exc.ProxyExists, lib_exc.InvalidToxic))


def test_unexpected_answer_is_a_toxiproxy_error(fake: FakeToxiproxy):
    fake.answer_next = (200, b"<html>not toxiproxy</html>")
    with ToxiproxyClient(fake.url) as c, pytest.raises(ToxiproxyError) as e:
        c.proxies()
    assert e.value.status == 200 and "unexpected answer" in str(e.value)


def test_clients_on_threads_never_talk_to_each_others_server(fake: FakeToxiproxy):
    """toxiproxy-python's server address is process-global; two clients used concurrently must
    still each reach only their own server."""
    other = FakeToxiproxy()
    rounds = 25
    try:
        servers = {"a": fake, "b": other}
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def work(tag: str) -> None:
            try:
                with ToxiproxyClient(servers[tag].url, timeout=5.0) as c:
                    start.wait(timeout=5)
                    for i in range(rounds):
                        name = f"{tag}-{i}"
                        assert c.create_proxy(name, f"127.0.0.1:{1000 + i}", "127.0.0.1:1").name == name
                        c.add_toxic(name, "latency", {"latency": i})
                        made = {f"{tag}-{j}" for j in range(i + 1)} | ({f"{tag}-pop"} if i else set())
                        assert set(c.proxies()) == made
                        assert c.get_proxy(name).toxics[0].attributes == {"latency": i}
                        assert [t.name for t in c.toxics(name)] == ["latency_downstream"]
                        assert c.disable(name).name == name
                        c.update_toxic(name, "latency_downstream", {"latency": i + 1})
                        c.populate([{"name": f"{tag}-pop", "listen": "127.0.0.1:9",
                                     "upstream": f"127.0.0.1:{i + 1}"}])
                        assert c.version() == "2.5.0"
                    c.delete_proxy(f"{tag}-pop")
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(tag,)) for tag in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        for tag, server in servers.items():
            mine = {f"{tag}-{i}" for i in range(rounds)}
            assert set(server.proxies) == mine
            assert all(p["enabled"] is False for p in server.proxies.values())
            assert all(p["toxics"]["latency_downstream"]["attributes"]["latency"] == int(n[2:]) + 1
                       for n, p in server.proxies.items())
            strangers = {t for t in servers if t != tag}
            for method, path, body in server.requests:
                text = path + json.dumps(body)
                assert not any(f"{s}-" in text for s in strangers), (tag, method, path, body)
        assert lib_server.APIConsumer is lib_proxy.APIConsumer is lib_api.APIConsumer
    finally:
        other.close()
