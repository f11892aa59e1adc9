"""The pytest plugin, run the way its users run it: inner pytest sessions (pytester) whose tests
use the fixtures on real process-backend testnets.

The inner sessions share the suite's state home (so that testnet placement, made under its lock,
never clashes with testnets of other xdist workers); each test gives its inner session a
``--testnet-prefix`` of its own and checks that nothing with that prefix is left."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends.process import _all_marked
from harness.network import Testnet
from harness.state import state_home

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

#: a small testnet: 2 nodes, no proxies (fast to start)
SMALL = "swarms=1, swarm_size=2, proxies=False"


@pytest.fixture
def prefix() -> str:
    """A --testnet-prefix no other test uses: what carries it was started by this test."""
    return f"p{secrets.token_hex(3)}"


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SESSION_TESTNET_BACKEND", raising=False)
    return state_home()


def leftovers(home: Path, prefix: str) -> tuple[list[str], list[int]]:
    """State folders and processes of testnets whose name starts with ``prefix``."""
    nets = sorted(p.name for p in (home / "networks").glob(f"{prefix}*"))
    marks = str(home / "networks" / prefix)
    pids = [pid for pid, mark in _all_marked().items() if mark.startswith(marks)]
    return nets, pids


def run(pytester: pytest.Pytester, prefix: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--testnet-backend", "process",
                              "--testnet-prefix", prefix, *args)


def test_xdist_two_workers_two_testnets_no_clash_all_cleaned(pytester: pytest.Pytester,
                                                             home: Path, prefix: str,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (test extra)")
    seen = tmp_path / "seen"
    seen.mkdir()
    body = textwrap.dedent(f"""
        import json, os, time
        from pathlib import Path

        SEEN = Path({str(seen)!r})

        def test_net(testnet_factory):
            net = testnet_factory({SMALL})
            worker = os.environ["PYTEST_XDIST_WORKER"]
            (SEEN / f"{{worker}}.json").write_text(json.dumps(
                {{"worker": worker, "name": net.name, "seed": net.seed_url,
                  "ready": net.refresh().ready}}))
            # both testnets are up at once: wait (bounded) for the other worker's
            deadline = time.monotonic() + 60
            while len(list(SEEN.glob("*.json"))) < 2:
                assert time.monotonic() < deadline, "the other worker never started its testnet"
                time.sleep(0.1)
            assert net.refresh().ready
    """)
    pytester.makepyfile(test_one=body, test_two=body)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--testnet-backend", "process", "--testnet-prefix", prefix,
        "-n", "2", "--dist", "loadfile", timeout=240)
    result.assert_outcomes(passed=2)
    records = [json.loads(p.read_text()) for p in seen.glob("*.json")]
    assert sorted(r["worker"] for r in records) == ["gw0", "gw1"]
    names = [r["name"] for r in records]
    assert len(set(names)) == 2 and len({r["seed"] for r in records}) == 2
    assert all(r["ready"] for r in records)
    for r in records:  # prefix, then the worker id: unique across workers by construction
        assert r["name"].startswith(f"{prefix}{r['worker']}"), r
    assert leftovers(home, prefix) == ([], [])


def test_xdist_worker_artifacts_reach_the_summary(pytester: pytest.Pytester, home: Path,
                                                  prefix: str) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (test extra)")
    pytester.makepyfile(test_inner=f"""
        def test_fails(testnet_factory):
            testnet_factory({SMALL})
            assert False
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--testnet-backend", "process", "--testnet-prefix", prefix,
        "-n", "2", timeout=240)
    result.assert_outcomes(failed=1)
    folder = pytester.path / "testnet-artifacts" / "test_inner.py__test_fails"
    assert [p.name for p in folder.iterdir()][0].startswith(f"{prefix}gw")  # from a worker
    result.stdout.fnmatch_lines(["*session-testnet*",
                                 f"  test_inner.py::test_fails: {folder}"])
    assert leftovers(home, prefix) == ([], [])


def test_artifacts_only_for_the_failed_test_and_listed_in_the_summary(
        pytester: pytest.Pytester, home: Path, prefix: str) -> None:
    pytester.makepyfile(test_inner=f"""
        def test_passes(testnet_factory, history):
            net = testnet_factory({SMALL})
            history.client(net)

        def test_fails(testnet_factory, history):
            net = testnet_factory({SMALL})
            history.client(net)
            assert False, "boom"
    """)
    result = run(pytester, prefix)
    result.assert_outcomes(passed=1, failed=1)
    root = pytester.path / "testnet-artifacts"
    # the run index lists both; only the failed test has a folder
    assert sorted(p.name for p in root.iterdir()) == ["index.html", "index.json",
                                                       "test_inner.py__test_fails"]
    folder = root / "test_inner.py__test_fails"
    net_dirs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(net_dirs) == 1 and {"sn01.log", "sn02.log", "seed.log", "state.json"} <= {
        p.name for p in net_dirs[0].iterdir()}
    assert {"report.md", "report.json", "history.json"} <= {p.name for p in folder.iterdir()}
    report = json.loads((folder / "report.json").read_text())
    assert report["logs"]["sn01"] == str(net_dirs[0] / "sn01.log")
    # the plugin's copy is the only one: nothing accumulates in the state home
    assert not list((home / "artifacts").glob(f"{net_dirs[0].name}-*"))
    result.stdout.fnmatch_lines([
        "*session-testnet*",
        "artifacts of failed tests (node logs, check report):",
        f"  test_inner.py::test_fails: {folder}",
    ])
    assert "test_passes:" not in result.stdout.str()
    assert leftovers(home, prefix) == ([], [])


