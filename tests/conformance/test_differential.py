"""Differential conformance: the real storage server is the oracle.

One run (differential_net.py, inside a loopback-only network namespace: only ``lo``, a PID
namespace that takes every process with it) brings up a testnet of 10 real storage servers and a
testnet of our nodes (default topology) side by side, sends the same requests to a node of each
(differential_cases.py) and compares the answers (differential.py).  The table of differences
(probe, aspect, real answer, ours, verdict) is written to this test's artifacts folder
(``--testnet-artifacts``, default ./testnet-artifacts) as ``differences.md`` with the full
``differential-report.json``, and must equal the allow-list of docs/conformance.md, section
"Differences from the real server (differential run)": a difference missing there fails, and so
does a listed one that no longer occurs (the list stays true).

Skipped, with the reason, where the binary, its libraries or namespaces are missing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.pytest_plugin import artifacts_dir

from .differential import (
    HARDEN,
    Allowed,
    Difference,
    Observation,
    Symbols,
    allow_list,
    check_against,
    compare,
    normalise,
    observe,
    table,
)

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = Path(__file__).with_name("differential_net.py")
DOC = ROOT / "docs" / "conformance.md"
#: the whole run (two testnets up, every request, both down); well under the 2 minutes it may take
BUDGET_S = 120
NETWORK = [pytest.mark.integration, pytest.mark.slow]
#: what the run must cover (a probe whose name starts with each)
COVERED = ("info", "get_swarm", "store", "retrieve", "retrieve with last_hash", "retrieve page",
           "delete", "delete_all", "delete_before", "expire (extend)", "expire (shorten)",
           "get_expiries", "batch", "sequence", "ifelse", "onion (desktop)", "onion (libsession",
           "retrieve without signature", "retrieve with a bad signature", "store with a bad pubkey",
           "store at a non-member (421)", "store of 76,801 bytes", "store to namespace 40000",
           "unknown method", "bad JSON")


def _real_storage_env() -> ModuleType:
    """tests/integration/real_storage_env.py (binary, libraries, namespace; skips with reasons)."""
    if "real_storage_env" in sys.modules:
        return sys.modules["real_storage_env"]
    spec = importlib.util.spec_from_file_location("real_storage_env",
                                                  ROOT / "tests" / "integration" / "real_storage_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_storage_env"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = _real_storage_env()
    binary = env.find_binary()
    ns = env.namespace()
    work = tmp_path_factory.mktemp("differential")
    try:
        proc = subprocess.run([*ns, sys.executable, str(PAYLOAD), str(binary), str(work)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:  # unshare was killed: the PID namespace takes its children
        pytest.fail(f"the differential run did not finish in {exc.timeout}s; stderr: {exc.stderr!r}")
    path = work / "report.json"
    if not path.exists():
        pytest.fail(f"payload exited {proc.returncode} without a report; stderr:\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(path.read_text())
    assert data.get("error") is None, f"differential run failed: {data['error']}"
    return data


def _differences(report: dict[str, Any]) -> list[Difference]:
    return [Difference(**d) for d in report["differences"]]


@pytest.mark.integration
@pytest.mark.slow
def test_both_testnets_ran_side_by_side_without_a_way_out(report: dict[str, Any], record_property: Any) -> None:
    for key in ("up_real_s", "up_ours_s", "requests_s", "total_s"):
        record_property(key, report[key])
    assert report["links"] == ["lo"] and report["links_at_end"] == ["lo"]
    assert report["kinds"] == {"real": ["oxen-storage"], "ours": ["python"]}
    assert report["nodes"] == {"real": 10, "ours": 6}
    assert not report.get("down_errors"), report["down_errors"]
    assert report["total_s"] < BUDGET_S, f"the run took {report['total_s']} s (budget {BUDGET_S} s)"


@pytest.mark.integration
@pytest.mark.slow
def test_every_request_was_answered_by_both(report: dict[str, Any]) -> None:
    """No case crashed on either side, and each area of the protocol was probed."""
    assert report["crashes"] == {}, json.dumps(report["crashes"], indent=1)
    probes = report["probes"]
    for start in COVERED:
        assert any(p.startswith(start) for p in probes), f"no probe covers {start!r}"
    for name, both in probes.items():
        if not name.endswith("(case finished)"):
            assert both["real"]["status"] is not None and both["ours"]["status"] is not None, name


@pytest.mark.integration
@pytest.mark.slow
def test_every_difference_is_fixed_or_listed(report: dict[str, Any], request: pytest.FixtureRequest) -> None:
    diffs = _differences(report)
    allowed = allow_list(DOC)
    folder = artifacts_dir(request.config, request.node.nodeid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "differences.md").write_text(table(diffs, allowed))
    (folder / "differential-report.json").write_text(json.dumps(report, indent=1))
    unlisted, _ = check_against(diffs, allowed)
    assert not unlisted, (
        f"{len(unlisted)} difference(s) from the real server are neither fixed nor listed in {DOC} "
        f"(section 'Differences from the real server (differential run)'); table in {folder}:\n"
        + table(unlisted, []))


@pytest.mark.integration
@pytest.mark.slow
def test_the_allow_list_holds_no_stale_entry(report: dict[str, Any]) -> None:
    """A listed difference that no longer occurs must leave the list (e.g. after a fix is merged)."""
    _, stale = check_against(_differences(report), allow_list(DOC))
    assert not stale, "listed in docs/conformance.md but no longer observed, drop them: " + "; ".join(
        f"{a.probe} / {a.aspect} ({a.reason})" for a in stale)


# ------------------------------------------------------------------------------------------------
# the comparison itself (pure)
# ------------------------------------------------------------------------------------------------

def _syms() -> Symbols:
    syms = Symbols()
    syms.add_node("aa" * 32, "bb" * 32, "127.3.1.1")
    syms.add_node("cc" * 32, "dd" * 32, "127.3.2.1")
    syms.add_swarm(0x1234)
    syms.time("<T0>", 1_700_000_000_000)
    return syms


@pytest.mark.unit
def test_normalise_hides_per_node_values_and_keeps_semantics() -> None:
    body = {"swarm": {"aa" * 32: {"hash": "h", "already": True, "signature": "A" * 86 + "==", "t": 1},
                      "cc" * 32: {"hash": "h", "already": True, "signature": "B" * 86 + "=="}},
            "snodes": [{"pubkey_ed25519": "aa" * 32, "ip": "127.3.1.1", "port_omq": 1},
                       {"pubkey_ed25519": "cc" * 32, "ip": "127.3.2.1", "port_omq": 2}],
            "swarm_hex": "1234", "expiry": 1_700_000_000_000, "other": 1_700_000_000_001,
            "version": [2, 8, 0], "more": False, "count": 3}
    got = normalise(body, _syms())
    member = {"hash": "h", "already": True, "signature": "<signature>"}
    assert got["swarm"] == {"<member>": [{**member, "t": "<bad t 1>"}, member]}  # distinct shapes, sorted
    assert got["snodes"] == {"<each snode>": [{"pubkey_ed25519": "<snode ed25519>", "ip": "<snode ip>",
                                               "port_omq": "<port_omq>"}]}
    assert (got["swarm_hex"], got["expiry"], got["other"]) == ("<swarm id>", "<T0>", "<server time>")
    assert (got["version"], got["more"], got["count"]) == ("<version [x, y, z]>", False, 3)


@pytest.mark.unit
def test_compare_finds_status_fields_values_texts_and_facts() -> None:
    syms = _syms()
    real = observe(400, "text/plain", b"no method fly", syms)
    assert compare("p", real, observe(400, "text/plain; charset=utf-8", b"no method fly", syms)) == []
    assert [d.aspect for d in compare("p", real, observe(401, "text/plain", b"no method fly", syms))] == ["status"]
    assert compare("p", real, observe(400, "text/plain", b"No method fly", syms))[0].aspect == "body"
    a = observe(200, "application/json", json.dumps({"x": 1, "already": 1}).encode(), syms, {"ok": True})
    b = observe(200, "application/json", json.dumps({"x": 1, "already": True, "t": 5}).encode(), syms,
                {"ok": False})
    assert {(d.aspect, d.real, d.ours) for d in compare("p", a, b)} == {
        ("body.already", "1", "true"), ("body.t", "(absent)", "<bad t 5>"), ("fact: ok", "true", "false")}
    members = {"swarm": {"aa" * 32: {"k": 1}, "cc" * 32: {"k": 2}}}
    other = {"swarm": {"aa" * 32: {"k": 1}}}
    d = compare("p", observe(200, None, json.dumps(members), syms), observe(200, None, json.dumps(other), syms))
    assert [x.aspect for x in d] == ["body.swarm"], "per-member shapes compare as one unit"
    assert compare("p", Observation(None, None, "ok"), Observation(None, None, "crashed"))[0].aspect == "body"


@pytest.mark.unit
def test_allow_list_is_read_from_the_doc_and_checked_both_ways(tmp_path: Path) -> None:
    doc = tmp_path / "c.md"
    doc.write_text("# x\n## Differences from the real server (differential run)\n\n"
                   "| probe | aspect | reason |\n| --- | --- | --- |\n"
                   f"| `info` | `fact: version` | ours emulates 2.11.3 |\n| `a` | `status` | {HARDEN} |\n"
                   "\n## Next\n| `b` | `status` | not in the section |\n")
    allowed = allow_list(doc)
    assert allowed == [Allowed("info", "fact: version", "ours emulates 2.11.3"), Allowed("a", "status", HARDEN)]
    diffs = [Difference("info", "fact: version", "[2,8,0]", "[2,11,3]"), Difference("c", "body", "x", "y")]
    unlisted, stale = check_against(diffs, allowed)
    assert unlisted == [diffs[1]] and stale == [allowed[1]]
    assert "NOT LISTED" in table(diffs, allowed) and "ours emulates 2.11.3" in table(diffs, allowed)
    assert allow_list(DOC), "docs/conformance.md has the differential section"
