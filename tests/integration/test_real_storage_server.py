"""The production storage server (oxen-storage 2.8.0) joins a testnet through our seed as its oxend.

Everything runs inside a loopback-only network namespace (``unshare --net``, only ``lo``): the
real server contacts hard-coded public seed nodes when it sees fewer than 10 nodes, and nothing may
leave the machine.  The namespace also has its own PID namespace, so whatever the payload started
dies with it, even if the test is interrupted.

The binary: ``$SESSION_TESTNET_OXEN_STORAGE``, else ``../shared/real-storage-server/bin/oxen-storage``
next to the checkout.  Skipped, with the reason, where the binary, its run-time libraries or the
namespace are unavailable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_storage_env import ROOT, find_binary, namespace

from nodes.protocol.keys import Identity, derive_seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYLOAD = Path(__file__).with_name("real_storage_net.py")
NODES = 10
TESTNET_SEED = "real-storage-itest"  # as in real_storage_net.py


def test_namespace_is_loopback_only() -> None:
    """What the real servers run in: only `lo`, and no route to any other address."""
    ns = namespace()
    script = ("import socket, subprocess\n"
              "subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n"
              "print(subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout, end='')\n"
              "s = socket.socket()\n"
              "try:\n"
              "    s.connect(('192.0.2.1', 443))\n"  # TEST-NET-1: documentation only, never routed
              "    print('CONNECTED')\n"
              "except OSError as e:\n"
              "    print('ERRNO', e.errno)\n")
    out = subprocess.run([*ns, sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    links = [line.split(":")[1].strip() for line in out if re.match(r"^\d+:", line)]
    assert links == ["lo"], f"the namespace must hold only lo, got {out}"
    assert out[-1] == "ERRNO 101", f"a non-loopback address must be unreachable (ENETUNREACH), got {out[-1]}"


def run_payload(work: Path, mode: str) -> dict[str, Any]:
    """Run real_storage_net.py in the namespace; its report.json holds what it saw."""
    binary = find_binary()
    ns = namespace()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REAL_NODES": str(NODES)}
    try:
        proc = subprocess.run([*ns, sys.executable, str(PAYLOAD), str(binary), str(work), mode], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired as exc:  # unshare was killed: the PID namespace takes its children
        pytest.fail(f"the real-server testnet did not finish in {exc.timeout}s; stderr: {exc.stderr!r}")
    path = work / "report.json"
    if not path.exists():
        pytest.fail(f"payload exited {proc.returncode} without a report; stderr:\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(path.read_text())
    assert data.get("error") is None, f"payload failed: {data['error']}; seed log tail: {data.get('seed_log_tail')}"
    return data


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("real-storage-full")
    try:
        yield run_payload(work, "full")
    finally:  # the report carries the log lines that matter; data dirs go
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def guard_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("real-storage-guard")
    try:
        yield run_payload(work, "guard")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def node_pubkeys() -> dict[str, str]:
    return {f"sn{i:02d}": Identity.from_seed(derive_seed(TESTNET_SEED, "node", f"sn{i:02d}")).ed25519_hex
            for i in range(1, NODES + 1)}


def test_all_real_servers_become_active(report: dict[str, Any], record_property: Any) -> None:
    assert report["links"] == ["lo"]
    active = report["active_after_s"]
    assert sorted(active) == sorted(node_pubkeys()), (
        f"not active: {sorted(set(node_pubkeys()) - set(active))}; logs: {report['logs']}")
    record_property("bring_up_s", report["bring_up_s"])
    for name, lines in report["logs"].items():
        text = "\n".join(lines)
        assert f"Initialized from oxend with {NODES}/{NODES}" in text, f"{name}: {lines}"
        # with >= 10 nodes in its first list the server never falls back to public bootstrap nodes
        assert "bootstrap node" not in text, f"{name} tried public bootstrap nodes: {lines}"
        assert "New hardfork: 19.4" in text, f"{name}: {lines}"
    assert all(code == 0 for code in report["exit_codes"].values()), report["exit_codes"]


def test_info_reports_the_seed_hardfork(report: dict[str, Any]) -> None:
    for name, (status, body) in report["info"].items():
        assert status == 200, f"{name}: info answered {status} {body}"
        assert body["hf"] == [19, 4], f"{name}: {body}"
        assert body["version"][:2] == [2, 8], f"{name}: {body}"


def test_keys_and_listing_come_from_the_seed(report: dict[str, Any]) -> None:
    """The servers run with the keys the seed derived for them, and the seed lists them as OxenMQ nodes."""
    listed = {n["pubkey_ed25519"]: n for n in report["seed_state"]["nodes"]}
    assert set(listed) == set(node_pubkeys().values())
    for node in listed.values():
        assert node["liveness"] == "oxenmq"
        assert node["version"] == [2, 8, 0], "the listed version comes from the node's own ping"
        assert node["status"] == "active"


def test_swarm_answers_match_the_seed(report: dict[str, Any]) -> None:
    members = set(report["account"]["members"])
    for name, (status, body) in report["get_swarm"].items():
        assert status == 200, f"{name}: get_swarm answered {status} {body}"
        got = {s["pubkey_ed25519"] for s in body["snodes"]}
        assert got == members, f"{name} puts the account in {got}, the seed in {members}"


def test_store_on_one_member_retrieve_from_another(report: dict[str, Any]) -> None:
    status, body = report["store"]
    assert status == 200, body
    assert set(body["swarm"]) == set(report["account"]["members"]), "every swarm member must store"
    retrieve = report["retrieve"]
    assert retrieve["from"] != retrieve["stored_on"]
    assert retrieve["status"] == 200 and retrieve["found"], retrieve


def test_seed_recorded_pings_and_peer_reports(report: dict[str, Any]) -> None:
    keys = node_pubkeys()
    nodes = {n["name"]: n for n in report["oxend"]["nodes"]}
    assert set(nodes) == set(keys)
    for name, node in nodes.items():
        ping = node["pings"]
        assert ping["count"] >= 1, f"{name} never pinged: {node}"
        assert ping["last"]["pubkey_ed25519"] == keys[name]
        assert node["subscribed"] == 1, f"{name} is not subscribed to blocks: {node}"
        assert node["commands"]["admin.get_service_node_privkey"] >= 1
        # get_service_nodes after connecting and after every notify.block: more than one means pushes work
        assert node["commands"]["rpc.get_service_nodes"] >= 2, node["commands"]
        sent = node["peer_reports_sent"]
        assert sent["passed"] >= 1, f"{name} reported no passed reachability test: {node}"
        assert set(sent["by_subject"]) <= set(keys.values()) - {keys[name]}


def test_seed_holds_a_short_first_list_so_no_server_asks_public_nodes(guard_report: dict[str, Any]) -> None:
    """3 real servers and nothing else listed: the seed holds their first node list (the server
    would ask public bootstrap nodes); once 7 of our nodes register, all 3 go active."""
    held = guard_report["held_phase"]
    assert held["active"] == [], f"no server may be active on a held list: {held['active']}"
    assert all(n["first_list_held"] >= 1 for n in held["oxend"]["nodes"]), held["oxend"]["nodes"]
    assert sorted(guard_report["active_after_s"]) == ["sn01", "sn02", "sn03"], guard_report["logs"]
    for name, lines in guard_report["logs"].items():
        text = "\n".join(lines)
        assert "bootstrap node" not in text, f"{name} tried public bootstrap nodes: {lines}"
        assert "Initialized from oxend with 10/10" in text, f"{name}: {lines}"
