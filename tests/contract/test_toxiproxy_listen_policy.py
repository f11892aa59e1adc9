"""This Toxiproxy binds proxies only in its allowed networks (issue 12, finding 7): a listen
address outside them (``0.0.0.0``, a host's LAN address) is refused with Toxiproxy's error shape
before anything is bound or changed.  Not a Toxiproxy 2.x behaviour: skipped against an official
server ($TOXIPROXY_URL)."""

from __future__ import annotations

import ipaddress

import pytest

from nodes.toxiproxy.listen_policy import LOOPBACK, ListenPolicy, interface_networks

pytestmark = pytest.mark.integration


def assert_error(r, status: int, startswith: str) -> dict:
    """Toxiproxy's error shape: {"error": message, "status": code}."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "status"} and body["status"] == status, body
    assert body["error"].startswith(startswith), body["error"]
    return body


@pytest.fixture
def ours(toxiproxy_api):
    if toxiproxy_api.external:
        pytest.skip("listen restrictions are this implementation's, not Toxiproxy 2.x's")


@pytest.mark.parametrize("listen", ["0.0.0.0:0", ":0", "[::]:0", "192.0.2.10:0", "example.com:0"])
def test_listen_outside_the_allowed_networks_is_refused(ours, api, upstream, listen):
    r = api.post("/proxies", json={"name": "outside", "listen": listen,
                                   "upstream": f"127.0.0.1:{upstream.echo_port}"})
    body = assert_error(r, 403, startswith=f"listen address {listen!r} refused")
    assert "--allow-listen" in body["error"] or "IP address" in body["error"]
    assert api.get("/proxies/outside").status_code == 404  # nothing was created


def test_update_and_populate_cannot_move_a_proxy_outside(ours, api, upstream):
    p = api.create_proxy("inside", upstream.echo_port)  # 127.0.0.1:0
    r = api.post("/proxies/inside", json={"listen": "0.0.0.0:0"})
    assert_error(r, 403, startswith="listen address '0.0.0.0:0' refused")
    after = api.get("/proxies/inside").json()
    assert after["listen"] == p["listen"] and after["enabled"] is True  # unchanged, still serving
    r = api.post("/populate", json=[{"name": "inside", "listen": "0.0.0.0:0",
                                     "upstream": f"127.0.0.1:{upstream.echo_port}"}])
    assert r.status_code == 403 and r.json()["status"] == 403
    for listen in ("127.0.0.1:0", "localhost:0", "127.9.8.7:0"):
        api.post("/proxies/inside", json={"listen": listen}).raise_for_status()


def test_default_policy_follows_the_api_host() -> None:
    assert ListenPolicy.default("127.0.5.1").networks == LOOPBACK  # process backend: 127.X.0.1
    wildcard = ListenPolicy.default("0.0.0.0")  # docker backend: the proxy container's networks
    assert set(LOOPBACK) <= set(wildcard.networks)
    assert {n for n in interface_networks() if not n.is_loopback} <= set(wildcard.networks)
    # what the docker backend's proxy container holds: 10.X.0.1/16 and link addresses in it
    docker = ListenPolicy((*LOOPBACK, ipaddress.ip_network("10.7.0.0/16")))
    docker.check("10.7.3.1:22021")
    for refused in ("10.8.0.1:1", "0.0.0.0:1"):
        with pytest.raises(Exception, match="refused"):
            docker.check(refused)
    with pytest.raises(ValueError, match="--allow-listen"):
        ListenPolicy.parse(["10.7.0.0/33"])
    assert ListenPolicy.parse(["0.0.0.0/0"]).networks[0].prefixlen == 0
    ListenPolicy.parse(["0.0.0.0/0"]).check("0.0.0.0:1")  # allowed only when asked for explicitly
