"""``testnet bench --quick``'s Compose baseline on a real engine: the rendered default topology
started by plain ``docker-compose up -d`` reaches the harness's readiness, and ``down -v``
leaves nothing behind. (The harness bring-up half is ``Testnet.up``, covered elsewhere.)"""

from __future__ import annotations

from typing import Any

import pytest

from harness.bench.quick_docker import compose_bringup, compose_command, docker_client
from harness.naming import unique_name
from harness.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def client() -> Any:
    c, why = docker_client()
    if c is None:
        pytest.skip(why or "no Docker engine")
    try:
        yield c
    finally:
        c.close()


def test_compose_baseline_reaches_readiness_and_is_removed(client: Any) -> None:
    if compose_command() is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    topo = Topology(name=unique_name("qc"))
    out = compose_bringup(topo, client, lambda _m: None)
    assert out.get("reason") is None, out
    assert out["up_s"] > 0 and out["up_s"] >= out["up_d_s"]
    assert "down_error" not in out, out
    f = {"label": f"session-testnet={topo.name}"}
    assert client.containers.list(all=True, filters=f) == []
    assert client.networks.list(filters=f) == []
    assert client.volumes.list(filters=f) == []