def test_logs_of_a_testnet_that_failed_to_start_are_in_the_test_artifacts(
        pytester: pytest.Pytester, home: Path, prefix: str) -> None:
    pytester.makepyfile(test_inner=f"""
        def test_up_times_out(testnet_factory):
            testnet_factory({SMALL}, timeout=0.01)   # cannot be ready that fast
    """)
    result = run(pytester, prefix)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NotReadyError*"])
    folder = pytester.path / "testnet-artifacts" / "test_inner.py__test_up_times_out"
    [saved] = list(folder.iterdir())
    assert saved.name.startswith(prefix) and (saved / "seed.log").is_file()
    assert "up failed" in (saved / "REASON.txt").read_text()
    result.stdout.fnmatch_lines([f"  test_inner.py::test_up_times_out: {folder}"])
    assert leftovers(home, prefix) == ([], [])


def test_module_testnet_saves_logs_only_for_the_tests_that_used_it(
        pytester: pytest.Pytester, home: Path, prefix: str) -> None:
    pytester.makepyfile(
        test_a_unrelated="""
            def test_fails_without_a_testnet():
                assert False
        """,
        test_b_clean="""
            def test_uses_it(testnet):
                assert testnet.nodes
        """,
        test_c_failing="""
            def test_bad(testnet):
                assert False, "uses the module testnet and fails"

            def test_good(testnet):
                assert testnet.nodes
        """,
    )
    result = run(pytester, prefix)
    result.assert_outcomes(passed=2, failed=2)
    root = pytester.path / "testnet-artifacts"
    # test_b's testnet is not saved although an earlier test (test_a) failed; test_a used no
    # testnet and no history: it has nothing to save
    assert [p.name for p in root.iterdir() if p.is_dir()] == ["test_c_failing.py__test_bad"]
    saved = [p for p in (root / "test_c_failing.py__test_bad").iterdir() if p.is_dir()]
    assert len(saved) == 1 and (saved[0] / "sn06.log").is_file()
    # the run index: the tests that used the module testnet, with its name (also the last test
    # of a module, whose teardown brings the testnet down), not the one without a testnet
    rows = {t["nodeid"]: t for t in json.loads((root / "index.json").read_text())["tests"]}
    assert {n: r["outcome"] for n, r in rows.items()} == {
        "test_b_clean.py::test_uses_it": "passed", "test_c_failing.py::test_bad": "failed",
        "test_c_failing.py::test_good": "passed"}
    assert rows["test_c_failing.py::test_good"]["testnets"][0]["name"] == saved[0].name
    assert leftovers(home, prefix) == ([], [])


@pytest.mark.parametrize("order", ["history, testnet_factory", "testnet_factory, history"])
def test_history_works_in_any_fixture_order(pytester: pytest.Pytester, home: Path, prefix: str,
                                            order: str) -> None:
    pytester.makepyfile(test_inner=f"""
        def test_leaves_a_fault_applied({order}):
            net = testnet_factory(swarms=1, swarm_size=3)
            history.faults(net).latency("sn01", 50)   # removed at teardown, while net runs
            history.client(net)

        def test_fails({order}):
            net = testnet_factory(swarms=1, swarm_size=3)
            history.client(net)
            assert False
    """)
    result = run(pytester, prefix)
    result.assert_outcomes(passed=1, failed=1, errors=0)
    folder = pytester.path / "testnet-artifacts" / "test_inner.py__test_fails"
    saved = json.loads((folder / "history.json").read_text())
    # the report was written while the testnet ran: every node (and the file server) gave its
    # observations
    assert sorted(saved["observations"]) == ["fileserver", "sn01", "sn02", "sn03"]
    assert "collect:" not in (folder / "report.md").read_text()
    assert leftovers(home, prefix) == ([], [])


def test_keep_on_failure_leaves_the_testnet_up_and_says_how_to_remove_it(
        pytester: pytest.Pytester, home: Path, prefix: str) -> None:
    pytester.makepyfile(test_inner=f"""
        def test_passes(testnet_factory):
            testnet_factory({SMALL})

        def test_fails(testnet_factory):
            testnet_factory({SMALL})
            assert False
    """)
    result = run(pytester, prefix, "--testnet-keep-on-failure")
    try:
        result.assert_outcomes(passed=1, failed=1)
        nets, pids = leftovers(home, prefix)
        assert len(nets) == 1 and pids, "the failed test's testnet is kept, the other is down"
        name = nets[0]
        env = f"SESSION_TESTNET_HOME={home} "
        result.stdout.fnmatch_lines([
            "testnets kept up (--testnet-keep-on-failure)*",
            f"  {name} (after test_inner.py::test_fails)",
            f"    inspect: {env}testnet status -n {name}",
            f"             {env}testnet logs -n {name}",
            f"    remove:  {env}testnet down -n {name}",
        ])
        # the printed command works: the kept testnet answers
        status = subprocess.run([sys.executable, "-m", "harness", "status", "-n", name, "--json"],
                                capture_output=True, text=True, timeout=60, env=os.environ.copy())
        assert status.returncode == 0, status.stderr
        assert name in status.stdout
    finally:
        for leftover in leftovers(home, prefix)[0]:
            Testnet.attach(leftover).down()
    assert leftovers(home, prefix) == ([], [])


def test_invalid_prefix_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_x(): pass")
    result = run(pytester, "Bad Prefix")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--testnet-prefix 'Bad Prefix' is invalid: use 1-12 characters*"])
