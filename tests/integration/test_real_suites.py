"""The packaged scenario suites against real storage servers: ``testnet suite run --nodes
10:oxen-storage=BINARY`` runs a subset of scenarios on a testnet of 10 real servers (process
backend) inside a loopback-only network namespace, and the scenarios that need what the real
server lacks are skipped with the reason its node kind gives (harness.nodekinds capabilities).

Skipped, with the reason, where the binary, its libraries or namespaces are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from real_storage_env import ROOT, find_binary, namespace

from harness.pytest_nodes import lacking, parse_groups

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: scenarios that need nothing the real server lacks (one module testnet: about a minute)
RUN = ["test_delivery_both_ways", "test_delete_by_owner", "test_duplicate_store_is_idempotent",
       "test_expire_extend_shorten"]
#: scenarios that need the admin interface (behaviours, observations, clock skew): never started
NEED_ADMIN = {"test_censoring_destination_alone": ["behaviour"],
              "test_metadata_privacy": ["observations"],
              "test_node_clock_skewed_by_minutes": ["clock"]}
#: the shell around the run: only ``lo`` may exist, up, before the harness starts
LOOPBACK_ONLY = ('ip link set lo up && test "$(ip -o link | cut -d: -f2 | tr -d " ")" = lo '
                 '|| { echo "not a loopback-only namespace: $(ip -o link)" >&2; exit 99; }; '
                 'exec "$@"')


def test_suite_run_on_real_nodes(tmp_path: Path, record_property: Any) -> None:
    binary = find_binary()
    ns = namespace()
    spec = f"10:oxen-storage={binary}"
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_HOME": str(tmp_path / "home")}
    argv = [*ns, "sh", "-c", LOOPBACK_ONLY, "sh", sys.executable, "-m", "harness", "suite", "run",
            *RUN, *NEED_ADMIN, "--backend", "process", "--nodes", spec, "--junit", str(junit),
            "--artifacts", str(tmp_path / "artifacts")]
    try:
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=420)
    except subprocess.TimeoutExpired as exc:  # the PID namespace takes every process with it
        pytest.fail(f"suite run on real nodes did not finish in {exc.timeout}s: {exc.stdout!r}")
    assert proc.returncode != 99, proc.stderr
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    cases = {c.get("name", "").split("[")[0]: c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == set(RUN) | set(NEED_ADMIN), sorted(cases)
    for name in RUN:
        case = cases[name]
        assert case.find("skipped") is None and case.find("failure") is None \
            and case.find("error") is None, f"{name} did not pass: {ET.tostring(case)[:2000]!r}"
    groups = parse_groups([spec])
    for name, needs in NEED_ADMIN.items():
        skipped = cases[name].find("skipped")
        reason = lacking(groups, needs)
        assert reason is not None, f"oxen-storage now supports {needs}: move {name} to RUN"
        assert skipped is not None and reason in (skipped.get("message") or ""), \
            f"{name}: {ET.tostring(cases[name])[:1000]!r}"
    # the scenarios ran on a testnet of the 10 real servers (the run index keeps its groups)
    index = json.loads((tmp_path / "artifacts" / "index.json").read_text())
    rows = {t["nodeid"].split("::")[-1].split("[")[0]: t for t in index["tests"]}
    for name in RUN:
        (net,) = {json.dumps(t, sort_keys=True) for t in rows[name]["testnets"]}
        assert json.loads(net)["nodes"] == [spec] and json.loads(net)["swarms"] == 3, net
    timing = json.loads((tmp_path / "artifacts" / "suite-timing.json").read_text())
    assert timing["nodes"] == [spec]
    record_property("suite_wall_s", timing["wall_seconds"])
