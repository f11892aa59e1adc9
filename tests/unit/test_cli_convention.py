"""The CLI convention (error style, exit codes, unknown testnets) and log rendering/merging."""

from __future__ import annotations

import datetime
import json

import click
import pytest
from click.testing import CliRunner

from harness.backends.follow_file import FollowedFile
from harness.cli import main
from harness.cliutil import CliGroup, friendly_errors
from harness.logs import LogLine, Renderer, _timed, render_record
from harness.state import StateError

pytestmark = pytest.mark.unit


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path))
    monkeypatch.delenv("SESSION_TESTNET_NAME", raising=False)
    return tmp_path


def test_failures_say_error_and_exit_1_usage_errors_exit_2(home):
    @click.group(cls=CliGroup)
    def grp() -> None: ...

    @grp.command()
    @friendly_errors
    def broken() -> None:
        raise StateError("the state is bad; do this")

    @grp.command()
    def other() -> None:
        raise click.ClickException("raised by another module")

    r = CliRunner().invoke(grp, ["broken"])
    assert r.exit_code == 1 and r.output == "error: the state is bad; do this\n"
    r = CliRunner().invoke(grp, ["other"])
    assert r.exit_code == 1 and r.output == "error: raised by another module\n"
    r = CliRunner().invoke(grp, ["broken", "--nope"])
    assert r.exit_code == 2 and "error: No such option '--nope'" in r.output
    assert "Usage:" in r.output and "Error:" not in r.output
    assert CliRunner().invoke(grp, ["--help"]).exit_code == 0


@pytest.mark.parametrize("args", [["down"], ["status", "-n", "default"], ["logs"], ["logs", "-f"],
                                  ["down", "-n", "nope"]])
def test_unknown_testnet_is_an_error_naming_what_to_do(home, args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1
    assert r.output.startswith("error: no testnet named ")
    assert "no testnet is running" in r.output and "testnet up -n" in r.output


def test_status_json_is_a_list_even_with_no_testnet(home):
    r = CliRunner().invoke(main, ["status", "--json"])
    assert r.exit_code == 0 and json.loads(r.output) == []


def test_name_comes_from_the_environment(home, monkeypatch):
    monkeypatch.setenv("SESSION_TESTNET_NAME", "from-env")
    r = CliRunner().invoke(main, ["logs"])
    assert r.exit_code == 1 and "no testnet named 'from-env'" in r.output


def test_account_new_human_json_and_output_file(home, tmp_path):
    r = CliRunner().invoke(main, ["account", "new"])
    assert r.exit_code == 0
    sid, seed = (line.split()[1] for line in r.output.splitlines())
    assert sid.startswith("05") and len(sid) == 66 and len(seed) == 64
    r = CliRunner().invoke(main, ["account", "new", "--json"])
    assert set(json.loads(r.output)) == {"session_id", "seed"}
    out = tmp_path / "a.json"
    r = CliRunner().invoke(main, ["account", "new", "--output", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text())["session_id"] in r.output
    r = CliRunner().invoke(main, ["account", "new", "--out", str(out)])
    assert r.exit_code == 2  # one spelling: -o/--output


def test_render_record_is_readable_and_keeps_other_lines():
    ts = 1_700_000_000.25
    line = json.dumps({"ts": ts, "level": "warn", "node": "sn01", "event": "push_failed",
                       "peer": "ab12", "error": "timed out", "n": 3, "swarms": {"0": 3}})
    when = datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S.250")
    assert render_record(line) == (f'{when} warn  push_failed peer=ab12 error="timed out" n=3 '
                                   'swarms={"0":3}')
    assert render_record("Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert render_record("{not json") == "{not json"


def test_renderer_prefixes_every_line_with_its_padded_source():
    r = Renderer(["seed", "toxiproxy", "sn01"])
    rec = json.dumps({"ts": 1.0, "level": "info", "node": "sn01", "event": "ready"})
    assert r(LogLine("sn01", rec)).startswith("sn01      | ")
    assert r(LogLine("sn01", rec)).endswith(" info  ready")
    assert Renderer(["sn01"], raw=True)(LogLine("sn01", rec)) == f"sn01 | {rec}"


def test_lines_without_a_timestamp_sort_with_the_record_before_them():
    a = [json.dumps({"ts": 1.0, "event": "x"}), "traceback line", json.dumps({"ts": 3.0, "event": "y"})]
    b = [json.dumps({"ts": 2.0, "event": "z"})]
    import heapq

    merged = [line.text for _, _, line in heapq.merge(_timed("a", a), _timed("b", b),
                                                       key=lambda x: x[0])]
    assert merged == [a[0], a[1], b[0], a[2]]


def test_followed_file_reads_complete_lines_and_survives_replacement(tmp_path):
    p = tmp_path / "n.log"
    f = FollowedFile(p)
    assert f.read_lines() == []  # not there yet
    p.write_text("one\ntw")
    assert f.read_lines() == ["one"]
    with p.open("a") as out:
        out.write("o\nthree\n")
    assert f.read_lines() == ["two", "three"]
    p.unlink()
    p.write_text("new file\n")  # replaced (e.g. rotated): read from its start
    assert f.read_lines() == ["new file"]
    p.write_text("")  # truncated (noticed while it is shorter than what was read)
    assert f.read_lines() == []
    with p.open("a") as out:
        out.write("after truncation\n")
    assert f.read_lines() == ["after truncation"]
    f.close()
