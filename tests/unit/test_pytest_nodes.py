"""``--testnet-nodes`` / ``testnet suite run --nodes``: how a fixture's shape is scaled to the
user's node groups, which scenarios a node kind's capabilities skip (and why), and the replay
line. Pure: pytest runs here only collect, or run tests that start no testnet."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.nodekinds.base import CAPABILITIES, OBSERVATIONS, PARTITION
from harness.nodekinds.oxen_storage import OxenStorageNode
from harness.nodekinds.python import PythonNode
from harness.pytest_nodes import lacking, on_groups, parse_groups, replay_options
from harness.suites.cli import RunOptions, pytest_argv
from harness.suites.explain import explain, replay_command
from harness.topology import Topology

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]

REAL = "10:oxen-storage=/bin/true"


@pytest.mark.parametrize(("asked", "groups", "counts", "swarms"), [
    ({}, [REAL], [10], 3),                                   # 2×3 asked: 10 real, swarms of 3
    ({"swarms": 3, "swarm_size": 3}, [REAL], [10], 3),       # 9 asked: the 10 as given
    ({"swarms": 2, "swarm_size": 4}, [REAL], [10], 2),       # swarms of 4: 2 (one of 6)
    ({"swarms": 4, "swarm_size": 3}, [REAL], [12], 4),       # 12 asked: the group grows
    ({"swarms": 3, "swarm_size": 3}, ["2:python", "4:python"], [2, 7], 3),  # the last grows
    ({"swarms": 1, "swarm_size": 4}, ["6:python"], [6], 1),
])
def test_fixture_shapes_scale_to_the_groups(asked, groups, counts, swarms):
    out = on_groups(asked, parse_groups(groups))
    assert [g.count for g in out["nodes"]] == counts
    assert out["swarms"] == swarms
    assert out.get("swarm_size", 3) == asked.get("swarm_size", 3)
    t = Topology(**out)  # a valid topology: swarms agree with the groups
    assert t.node_count == sum(counts) and t.kinds == sorted({g.kind for g in out["nodes"]})


def test_without_groups_or_with_a_topologys_own_nodes_nothing_changes():
    assert on_groups({"swarms": 3}, ()) == {"swarms": 3}
    own = {"nodes": tuple(parse_groups(["6:python"]))}
    assert on_groups(own, parse_groups([REAL])) is own


def test_bad_groups_are_usage_errors():
    with pytest.raises(pytest.UsageError, match="--testnet-nodes.*N:KIND=PATH"):
        parse_groups(["ten:oxen-storage"])
    with pytest.raises(pytest.UsageError, match="unknown kind 'oxen'"):
        parse_groups(["10:oxen"])


def test_our_nodes_lack_nothing_the_real_server_lacks_admin_partitions_and_joins():
    python, real = parse_groups(["6:python"]), parse_groups([REAL])
    assert lacking(python, CAPABILITIES) is None
    assert lacking(real, ["network", "churn"]) is None
    why = lacking(real, ["behaviour"])
    assert why is not None and why.startswith("needs behaviour faults (admin interface), which "
                                              "oxen-storage nodes do not support")
    assert f"they support: {', '.join(sorted(OxenStorageNode().capabilities()))})" in why
    assert "node observations" in (lacking(real, [OBSERVATIONS]) or "")
    # partitions for real servers are on their way: the reason exists exactly while they lack it
    assert ("partition faults" in (lacking(real, [PARTITION]) or "")) == \
        (PARTITION not in OxenStorageNode.fault_families)
    assert "joining a running testnet" in (lacking(real, ["join"]) or "")
    with pytest.raises(ValueError, match="unknown node capabilities"):
        lacking(real, ["telepathy"])


def test_the_reason_follows_the_kinds_capabilities(monkeypatch):
    """No list of skipped scenarios: the day the real server's kind supports partitions, the
    scenarios that need them run."""
    real = parse_groups([REAL])
    monkeypatch.setattr(OxenStorageNode, "fault_families",
                        OxenStorageNode.fault_families | {PARTITION})
    assert lacking(real, [PARTITION]) is None
    monkeypatch.setattr(PythonNode, "has_admin", False)
    assert "node observations" in (lacking(parse_groups(["6:python"]), [OBSERVATIONS]) or "")


def test_the_replay_line_and_the_pytest_command_carry_the_groups(tmp_path):
    groups = parse_groups([REAL])
    assert replay_options(groups) == ["--nodes", "10:oxen-storage=/bin/true"]
    line = replay_command("harness/suites/test_x.py::test_y", "ab12", "process", None,
                          ["10:oxen-storage=/opt/my build/oxen-storage"])
    assert line.endswith("--backend process --nodes '10:oxen-storage=/opt/my build/oxen-storage'")
    text = explain(prop="p", nodeid="n", testnets=[{"name": "t1", "seed": "ab12", "backend":
                                                     "process", "swarms": 3, "swarm_size": 3,
                                                     "nodes": ["10:oxen-storage=/x"]}],
                   history=None, events=[], results=[], report=None, nodes=["10:oxen-storage=/x"])
    assert "replay: testnet suite run n --seed ab12 --backend process --nodes 10:oxen-storage=/x" in text
    assert "t1 (process, 3×3, nodes 10:oxen-storage=/x)" in text
    argv = pytest_argv(tmp_path / "pytest.ini", RunOptions(nodes=(REAL, "10:python")))
    i = argv.index("--testnet-nodes")
    assert argv[i:i + 4] == ["--testnet-nodes", REAL, "--testnet-nodes", "10:python"]


def test_suite_run_refuses_a_bad_group_before_pytest_starts():
    res = CliRunner().invoke(main, ["suite", "run", "--nodes", "x:python"])
    assert res.exit_code == 2 and "--nodes" in res.output and "N:KIND=PATH" in res.output


def test_the_plugin_skips_by_capability_and_scales_nothing_it_does_not_start(pytester):
    pytester.makepyfile(test_m="""
        import pytest

        @pytest.mark.node_capabilities("behaviour")
        def test_needs_behaviours():
            assert False, "must be skipped on real nodes"

        @pytest.mark.node_capabilities("network", "churn")
        def test_needs_what_real_nodes_have():
            pass

        def test_needs_nothing():
            pass
    """)
    res = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--strict-markers",
                             "-rs", "--testnet-nodes", REAL)
    res.assert_outcomes(passed=2, skipped=1)
    res.stdout.fnmatch_lines(["*needs behaviour faults (admin interface), which oxen-storage "
                              "nodes do not support*"])
    ours = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--strict-markers")
    ours.assert_outcomes(passed=2, failed=1)  # on our nodes (the default) it runs
    bad = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--testnet-nodes", "9:x")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    few = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--testnet-nodes",
                             "6:oxen-storage=/bin/true")
    assert few.ret == pytest.ExitCode.USAGE_ERROR
    few.stderr.fnmatch_lines(["*--testnet-nodes*needs at least 10 nodes, got 6*"])


def test_a_reports_replay_brings_up_the_same_node_groups():
    from harness.report.data import replay_commands

    up = replay_commands([{"name": "t1", "seed": "s1", "swarms": 3, "swarm_size": 3,
                           "nodes": ["10:oxen-storage=/opt/oxen-storage"]}], None)[0]
    assert up == "testnet up -n t1 --seed s1 --swarm-size 3 --nodes 10:oxen-storage=/opt/oxen-storage"
    ours = replay_commands([{"name": "t1", "seed": "s1", "swarms": 2, "swarm_size": 3}], None)[0]
    assert ours == "testnet up -n t1 --seed s1 --swarms 2 --swarm-size 3"
