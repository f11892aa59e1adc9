"""`testnet suite`: how its arguments become pytest's command line, what it says about names that
are neither a family nor a scenario, about a selection that matched nothing and about missing
pytest, how it reads its timing report from the JUnit XML, and the plugin's marker rules the
suites rely on (pytest runs here only collect, or run tests that start no testnet)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.suites import cli as suite_cli
from harness.suites.cli import (
    PACKAGE,
    RunOptions,
    Scenario,
    pytest_argv,
    resolve,
    timing,
)
from harness.suites.families import FAMILIES

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
INI = Path("/tmp/x/pytest.ini")

SCENARIOS = [
    Scenario(name="test_delivery_both_ways", module="harness.suites.test_delivery",
             families=["delivery"], prop="p", backends=["process", "docker"],
             builtin_client=False),
    Scenario(name="test_size_limit", module="harness.suites.test_delivery",
             families=["delivery"], prop="p", backends=[], builtin_client=True),
    Scenario(name="test_member_killed", module="harness.suites.test_churn", families=["churn"],
             prop="p", backends=["process"], builtin_client=False),
    Scenario(name="test_skewed_node", module="harness.suites.test_clock", families=["clock"],
             prop="p", backends=["process"], builtin_client=False),
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def run_testnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# -- arguments -> pytest argv ------------------------------------------------------------------

def test_the_base_command_is_independent_of_the_current_directory():
    argv = pytest_argv(INI, RunOptions())
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    assert after(argv, "-c") == str(INI)  # our configuration, not a pytest.ini found in cwd
    assert Path(after(argv, "--rootdir")) == suite_cli.package_root()
    assert (Path(after(argv, "--rootdir")) / "harness" / "suites" / "cli.py").is_file()
    assert Path(after(argv, "--confcutdir")) == suite_cli.suites_dir()
    assert "no:cacheprovider" in argv
    assert argv[argv.index("--pyargs") + 1] == PACKAGE and "-m" not in argv[3:]
    assert "-n" not in argv and "--testnet-backend" not in argv
    assert Path(after(argv, "--testnet-artifacts")).is_absolute()
    assert after(argv, "--testnet-reports") == "failed"


def test_families_are_ored_markers():
    argv = pytest_argv(INI, RunOptions(selection=("delivery", "churn")))[3:]
    assert after(argv, "-m") == "delivery or churn"
    assert argv[argv.index("--pyargs") + 1:argv.index("-m")] == [PACKAGE]


def test_options_map_to_the_plugin_options_and_xdist(tmp_path):
    opts = RunOptions(selection=("clock",), backend="docker", client="my-adapter --x 1",
                      workers=2, seed="42", artifacts=tmp_path / "a", reports="all",
                      extra=("-x", "-k", "not slow"))
    argv = pytest_argv(INI, opts, junit=tmp_path / "j.xml")
    assert after(argv, "--testnet-backend") == "docker"
    assert after(argv, "--testnet-client") == "my-adapter --x 1"  # one argument, as given
    assert after(argv, "--testnet-seed") == "42"
    assert argv[argv.index("-n"):argv.index("-n") + 4] == ["-n", "2", "--dist", "loadscope"]
    assert after(argv, "--testnet-artifacts") == str(tmp_path / "a")
    assert after(argv, "--testnet-reports") == "all"
    assert f"--junitxml={tmp_path / 'j.xml'}" in argv
    assert argv[-3:] == ["-x", "-k", "not slow"]  # after '--', untouched, last


def test_scenario_names_select_by_node_id_and_families_add_theirs():
    argv = pytest_argv(INI, RunOptions(selection=("test_size_limit", "clock")), SCENARIOS)
    assert "-m" not in argv[3:]
    start = argv.index("--pyargs") + 1
    assert argv[start:start + 2] == ["harness.suites.test_delivery::test_size_limit",
                                     "harness.suites.test_clock::test_skewed_node"]
    with pytest.raises(ValueError):  # names need the collected scenarios
        pytest_argv(INI, RunOptions(selection=("test_size_limit",)))


@pytest.mark.parametrize("name, expected", [
    ("test_delivery_both_ways", "harness.suites.test_delivery::test_delivery_both_ways"),
    ("delivery_both_ways", "harness.suites.test_delivery::test_delivery_both_ways"),
    ("test_delivery_both_ways[docker]",
     "harness.suites.test_delivery::test_delivery_both_ways[docker]"),
    # the replay line of a failed scenario (explain.py), from a checkout or a wheel
    ("harness/suites/test_churn.py::test_member_killed[process]",
     "harness.suites.test_churn::test_member_killed[process]"),
    ("test_churn.py::test_member_killed", "harness.suites.test_churn::test_member_killed"),
    ("harness.suites.test_churn::test_member_killed",
     "harness.suites.test_churn::test_member_killed"),
])
def test_scenario_names_and_node_ids_resolve(name, expected):
    assert resolve([name], SCENARIOS) == [expected]


@pytest.mark.parametrize("name", ["test_nope", "harness/suites/test_clock.py::test_member_killed",
                                  "delivry"])
def test_an_unknown_name_lists_the_valid_ones(name):
    import click

    with pytest.raises(click.UsageError) as e:
        resolve([name], SCENARIOS)
    msg = e.value.format_message()
    assert f"no family or scenario named {name!r}" in msg
    assert "families: " + ", ".join(FAMILIES) in msg
    assert "test_delivery_both_ways, test_member_killed, test_size_limit" in msg


def test_pytest_args_go_after_the_double_dash(monkeypatch):
    seen: list[RunOptions] = []
    monkeypatch.setattr(suite_cli, "run", lambda opts: seen.append(opts) or 3)
    r = CliRunner().invoke(main, ["suite", "run", "delivery", "--seed", "5", "-n", "2", "--",
                                  "-x", "-k", "delivery", "--seed"])
    assert r.exit_code == 3, r.output  # pytest's exit status
    (opts,) = seen
    assert opts.selection == ("delivery",) and opts.seed == "5" and opts.workers == 2
    assert opts.extra == ("-x", "-k", "delivery", "--seed")
    assert opts.artifacts == Path("testnet-artifacts") and opts.reports == "failed"


def test_usage_errors_exit_2():
    for args in (["suite", "run", "-n", "0"], ["suite", "run", "--backend", "vm"],
                 ["suite", "run", "--reports", "some"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)


# -- real runs (pytest collects; nothing starts a testnet) -------------------------------------

def test_an_unknown_name_exits_2_listing_families_and_scenarios(tmp_path):
    r = run_testnet("suite", "run", "delivery", "no_such_thing", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "error: no family or scenario named 'no_such_thing'; families: delivery, churn" in r.stderr
    assert "testnet suite list" in r.stderr
    assert not (tmp_path / "testnet-artifacts").exists()  # nothing ran


def test_a_selection_that_matches_nothing_exits_5_saying_which(tmp_path):
    # a project's own pytest configuration in the current directory does not apply
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    r = run_testnet("suite", "run", "delivery", "--", "-k", "no_scenario_has_this_name",
                cwd=tmp_path)
    assert r.returncode == 5, r.stdout + r.stderr
    assert ("error: no scenario matched delivery (with pytest arguments -k "
            "no_scenario_has_this_name): nothing was collected") in r.stderr


def test_list_json_agrees_with_pytest_collection(tmp_path):
    r = run_testnet("suite", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert Path(listed["package_dir"]) == suite_cli.suites_dir()
    assert [f["name"] for f in listed["families"]] == list(FAMILIES)
    assert [f["property"] for f in listed["families"]] == list(FAMILIES.values())
    for f in listed["families"]:
        assert f["scenarios"] == sum(f["name"] in s["families"] for s in listed["scenarios"])
    # what plain pytest collects from the package, from a directory without our pyproject
    co = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q",
                         "--pyargs", PACKAGE], cwd=tmp_path, env=_env(), capture_output=True,
                        text=True, timeout=120)
    assert co.returncode in (0, 5), co.stdout + co.stderr
    collected = {line.split("::")[1].split("[")[0] for line in co.stdout.splitlines()
                 if "::" in line}
    assert {s["name"] for s in listed["scenarios"]} == collected
    for s in listed["scenarios"]:
        assert set(s) == {"name", "family", "families", "module", "property", "backends",
                          "builtin_client", "nodeids", "node_capabilities"}
        assert s["family"] in FAMILIES and s["property"] and s["nodeids"]
        assert all(n.startswith("harness/suites/test_") for n in s["nodeids"])
        assert re.fullmatch(r"harness\.suites\.test_\w+", s["module"])
    needs = {s["name"]: s["node_capabilities"] for s in listed["scenarios"]}
    assert needs["test_sybil_nodes_that_join_and_drop"] == ["behaviour", "join"]
    assert needs["test_metadata_privacy"] == ["observations"] and needs["test_size_limit"] == []


def test_the_configuration_registers_markers_and_is_strict():
    text = suite_cli.ini_text()
    assert text.startswith("[pytest]\n") and "addopts = -ra --strict-markers" in text
    for marker in ("integration", "e2e", "slow", "unit"):
        assert f"    {marker}: " in text


def test_the_plugin_registers_the_scenario_markers(pytester):
    """Plain ``pytest --strict-markers`` (no ini of ours) knows the families and tiers, and a
    test made for other backends than ``--testnet-backend`` is skipped, saying so."""
    pytester.makepyfile(test_m="""
        import pytest
        pytestmark = [pytest.mark.delivery, pytest.mark.integration, pytest.mark.builtin_client]

        @pytest.mark.backends("process")
        def test_process_only(testnet_backend):
            assert False, "must not run on docker"

        @pytest.mark.backends("process", "docker")
        @pytest.mark.e2e
        def test_both(testnet_backend):
            assert testnet_backend == "docker"
    """)
    res = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--strict-markers", "-rs",
                             "--testnet-backend", "docker")
    res.assert_outcomes(passed=1, skipped=1)
    res.stdout.fnmatch_lines(["*runs on the process backend(s) only, not docker*"])


# -- the timing report -------------------------------------------------------------------------

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1"
 tests="4" time="61.500" timestamp="2026-12-07T00:00:00" hostname="h">
<testcase classname="harness.suites.test_delivery" name="test_delivery_both_ways[process]"
 time="12.250" />
<testcase classname="harness.suites.test_churn" name="test_member_killed" time="40.125">
<failure message="AssertionError: (['sn03'], ['sn06'])">testnet = &lt;Testnet&gt;

    def test_member_killed(testnet):
&gt;       assert len(new) == 1, (first, after)
E       AssertionError: (['sn03'], ['sn06'])
E       assert (0 == 1)

harness/suites/test_churn.py:180: AssertionError
-------- scenario --------
seed: 11f1</failure></testcase>
<testcase classname="harness.suites.test_clock" name="test_skewed_node" time="0.001">
<skipped type="pytest.skip" message="needs the built-in client">why</skipped></testcase>
<testcase classname="harness.suites.test_clock.TestSkew" name="test_in_class" time="3.5" />
</testsuite></testsuites>
"""


