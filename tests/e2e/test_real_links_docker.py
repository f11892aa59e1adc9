"""Per-link faults between real storage servers on the docker backend: the scenario of
tests/integration/real_links_net.py (10 real servers, the Session client's onion timings over a
path A -> B and a control path, with a latency fault on the link A->B, a partition {A} | {B},
and after ``heal``), run with ``--backend docker``. That the testnet's containers reach nothing
outside is tests/e2e/test_real_nodes_docker.py's part. Skipped, with the reason, where the binary,
the engine or a base for the server's image is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from harness.naming import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import real_links_net  # noqa: E402

NODES = real_links_net.NODES
LATENCY_MS = real_links_net.LATENCY_MS


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import docker

    from harness.images import ImageError, ensure_images
    from harness.images.oxen_storage import ensure_oxen_storage_image

    given = os.environ.get("SESSION_TESTNET_OXEN_STORAGE")
    binary = Path(given) if given else ROOT.parent / "shared" / "real-storage-server" / "bin" / "oxen-storage"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.skip(f"no real storage server at {binary}: set $SESSION_TESTNET_OXEN_STORAGE")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means: no engine here
        pytest.skip(f"Docker engine not reachable: {e}")
    try:
        ensure_images(client)
        ensure_oxen_storage_image(client, binary)
    except ImageError as e:
        pytest.skip(f"no image for the real storage server here: {e}")
    finally:
        client.close()
    work = tmp_path_factory.mktemp("real-links-docker")
    name = unique_name("rlinks")
    old_home = os.environ.get("SESSION_TESTNET_HOME")
    out: dict[str, Any] = {}
    try:
        real_links_net.scenario(binary, work, out, backend="docker", name=name)
    except Exception as exc:  # noqa: BLE001 - the failure is reported, after cleaning up
        out["error"] = repr(exc)
        real_links_net.cli(work, "down", "-n", name)
    finally:
        if old_home is None:
            os.environ.pop("SESSION_TESTNET_HOME", None)
        else:
            os.environ["SESSION_TESTNET_HOME"] = old_home
    assert out.get("error") is None, f"scenario failed: {out['error']}"
    yield out


def _ms(samples: list[dict[str, Any]]) -> list[float]:
    assert samples and all(s["ok"] for s in samples), samples
    return [s["ms"] for s in samples]


def test_each_real_node_sees_its_peers_at_link_addresses(report: dict[str, Any]) -> None:
    peer_ips = report["peer_ips"]
    assert len(peer_ips) == NODES
    ips = [ip for peers in peer_ips.values() for ip in peers.values()]
    assert len(set(ips)) == NODES * (NODES - 1) and all(ip.startswith("10.") for ip in ips)


def test_link_latency_and_partition_show_in_client_timings(report: dict[str, Any],
                                                           record_property: Any) -> None:
    t = report["timings"]
    before, during = median(_ms(t["before"]["path"])), median(_ms(t["link_latency"]["path"]))
    control = median(_ms(t["link_latency"]["control"]))
    record_property("path_ms_link_latency", during)
    assert during >= before + 0.8 * LATENCY_MS, (before, during)
    assert control < during - 0.8 * LATENCY_MS, (control, during)
    assert t["partition"]["path"] and not any(s["ok"] for s in t["partition"]["path"])
    assert _ms(t["partition"]["control"])


def test_heal_restores_the_path(report: dict[str, Any], record_property: Any) -> None:
    record_property("recovered_s", report["recovered_s"])
    assert report["recovered_s"] is not None
    assert median(_ms(report["timings"]["after_heal"]["path"])) < LATENCY_MS
    links = report["link_proxies_after_heal"]
    assert len(links) == 2 * NODES * (NODES - 1)
    assert all(v == {"enabled": True, "toxics": 0} for v in links.values())
