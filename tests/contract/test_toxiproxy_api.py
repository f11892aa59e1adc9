"""Contract: every endpoint of the Toxiproxy 2.x HTTP API, its status codes and JSON shapes."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.integration

PROXY_KEYS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_KEYS = {"name", "type", "stream", "toxicity", "attributes"}

DEFAULT_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}


def assert_error(r, status: int, message: str | None = None, startswith: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "status"}, body
    assert body["status"] == status
    if message is not None:
        assert body["error"] == message
    if startswith is not None:
        assert body["error"].startswith(startswith), body["error"]
    return body


# -- server ---------------------------------------------------------------------------------------

def test_version_is_json_2x(api):
    r = api.get("/version")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["version"].startswith("2.")
    assert r.headers.get("X-Toxiproxy-Request-Id")


def test_unknown_path_404_and_wrong_method_405(api):
    r = api.get("/nope")
    assert r.status_code == 404
    assert r.text == "404 page not found\n"
    assert api.request("PUT", "/proxies").status_code == 405
    assert api.delete("/reset").status_code == 405


def test_browser_user_agent_is_refused(api):
    r = api.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
    assert r.status_code == 403
    assert api.get("/proxies", headers={"User-Agent": "curl/8"}).status_code == 200


# -- proxies --------------------------------------------------------------------------------------

def test_create_proxy_shape_and_listing(api, upstream, tcp):
    r = api.post("/proxies", json={"name": "shape", "listen": "127.0.0.1:0",
                                   "upstream": f"127.0.0.1:{upstream.echo_port}"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    p = r.json()
    assert set(p) == PROXY_KEYS
    assert p["name"] == "shape"
    assert p["upstream"] == f"127.0.0.1:{upstream.echo_port}"
    assert p["enabled"] is True
    assert p["toxics"] == []
    host, port = p["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # port 0 reported as the real port

    assert api.get("/proxies/shape").json() == p
    listing = api.get("/proxies")
    assert listing.status_code == 200
    assert listing.json() == {"shape": p}
    s = tcp.connect(int(port))
    assert tcp.rtt(s, b"hello") < 1.0


def test_create_proxy_resolves_listen_hostname(api, upstream):
    p = api.create_proxy("named", upstream.echo_port, listen="localhost:0")
    assert p["listen"].startswith("127.0.0.1:")
    assert api.port_of(p) > 0


def test_create_proxy_defaults_to_enabled_and_can_be_created_disabled(api, upstream, tcp):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    listen = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    r = api.post("/proxies", json={"name": "off", "listen": listen,
                                   "upstream": f"127.0.0.1:{upstream.echo_port}", "enabled": False})
    assert r.status_code == 201, r.text
    assert r.json()["enabled"] is False
    assert r.json()["listen"] == listen
    assert tcp.refused(int(listen.rsplit(":", 1)[1]))
    p = api.set_enabled("off", True)
    assert p["enabled"] is True
    assert tcp.rtt(tcp.connect(api.port_of(p))) < 1.0


def test_create_proxy_duplicate_name_409(api, upstream):
    api.create_proxy("dup", upstream.echo_port)
    r = api.post("/proxies", json={"name": "dup", "listen": "127.0.0.1:0",
                                   "upstream": f"127.0.0.1:{upstream.echo_port}"})
    assert_error(r, 409, "proxy already exists")


def test_create_proxy_bad_input_400(api, upstream):
    assert_error(api.post("/proxies", json={"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}),
                 400, "missing required field: name")
    assert_error(api.post("/proxies", json={"name": "x", "listen": "127.0.0.1:0"}),
                 400, "missing required field: upstream")
    assert_error(api.post("/proxies", data=b"{not json"), 400, startswith="bad request body")
    assert_error(api.post("/proxies", data=b""), 400, startswith="bad request body")
    assert_error(api.post("/proxies", json=[{"name": "x"}]), 400, startswith="bad request body")
    assert_error(api.post("/proxies", json={"name": 5, "upstream": "127.0.0.1:1"}), 400,
                 startswith="bad request body")
    assert api.get("/proxies").json() == {}


def test_create_proxy_on_busy_port_500(api, upstream):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        r = api.post("/proxies", json={"name": "busy", "listen": f"127.0.0.1:{port}",
                                       "upstream": f"127.0.0.1:{upstream.echo_port}"})
        body = assert_error(r, 500)
        assert "address already in use" in body["error"]
    finally:
        busy.close()
    assert api.get("/proxies/busy").status_code == 404


def test_missing_proxy_and_toxic_404(api, upstream):
    for method, path in [("GET", "/proxies/ghost"), ("POST", "/proxies/ghost"),
                         ("DELETE", "/proxies/ghost"), ("GET", "/proxies/ghost/toxics"),
                         ("POST", "/proxies/ghost/toxics"), ("GET", "/proxies/ghost/toxics/t"),
                         ("DELETE", "/proxies/ghost/toxics/t")]:
        kw = {"json": {"type": "latency"}} if method == "POST" else {}
        assert_error(api.request(method, path, **kw), 404, "proxy not found")
    api.create_proxy("real", upstream.echo_port)
    assert_error(api.get("/proxies/real/toxics/ghost"), 404, "toxic not found")
    assert_error(api.post("/proxies/real/toxics/ghost", json={"attributes": {}}), 404, "toxic not found")
    assert_error(api.delete("/proxies/real/toxics/ghost"), 404, "toxic not found")


def test_disable_closes_listener_and_connections_enable_relistens(api, upstream, tcp):
    p = api.create_proxy("flip", upstream.echo_port)
    port = api.port_of(p)
    s = tcp.connect(port)
    assert tcp.rtt(s) < 1.0
    off = api.set_enabled("flip", False)
    assert set(off) == PROXY_KEYS and off["enabled"] is False
    assert tcp.is_closed(s), "existing connection must be closed when the proxy is disabled"
    assert tcp.refused(port)
    r = api.patch("/proxies/flip", json={"enabled": True})  # PATCH is the 2.6+ spelling
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True
    assert r.json()["listen"] == p["listen"]
    assert tcp.rtt(tcp.connect(port)) < 1.0


def test_update_upstream_and_listen(api, upstream, tcp):
    p = api.create_proxy("move", upstream.echo_port)
    old_port = api.port_of(p)
    r = api.post("/proxies/move", json={"upstream": f"127.0.0.1:{upstream.hangup_port}"})
    assert r.status_code == 200, r.text
    assert r.json()["upstream"] == f"127.0.0.1:{upstream.hangup_port}"
    data, _ = tcp.read_until_eof(tcp.connect(api.port_of(r.json())))
    assert data == b"bye"
    r = api.post("/proxies/move", json={"listen": "127.0.0.1:0"})
    assert r.status_code == 200, r.text
    new_port = api.port_of(r.json())
    assert new_port != old_port
    assert tcp.refused(old_port)
    data, _ = tcp.read_until_eof(tcp.connect(new_port))
    assert data == b"bye"


def test_delete_proxy(api, upstream, tcp):
    p = api.create_proxy("gone", upstream.echo_port)
    s = tcp.connect(api.port_of(p))
    assert tcp.rtt(s) < 1.0
    r = api.delete("/proxies/gone")
    assert r.status_code == 204
    assert r.content == b""
    assert tcp.is_closed(s)
    assert tcp.refused(api.port_of(p))
    assert api.get("/proxies/gone").status_code == 404
    assert api.get("/proxies").json() == {}


# -- populate and reset ---------------------------------------------------------------------------

def test_populate_creates_keeps_and_replaces(api, upstream, tcp):
    body = [{"name": "pa", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream.echo_port}"},
            {"name": "pb", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream.hangup_port}",
             "enabled": False}]
    r = api.post("/populate", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert set(out) == {"proxies"}
    assert [p["name"] for p in out["proxies"]] == ["pa", "pb"]
    for p in out["proxies"]:
        assert set(p) == PROXY_KEYS
    pa, pb = out["proxies"]
    assert pa["enabled"] is True and pb["enabled"] is False
    assert tcp.rtt(tcp.connect(api.port_of(pa))) < 1.0

    # same listen + upstream: the existing proxy (and its toxics) is kept
    api.add_toxic("pa", type="latency", attributes={"latency": 1})
    again = [{"name": "pa", "listen": pa["listen"], "upstream": pa["upstream"]}]
    r = api.post("/populate", json=again)
    assert r.status_code == 201, r.text
    assert r.json()["proxies"][0]["listen"] == pa["listen"]
    assert [t["name"] for t in api.get("/proxies/pa/toxics").json()] == ["latency_downstream"]

    # a different upstream replaces it
    r = api.post("/populate", json=[{"name": "pa", "listen": "127.0.0.1:0",
                                     "upstream": f"127.0.0.1:{upstream.hangup_port}"}])
    assert r.status_code == 201, r.text
    replaced = r.json()["proxies"][0]
    assert replaced["upstream"] == f"127.0.0.1:{upstream.hangup_port}"
    assert replaced["toxics"] == []
    data, _ = tcp.read_until_eof(tcp.connect(api.port_of(replaced)))
    assert data == b"bye"


def test_populate_rejects_bad_input(api, upstream):
    r = api.post("/populate", json=[
        {"name": "ok1", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream.echo_port}"},
        {"listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream.echo_port}"}])
    assert_error(r, 400, "missing required field: name at proxy 2")
    r = api.post("/populate", json=[{"name": "x", "listen": "127.0.0.1:0"}])
    assert_error(r, 400, "missing required field: upstream at proxy 1")
    assert_error(api.post("/populate", json={"name": "x"}), 400, startswith="bad request body")
    assert api.get("/proxies").json() == {}


def test_reset_enables_proxies_and_removes_toxics(api, upstream, tcp):
    a = api.create_proxy("ra", upstream.echo_port)
    b = api.create_proxy("rb", upstream.echo_port)
    api.add_toxic("ra", type="latency", attributes={"latency": 500})
    api.add_toxic("rb", type="timeout", stream="upstream")
    api.set_enabled("rb", False)
    assert tcp.refused(api.port_of(b))
    r = api.post("/reset")
    assert r.status_code == 204
    assert r.content == b""
    proxies = api.get("/proxies").json()
    assert proxies["ra"]["toxics"] == [] and proxies["rb"]["toxics"] == []
    assert proxies["ra"]["enabled"] and proxies["rb"]["enabled"]
    for p in (a, b):
        assert tcp.rtt(tcp.connect(api.port_of(p))) < 0.25


# -- toxics ---------------------------------------------------------------------------------------

def test_toxic_create_show_update_delete(api, upstream):
    api.create_proxy("tx", upstream.echo_port)
    r = api.post("/proxies/tx/toxics", json={"type": "latency", "attributes": {"latency": 100, "jitter": 10}})
    assert r.status_code == 200, r.text
    t = r.json()
    assert set(t) == TOXIC_KEYS
    assert t == {"name": "latency_downstream", "type": "latency", "stream": "downstream",
                 "toxicity": 1, "attributes": {"latency": 100, "jitter": 10}}
    assert api.get("/proxies/tx/toxics").json() == [t]
    assert api.get("/proxies/tx/toxics/latency_downstream").json() == t
    assert api.get("/proxies/tx").json()["toxics"] == [t]

    # update merges attributes, keeps what is not given, changes toxicity
    r = api.post("/proxies/tx/toxics/latency_downstream",
                 json={"attributes": {"latency": 250}, "toxicity": 0.5})
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"latency": 250, "jitter": 10}
    assert r.json()["toxicity"] == pytest.approx(0.5)
    r = api.patch("/proxies/tx/toxics/latency_downstream", json={"attributes": {"jitter": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"latency": 250, "jitter": 0}
    assert r.json()["toxicity"] == pytest.approx(0.5)
    assert api.get("/proxies/tx/toxics/latency_downstream").json() == r.json()

    r = api.delete("/proxies/tx/toxics/latency_downstream")
    assert r.status_code == 204 and r.content == b""
    assert api.get("/proxies/tx/toxics").json() == []
    assert api.get("/proxies/tx/toxics/latency_downstream").status_code == 404


@pytest.mark.parametrize("toxic_type", sorted(DEFAULT_ATTRIBUTES))
def test_toxic_types_and_attribute_defaults(api, upstream, toxic_type):
    api.create_proxy("types", upstream.echo_port)
    t = api.add_toxic("types", type=toxic_type, stream="upstream", toxicity=0.25)
    assert t["name"] == f"{toxic_type}_upstream"
    assert t["stream"] == "upstream"
    assert t["toxicity"] == pytest.approx(0.25)
    assert t["attributes"] == DEFAULT_ATTRIBUTES[toxic_type]


def test_toxic_names_conflict_across_streams_409(api, upstream):
    api.create_proxy("nc", upstream.echo_port)
    api.add_toxic("nc", name="same", type="latency", stream="upstream")
    assert_error(api.post("/proxies/nc/toxics", json={"name": "same", "type": "latency", "stream": "downstream"}),
                 409, "toxic already exists")
    assert_error(api.post("/proxies/nc/toxics", json={"name": "same", "type": "slow_close"}),
                 409, "toxic already exists")
    # default names include the stream, so both directions can have one
    api.add_toxic("nc", type="latency", stream="upstream")
    api.add_toxic("nc", type="latency", stream="downstream")
    assert_error(api.post("/proxies/nc/toxics", json={"type": "latency"}), 409, "toxic already exists")


def test_toxic_bad_input_400(api, upstream):
    api.create_proxy("bad", upstream.echo_port)
    assert_error(api.post("/proxies/bad/toxics", json={"type": "frobnicate"}), 400, "invalid toxic type")
    assert_error(api.post("/proxies/bad/toxics", json={}), 400, "invalid toxic type")
    assert_error(api.post("/proxies/bad/toxics", json={"type": "latency", "stream": "sideways"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    assert_error(api.post("/proxies/bad/toxics", json={"type": "latency", "attributes": {"latency": "100"}}),
                 400, startswith="bad request body")
    assert_error(api.post("/proxies/bad/toxics", json={"type": "latency", "attributes": {"latency": 1.5}}),
                 400, startswith="bad request body")
    assert_error(api.post("/proxies/bad/toxics", data=b"[oops"), 400, startswith="bad request body")
    api.add_toxic("bad", type="latency")
    assert_error(api.post("/proxies/bad/toxics/latency_downstream", json={"attributes": {"latency": "x"}}),
                 400, startswith="bad request body")
    assert api.get("/proxies/bad/toxics/latency_downstream").json()["attributes"]["latency"] == 0


def test_toxic_list_order_upstream_chain_first(api, upstream):
    api.create_proxy("order", upstream.echo_port)
    api.add_toxic("order", name="d1", type="latency", stream="downstream")
    api.add_toxic("order", name="u1", type="latency", stream="upstream")
    api.add_toxic("order", name="d2", type="bandwidth", stream="downstream")
    api.add_toxic("order", name="u2", type="slicer", stream="upstream")
    assert [t["name"] for t in api.get("/proxies/order/toxics").json()] == ["u1", "u2", "d1", "d2"]
    api.remove_toxic("order", "u1")
    assert [t["name"] for t in api.get("/proxies/order").json()["toxics"]] == ["u2", "d1", "d2"]
