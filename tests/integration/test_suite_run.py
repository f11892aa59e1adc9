"""`testnet suite run` for real, as a CI pipeline runs it: one cheap packaged scenario (the
delivery family's ``test_delivery_both_ways``, on the process backend) through the command,
from a directory outside the checkout — its exit status, the JUnit XML, the timing report — and
the same scenario made to fail (a client under test that does not exist), whose output names the
property, the seed and the replay command that the command accepts."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "test_delivery_both_ways"
NODEID = f"harness/suites/test_delivery.py::{SCENARIO}"


def run_testnet(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    # the inner pytest is a run of its own: nothing of this outer pytest session leaks into it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("SESSION_TESTNET_NAME", None)
    res = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    print(res.stdout[-4000:], res.stderr[-2000:])
    return res


@pytest.fixture(scope="module")
def prop(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The scenario's property, as `testnet suite list --json` gives it."""
    listed = run_testnet("suite", "list", "--json", cwd=tmp_path_factory.mktemp("list"))
    assert listed.returncode == 0, listed.stderr
    (s,) = [s for s in json.loads(listed.stdout)["scenarios"] if s["name"] == SCENARIO]
    assert s["family"] == "delivery" and not s["builtin_client"]
    return str(s["property"])


def test_a_passing_scenario_exit_status_junit_and_timing(tmp_path: Path) -> None:
    res = run_testnet("suite", "run", SCENARIO, "--backend", "process", "-n", "1",
                      "--junit", "out/junit.xml", "--artifacts", "arts", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    # JUnit: the one scenario, passed, with its duration
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    cases = list(root.iter("testcase"))
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("harness.suites.test_delivery", SCENARIO)]
    assert not [e for c in cases for e in c if e.tag in ("failure", "error", "skipped")]
    # the timing report: printed and in the artifacts folder, from that JUnit XML
    timing = json.loads((tmp_path / "arts" / "suite-timing.json").read_text())
    (d,) = timing["durations"]
    assert d["nodeid"] == NODEID and d["outcome"] == "passed"
    assert d["seconds"] == pytest.approx(float(cases[0].get("time") or 0), abs=0.01)
    assert d["seconds"] > 0.5  # a testnet came up
    assert timing["wall_seconds"] >= timing["pytest_seconds"] >= d["seconds"]
    assert (timing["scenarios"], timing["workers"], timing["backend"], timing["exit_code"]) == \
        (1, 1, "process", 0)
    assert Path(timing["junit"]) == tmp_path / "out" / "junit.xml"
    assert "scenario durations" in res.stdout and f"passed   {NODEID}" in res.stdout
    assert "total: " in res.stdout and "wall with -n 1 for 1 scenario (" in res.stdout
    assert (tmp_path / "arts" / "index.json").exists()  # the plugin's run index, same folder
    assert "1 passed" in res.stdout and "rootdir: " in res.stdout


def test_a_failing_scenario_names_property_seed_and_replay(tmp_path: Path, prop: str) -> None:
    """A client under test that cannot start fails the scenario (in its call, after its testnet
    is up): the run exits 1 and says what the scenario checks, its seed and how to replay it."""
    missing = str(tmp_path / "no-such-adapter")
    res = run_testnet("suite", "run", "delivery", "--backend", "process", "--seed", "4242",
                      "--client", missing, "--junit", "junit.xml", "--", "-k", SCENARIO,
                      cwd=tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr
    out = res.stdout
    assert f"property: {prop}" in out
    assert "seed: 4242" in out
    replay = (f"replay: testnet suite run {shlex.quote(NODEID)} --seed 4242 --backend process "
              f"--client {missing}")
    assert replay in out
    assert "report: " in out and "FAILED" in out
    root = ET.parse(tmp_path / "junit.xml").getroot()
    (case,) = root.iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    # the explanation is part of the failure text (what CI pages show of a JUnit failure)
    assert f"property: {prop}" in (failure.text or "") and "seed: 4242" in (failure.text or "")
    timing = json.loads((tmp_path / "testnet-artifacts" / "suite-timing.json").read_text())
    assert [(d["nodeid"], d["outcome"]) for d in timing["durations"]] == [(NODEID, "failed")]
    assert timing["exit_code"] == 1 and timing["seed"] == "4242"
    assert f"failed   {NODEID}" in out
    # the replay line is a valid selection of the command (collected, not run again)
    again = run_testnet(*replay.split(": ", 1)[1].replace("'", "").split()[1:],
                        "--", "--collect-only", "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{NODEID}" in again.stdout and "1 test collected" in again.stdout


def test_the_delivery_family_passes_with_an_independent_client_under_test(tmp_path: Path) -> None:
    """Issue 10's "a second adapter that is not the built-in client passes the delivery
    family": examples/adapters/minimal_client.py (written against the wire protocol, imports
    nothing of harness/ or nodes/) is the client of every delivery scenario that accepts one;
    the rest are skipped saying they need the built-in client."""
    client = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'examples/adapters/minimal_client.py'))}"
    res = run_testnet("suite", "run", "delivery", "--backend", "process", "--client", client,
                      "--junit", "junit.xml", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    cases = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    ran = [c.get("name") for c in cases if not [e for e in c if e.tag == "skipped"]]
    skipped = {c.get("name"): c.find("skipped") for c in cases if c.find("skipped") is not None}
    assert len(ran) >= 6 and "test_delivery_both_ways" in ran and "test_fan_in_twenty_senders" in ran
    assert not [e for c in cases for e in c if e.tag in ("failure", "error")]
    for node in skipped.values():
        assert "needs the built-in client" in (node.get("message") or "")
