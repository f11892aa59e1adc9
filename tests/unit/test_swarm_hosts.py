"""Several swarm hosts, the pure parts: the engines the user names, the routes a task on
another host gets (every role's address goes where it must), and the capabilities a simulated
host asks for."""

from __future__ import annotations

import ipaddress
import re

import pytest

from harness.backends.base import BackendError
from harness.backends.swarm_engines import ENV, HostEngines, parse_engines
from harness.backends.swarm_net import task_route_script
from harness.swarmsim.hosts import capabilities

pytestmark = pytest.mark.unit


def test_engines_are_host_equals_url_pairs() -> None:
    assert parse_engines("") == {}
    assert parse_engines(" h1=unix:///run/h1/docker.sock , h2=tcp://10.0.0.2:2376,") == {
        "h1": "unix:///run/h1/docker.sock", "h2": "tcp://10.0.0.2:2376"}
    for bad in ("h1", "h1=", "=unix:///x", "h1=/run/docker.sock"):
        with pytest.raises(BackendError, match="is not HOST=URL"):
            parse_engines(bad)
    with pytest.raises(BackendError, match="named twice"):
        parse_engines("h1=unix:///a,h1=unix:///b")


def test_the_manager_host_uses_the_managers_engine_and_an_unnamed_host_says_what_to_set() -> None:
    manager = object()
    engines = HostEngines(manager, "vm", {"vm": "unix:///ignored", "h1": "unix:///nowhere"})  # type: ignore[arg-type]
    assert engines.urls == {"h1": "unix:///nowhere"}  # the manager is never a second client
    assert engines.client("vm") is manager and engines.client(None) is manager
    assert engines.client("h9") is None
    with pytest.raises(BackendError, match=f"node sn03 runs on swarm host 'h9'.*add h9=URL to \\${ENV}"):
        engines.require("h9", "node sn03")
    with pytest.raises(BackendError, match="cannot reach the engine of swarm host h1 at unix:///nowhere"):
        engines.client("h1")


def _routes(script: str, x: int) -> list[tuple[ipaddress.IPv4Network, str]]:
    """(destination, next hop or 'on-link') of the script's routes, plus the overlay's own
    on-link /16 that the task's interface has."""
    out = [(ipaddress.IPv4Network(f"10.{x}.0.0/16"), "on-link")]
    for dest, via in re.findall(r"ip route replace (\S+) (?:via (\S+) )?dev", script):
        out.append((ipaddress.IPv4Network(dest), via or "on-link"))
    return out


def _next_hop(routes: list[tuple[ipaddress.IPv4Network, str]], ip: str) -> str:
    addr = ipaddress.IPv4Address(ip)
    matching = [(net.prefixlen, hop) for net, hop in routes if addr in net]
    return max(matching)[1]  # longest prefix wins


def test_a_task_on_another_host_reaches_real_endpoints_directly_and_the_rest_through_the_proxy_host() -> None:
    x = 140
    script = task_route_script(x)
    routes = _routes(script, x)
    proxy_host = f"10.{x}.0.1"
    # real overlay endpoints (the overlay answers ARP for them on every host): direct
    for ip in (proxy_host, f"10.{x}.0.2", f"10.{x}.255.1", f"10.{x}.255.126"):
        assert _next_hop(routes, ip) == "on-link", ip
    # extra addresses of the proxy host and the harness's address: through the proxy host
    for ip in (f"10.{x}.1.1", f"10.{x}.7.3", f"10.{x}.200.1", f"10.{x}.0.3",
               f"10.{x}.255.253"):
        assert _next_hop(routes, ip) == proxy_host, ip
    # the interface is found by its address in the testnet's subnet, and a namespace without
    # one fails loudly instead of routing nothing
    assert f"/^10[.]{x}[.]/" in script and "exit 1" in script and script.startswith("set -e")


def test_a_simulated_host_asks_for_exactly_the_capabilities_the_machine_has() -> None:
    everything = capabilities((1 << 41) - 1)
    assert len(everything) == 41 and "SYS_ADMIN" in everything and "NET_ADMIN" in everything
    sandboxed = capabilities(0x000001FFFEFFFFFF)  # a sandbox without CAP_SYS_RESOURCE (bit 24)
    assert "SYS_RESOURCE" not in sandboxed and len(sandboxed) == 40
    assert capabilities(1 << 21) == ["SYS_ADMIN"]
