"""``testnet bench --quick`` reduced (small counts, short windows, docker figures skipped) on the
process backend: every key it adds is there and sane. No timing assertions: the speed targets
are the figures' business, not the test's."""

from __future__ import annotations

from typing import Any

import pytest

from harness.bench.load import Load
from harness.bench.quick import QUICK_KEYS, QuickParams, render_quick, run_quick
from harness.bench.run import TESTNET_KEYS
from harness.naming import unique_name
from harness.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARAMS = QuickParams(load=Load(messages=5, stores=20, retrieves=20, concurrency=4),
                     onion_clients=4, onion_window_s=1.0, churn_window_s=10.0,
                     delivery_wait_s=30.0, docker=False)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    topology = Topology(name=unique_name("quick"), seed="bench-quick-test")
    return run_quick("process", topology, lambda _m: None, PARAMS)


def test_todays_figures_are_still_there(result: dict[str, Any]) -> None:
    assert set(TESTNET_KEYS) <= set(result)
    assert result["store_throughput"]["ok"] > 0 and result["targets"]["up_s"]["met"] in (True, False)


def test_every_quick_key_is_present_and_sane(result: dict[str, Any]) -> None:
    for key in QUICK_KEYS:
        assert key in result and key in result["targets"], key
        assert isinstance(result["targets"][key]["met"], bool) or key == "direct_stores_per_s"
    # at least MIN_ONION_SAMPLES sequential onion stores, whatever the load asked
    assert result["send"]["n"] >= 200
    assert 0 < result["onion_roundtrip_p50_ms"] <= result["onion_roundtrip_p99_ms"]
    assert result["onion_stores_per_s"] > 0 and result["direct_stores_per_s"] > 0
    assert 0 < result["delivery_rate_under_churn"] <= 1
    q = result["quick"]
    assert all(q["backends"][k] == "process" for k in QUICK_KEYS[2:])
    onion = q["onion_stores"]
    assert onion["clients"] == 4 and onion["acknowledged"] > 0
    churn = q["churn"]
    assert churn["seed"] == "bench-quick-test" and churn["steps"] == 1  # seeded by the testnet
    assert churn["schedule"] == "standard-churn" and churn["schedule_errors"] == []
    assert 0 < churn["delivered"] <= churn["acknowledged"]


def test_skipped_docker_figures_are_null_with_the_reason(result: dict[str, Any]) -> None:
    for key in ("bringup_s", "compose_up_s"):
        assert result[key] is None
        assert result["targets"][key]["met"] is False
        assert "skipped" in result["targets"][key]["reason"]
    assert any("MISSED" in line and "skipped" in line for line in render_quick(result))