def test_timing_reads_every_scenario_from_the_junit_xml(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text(JUNIT)
    opts = RunOptions(selection=("delivery",), workers=2, backend="process", seed="7")
    report = timing(junit, 63.2, opts, 1)
    assert report["durations"] == [
        {"nodeid": "harness/suites/test_churn.py::test_member_killed", "outcome": "failed",
         "seconds": 40.125},
        {"nodeid": "harness/suites/test_delivery.py::test_delivery_both_ways[process]",
         "outcome": "passed", "seconds": 12.25},
        {"nodeid": "harness/suites/test_clock.py::TestSkew::test_in_class", "outcome": "passed",
         "seconds": 3.5},
        {"nodeid": "harness/suites/test_clock.py::test_skewed_node", "outcome": "skipped",
         "seconds": 0.001},
    ]
    assert report["wall_seconds"] == 63.2 and report["pytest_seconds"] == 61.5
    assert report["sum_seconds"] == 55.876 and report["scenarios"] == 4
    assert (report["workers"], report["backend"], report["seed"], report["exit_code"]) == \
        (2, "process", "7", 1)
    json.dumps(report)  # what suite-timing.json holds


def test_timing_is_printed_slowest_first(tmp_path, capsys):
    junit = tmp_path / "j.xml"
    junit.write_text(JUNIT)
    suite_cli.print_timing(timing(junit, 63.2, RunOptions(workers=2), 1))
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["40.1s", "failed", "harness/suites/test_churn.py::test_member_killed"]
    total = out.index("total: 63.2s wall with -n 2 for 4 scenarios (sum of their durations "
                      "55.9s)")
    # the failures close the output (a CI log's tail), each with its E lines and where it raised
    assert out[total + 1:] == [
        "", "1 scenario failed:",
        "  FAILED harness/suites/test_churn.py::test_member_killed",
        "      AssertionError: (['sn03'], ['sn06'])",
        "      assert (0 == 1)",
        "      at harness/suites/test_churn.py:180: AssertionError",
    ]


def test_timing_keeps_each_failure_for_the_report(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text(JUNIT)
    (f,) = timing(junit, 1.0, RunOptions(), 1)["failures"]
    assert f == {"nodeid": "harness/suites/test_churn.py::test_member_killed", "outcome": "failed",
                 "message": "AssertionError: (['sn03'], ['sn06'])",
                 "lines": ["AssertionError: (['sn03'], ['sn06'])", "assert (0 == 1)"],
                 "raised_at": "harness/suites/test_churn.py:180: AssertionError"}


# -- missing pytest / pytest-xdist --------------------------------------------------------------

@pytest.mark.parametrize("missing, args, says", [
    ("pytest", ["suite", "list"], "the scenario suites run with pytest, which is not installed"),
    ("pytest", ["suite", "run", "delivery"], "which is not installed"),
    ("xdist", ["suite", "run", "-n", "2"], "-n 2 runs scenarios in parallel with pytest-xdist"),
])
def test_missing_pytest_or_xdist_says_how_to_install(monkeypatch, missing, args, says):
    real = suite_cli._installed
    monkeypatch.setattr(suite_cli, "_installed", lambda m: m != missing and real(m))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and says in r.output
    assert 'pip install "session-testnet[test]"' in r.output


# -- the README and CI say the same ------------------------------------------------------------

def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Test command", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [c.strip() for c in block.splitlines() if c.strip()]
    assert any(c.startswith("testnet suite run ") for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    for c in commands:
        assert c in ci, f".ci/run does not run the README's {c!r}"
        assert c in workflow, f"the GitHub workflow does not run the README's {c!r}"
