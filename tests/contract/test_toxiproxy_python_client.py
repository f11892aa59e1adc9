"""Contract: the server works with toxiproxy-python (``from toxiproxy import Toxiproxy``)."""

from __future__ import annotations

import pytest
from toxiproxy.exceptions import NotFound, ProxyExists

pytestmark = pytest.mark.integration


def test_client_create_list_toxics_down_reset_destroy(toxiproxy_client, api, upstream, tcp):
    tp = toxiproxy_client
    assert tp.running() is True
    assert b"version" in tp.version()

    proxy = tp.create(upstream=f"127.0.0.1:{upstream.echo_port}", name="pyclient")
    assert proxy.name == "pyclient" and proxy.enabled is True
    port = int(proxy.listen.rsplit(":", 1)[1])
    assert port > 0
    assert set(tp.proxies()) == {"pyclient"}
    assert tp.get_proxy("pyclient").upstream == f"127.0.0.1:{upstream.echo_port}"
    with pytest.raises(ProxyExists):
        tp.create(upstream=f"127.0.0.1:{upstream.echo_port}", name="pyclient")

    s = tcp.connect(port)
    assert tcp.rtt(s) < 0.06
    proxy.add_toxic(type="latency", attributes={"latency": 150})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream"}
    t = toxics["latency_downstream"]
    assert (t.type, t.stream, t.attributes["latency"]) == ("latency", "downstream", 150)
    assert tcp.rtt(s) >= 0.145
    assert proxy.destroy_toxic("latency_downstream") is True
    assert proxy.toxics() == {}
    assert tcp.rtt(s) < 0.06
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")

    with proxy.down():
        assert tcp.refused(port)
        assert tp.get_proxy("pyclient").enabled is False
    assert tp.get_proxy("pyclient").enabled is True
    assert tcp.rtt(tcp.connect(port)) < 0.06

    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
    proxy.disable()
    assert tp.reset() is True
    assert tp.get_proxy("pyclient").enabled is True
    assert proxy.toxics() == {}

    assert tp.destroy(proxy) is True
    assert tp.proxies() == {}
    assert tcp.refused(port)


def test_client_populate_and_destroy_all(toxiproxy_client, api, upstream, tcp):
    tp = toxiproxy_client
    made = tp.populate([
        {"name": "pop_a", "upstream": f"127.0.0.1:{upstream.echo_port}", "listen": "127.0.0.1:0"},
        {"name": "pop_b", "upstream": f"127.0.0.1:{upstream.hangup_port}", "listen": "127.0.0.1:0"},
    ])
    assert sorted(p.name for p in made) == ["pop_a", "pop_b"]
    proxies = tp.proxies()
    assert set(proxies) == {"pop_a", "pop_b"}
    data, _ = tcp.read_until_eof(tcp.connect(int(proxies["pop_b"].listen.rsplit(":", 1)[1])))
    assert data == b"bye"
    tp.destroy_all()
    assert tp.proxies() == {}
