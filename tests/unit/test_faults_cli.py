"""harness.faults.cli: the fault commands made from the registry, the CLI convention (-n, -o,
--json, errors) and the edge where targets are parsed — against a testnet state whose Toxiproxy
is the in-memory fake (no node runs, so no node is pointed at a link proxy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_faults_actions import FakeNet
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import DEFAULT_REGISTRY, ParamError, Target
from harness.faults.cli import commands, fault_group
from harness.faults.families.toxics import split_link
from harness.state import StateDir

pytestmark = pytest.mark.unit

CLI = click.Group("testnet", commands={c.name: c for c in commands if c.name})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path))
    monkeypatch.delenv("SESSION_TESTNET_NAME", raising=False)
    return tmp_path


@pytest.fixture
def tp() -> Iterator[FakeToxiproxy]:
    f = FakeToxiproxy()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def testnet(home: Path, tp: FakeToxiproxy) -> str:
    """A process-backend testnet 'unit' on disk whose Toxiproxy is the fake."""
    state = FakeNet(tp.url).state
    state.name, state.backend = "unit", "process"
    for rec in state.nodes:
        tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                "upstream": f"{rec.bind_ip}:22021", "enabled": True, "toxics": {}}
    sd = StateDir("unit")
    sd.create()
    sd.save(state)
    return "unit"


def cli(*args: str) -> click.testing.Result:
    return CliRunner().invoke(CLI, list(args))


def leaf_commands(group: click.Group = CLI, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(leaf_commands(cmd, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = cmd
    return out


def options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in [*getattr(p, "opts", []),
                                            *getattr(p, "secondary_opts", [])]}


# -- the convention -------------------------------------------------------------------------------

def test_every_fault_command_follows_the_cli_convention():
    cmds = leaf_commands()
    assert {"fault latency", "fault kill", "fault clear", "fault status", "fault log",
            "partition", "heal", "churn", "schedule run", "schedule generate"} <= set(cmds)
    for path, cmd in cmds.items():
        opts = options(cmd)
        assert {"-n", "--name"} <= opts, f"{path} has no -n/--name"
        assert not opts & {"--timeline", "--out", "--save"}, f"{path}: output is -o/--output"
        if path not in ("schedule generate", "schedule from-report"):  # print the schedule file format
            assert "--json" in opts, f"{path} prints data without --json"
    for path in ("churn", "schedule run", "schedule generate", "schedule from-report"):
        assert {"-o", "--output"} <= options(cmds[path])


def test_every_registered_kind_has_its_verb_and_options():
    cmds = leaf_commands()
    for kind in DEFAULT_REGISTRY:
        path = f"fault {kind.verb}" if kind.cli_group == "fault" else kind.verb
        cmd = cmds[path]
        dests = {p.name for p in cmd.params}
        assert {f"p_{p.name}" for p in kind.params} <= dests, path
        assert ("duration" in dests) == kind.reversible, path
        assert ("target" in dests) == (kind.target != "none"), path
    assert "--bytes" in options(cmds["fault limit-data"])
    assert "--network-only" in options(cmds["fault clear"])
    assert "--from" in options(cmds["partition"])


def test_fault_log_of_an_unknown_testnet_is_an_error(home: Path):
    r = cli("fault", "log", "-n", "nonexistent")
    assert r.exit_code == 1
    assert "error: no testnet named 'nonexistent'" in r.output
    assert "no faults recorded" not in r.output


def test_fault_log_of_a_testnet_without_faults(testnet: str):
    r = cli("fault", "log", "-n", testnet)
    assert r.exit_code == 0 and r.output == "no faults recorded\n"
    r = cli("fault", "log", "-n", testnet, "--json")
    assert r.exit_code == 0 and r.output == ""


def test_unknown_testnet_is_an_error_for_fault_verbs(home: Path):
    r = cli("fault", "down", "sn01", "-n", "nope")
    assert r.exit_code == 1 and "no testnet named 'nope'" in r.output


# -- link faults: the README's command ------------------------------------------------------------

def test_readme_link_command_slows_only_that_link(testnet: str, tp: FakeToxiproxy):
    r = cli("fault", "latency", "sn02", "--ms", "500", "--link", "sn01:sn02", "-n", testnet,
            "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert (ev["action"], ev["nodes"], ev["links"]) == ("latency", ["sn01"], ["sn01->sn02"])
    assert ev["target"] == "sn01" and ev["params"]["link"] == "sn02"
    link = tp.proxies["sn01->sn02"]
    assert link["toxics"]["latency_downstream"]["attributes"] == {"latency": 500, "jitter": 0}
    assert all(not tp.proxies[n]["toxics"] for n in tp.proxies if "->" not in n)
    # the same link, written with NODE as the source or without NODE
    for args in (("sn01", "--link", "sn02"), ("--link", "sn01->sn02")):
        r = cli("fault", "latency", *args, "--ms", "300", "-n", testnet)
        assert r.exit_code == 0, r.output
        assert list(tp.proxies) == [*(f"sn{i:02d}" for i in range(1, 7)), "sn01->sn02"]
        assert link["toxics"]["latency_downstream"]["attributes"]["latency"] == 300
    log = cli("fault", "log", "-n", testnet, "--json")
    assert [json.loads(line)["links"] for line in log.output.splitlines()] == [
        ["sn01->sn02"]] * 3
    r = cli("fault", "clear", "-n", testnet)
    assert r.exit_code == 0, r.output
    assert "sn01->sn02" not in tp.proxies


@pytest.mark.parametrize("args,message", [
    (("sn03", "--link", "sn01:sn02"), "NODE sn03 is not an end of --link sn01:sn02"),
    (("--link", "sn02"), "has no source"),
    ((), "give a NODE"),
    (("sn01", "--link", "sn01:"), "write A:B or A->B"),
])
def test_bad_link_forms_are_usage_errors(testnet: str, tp: FakeToxiproxy, args: tuple[str, ...],
                                         message: str):
    r = cli("fault", "latency", *args, "--ms", "5", "-n", testnet)
    assert r.exit_code == 2 and message in r.output
    assert not [n for n in tp.proxies if "->" in n]


def test_split_link():
    assert split_link("sn01:sn02") == ("sn01", "sn02")
    assert split_link("random:1->sn02") == ("random:1", "sn02")
    assert split_link("random:2") == (None, "random:2")
    assert split_link("sn02") == (None, "sn02")
    latency = DEFAULT_REGISTRY.get("latency")
    sn01, sn02 = Target.parse("sn01"), Target.parse("sn02")
    assert latency.cli_inputs(sn02, {"link": "sn01:sn02"}) == (sn01, {"link": sn02})
    assert latency.cli_inputs(sn01, {"link": "sn01:sn02"}) == (sn01, {"link": sn02})
    with pytest.raises(ParamError):
        latency.cli_inputs(Target.parse("sn03"), {"link": "sn01:sn02"})


# -- targets and parameters at the edge -----------------------------------------------------------

def test_impossible_target_is_an_error_and_hits_nothing(testnet: str, tp: FakeToxiproxy):
    r = cli("fault", "down", "random:9", "-n", testnet)
    assert r.exit_code == 1
    assert "error: target random:9: asks for 9 nodes but the testnet has 6" in r.output
    r = cli("fault", "latency", "sn07", "--ms", "5", "-n", testnet)
    assert r.exit_code == 1 and "no node 'sn07'" in r.output
    assert all(p["enabled"] and not p["toxics"] for p in tp.proxies.values())


def test_malformed_targets_and_parameters_are_usage_errors(testnet: str):
    for args in (("fault", "down", "random:x"), ("fault", "misbehave", "sn01"),
                 ("fault", "latency", "sn01"), ("fault", "latency", "sn01", "--ms", "-5"),
                 ("partition", "sn01", "--from", "bogus:1")):
        r = cli(*args, "-n", testnet)
        assert r.exit_code == 2, (args, r.output)


def test_partition_and_heal_from_the_cli(testnet: str, tp: FakeToxiproxy):
    r = cli("partition", "sn01", "--from", "sn02,sn03", "-n", testnet, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["result"] == {"side_a": ["sn01"], "side_b": ["sn02", "sn03"]}
    assert sorted(n for n in tp.proxies if "->" in n) == [
        "sn01->sn02", "sn01->sn03", "sn02->sn01", "sn03->sn01"]
    r = cli("heal", "-n", testnet, "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)["links"]) == 4
    assert not [n for n in tp.proxies if "->" in n]


# -- schedules ------------------------------------------------------------------------------------

def test_schedule_generate_needs_a_testnet_only_when_it_uses_one(home: Path, testnet: str,
                                                                 tmp_path: Path):
    r = cli("schedule", "generate", "--seed", "7", "--duration", "20")
    assert r.exit_code == 0, r.output
    assert {s["target"] for s in json.loads(r.output)["steps"]} <= {"random:1"}
    r = cli("schedule", "generate", "-n", "nope", "--seed", "7", "--duration", "20")
    assert r.exit_code == 1 and "no testnet named 'nope'" in r.output
    r = cli("schedule", "generate", "-n", testnet, "--duration", "20", "--nodes", "sn01,sn99")
    assert r.exit_code == 2 and "sn99" in r.output
    out = tmp_path / "s.json"
    r = cli("schedule", "generate", "-n", testnet, "--duration", "20", "-o", str(out))
    assert r.exit_code == 0, r.output
    steps = json.loads(out.read_text())["steps"]
    nodes = {f"sn{i:02d}" for i in range(1, 7)}
    assert steps and all(set(s["target"].split(",")) <= nodes for s in steps if "target" in s)
    assert any(s["target"] != "random:1" for s in steps)  # the testnet's names, not roles


def test_fault_group_lists_status_and_log():
    assert {"status", "log"} <= set(fault_group.commands)
