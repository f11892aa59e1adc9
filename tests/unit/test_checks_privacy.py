"""Privacy checker on synthetic observations."""

from __future__ import annotations

import pytest

from harness.checks import History, Verdict, privacy
from harness.checks.synth import T0, attempt, directory, observe, onion_obs, send

pytestmark = pytest.mark.unit

A, B = "05" + "aa" * 32, "05" + "bb" * 32
CLIENT = "10.0.0.9"


def base(path=("sn01", "sn03", "sn05"), dest="sn02", **obs_kw) -> History:
    nodes = directory()
    h = History(nodes=nodes, client_addresses=[CLIENT])
    a = attempt(nodes, 1, list(path), dest, at=T0)
    h.records.append(send("send-1", A, B, "H", [a]))
    observe(h, a, B, **obs_kw)
    # an authenticated node->node request: its source is a node-side address
    h.observations.setdefault("sn04", []).append(
        onion_obs(99, T0, hop_=None, channel="swarm", accounts=[B], remote="127.0.0.1"))
    return h


def test_clean_history_passes():
    r = privacy(base())
    assert r.ok and r.verdict is Verdict.OK, r
    assert r.evidence["verified"] == 1 and r.evidence["checked"] == 1


def test_guard_seeing_an_account_fails():
    r = privacy(base(guard_accounts=[B]))
    assert r.verdict is Verdict.FAILED
    assert any("guard sn01" in v or "sn01 as a relay" in v for v in r.evidence["violations"])


def test_destination_seeing_client_address_fails():
    r = privacy(base(dest_remote=CLIENT))
    assert not r.ok and r.evidence["op_ids"] == ["send-1"]
    assert any("destination sn02 saw the client's address 10.0.0.9" in v
               for v in r.evidence["violations"])


def test_path_rules():
    # two hops in one /24 and the destination on its own path
    nodes = directory()
    nodes["sn03"]["public_ip"] = "127.1.1.7"
    h = History(nodes=nodes)
    h.records.append(send("s", A, B, "H", [attempt(nodes, 1, ["sn01", "sn03", "sn02"], "sn02", at=T0)]))
    r = privacy(h, require_evidence=False)
    texts = " ".join(r.evidence["violations"])
    assert not r.ok and "share a /24" in texts and "twice" not in texts
    assert "destination sn02" in texts and "on its own path" in texts


def test_missing_evidence_is_unknown_unless_relaxed():
    h = base()
    h.observations.pop("sn02")  # the destination's buffer was not collected
    r = privacy(h)
    assert r.verdict is Verdict.UNKNOWN and not r.ok
    assert "1 onion requests without evidence" in r.details[0]
    r = privacy(h, require_evidence=False)
    assert r.ok and r.evidence["unverified"]


def test_no_onion_request_or_no_observations_is_unknown():
    r = privacy(History(nodes=directory()))
    assert r.verdict is Verdict.UNKNOWN and "no successful onion request" in r.details[0]
    h = base()
    h.observations.clear()  # never collected
    r = privacy(h, require_evidence=False)
    assert r.verdict is Verdict.UNKNOWN
    assert any("no node observations were collected" in d for d in r.details)


def test_direct_storage_rpc_naming_an_account_fails():
    h = base()
    h.observations["sn06"] = [onion_obs(1, T0 + 0.01, hop_=None, channel="storage_rpc",
                                        method="retrieve", accounts=[B])]
    r = privacy(h)
    assert not r.ok and any("direct storage RPC retrieve" in v for v in r.evidence["violations"])


# -- observed_privacy: the nodes' observations alone ----------------------------------------------

def observed() -> History:
    """A history with no client records (a client under test): Bob's ID reached as a send's
    recipient; the observations of one onion store sn01 -> sn03 -> sn05 => sn02."""
    from harness.checks.synth import onion_obs as o
    nodes = directory()
    h = History(nodes=nodes, sent={"op-1": {"to": B, "body": "x"}})
    ed = {n: v["ed25519"] for n, v in nodes.items()}
    h.observations = {
        "sn01": [o(1, T0, hop_="relay", next_hop=ed["sn03"], remote=CLIENT)],
        "sn03": [o(1, T0, hop_="relay", next_hop=ed["sn05"])],
        "sn05": [o(1, T0, hop_="relay", next_hop=ed["sn02"])],
        "sn02": [o(1, T0 + 0.1, hop_="destination", method="store", accounts=[B])],
        "sn04": [o(2, T0 + 0.2, hop_=None, channel="swarm", accounts=[B])],
    }
    return h


def test_observed_privacy_from_observations_only():
    from harness.checks.privacy import observed_privacy
    r = observed_privacy(observed())
    assert r.verdict is Verdict.OK, r
    assert (r.evidence["destinations"], r.evidence["relayed"],
            r.evidence["relay_observations"]) == (1, 1, 3)
    h = observed()
    h.observations["sn03"][0]["accounts"] = [B]  # a relay that read the request
    assert "as a relay" in observed_privacy(h).details[0]
    h = observed()
    h.observations["sn06"] = [{"seq": 1, "ts": T0, "remote_addr": CLIENT, "channel": "storage_rpc",
                               "method": "retrieve", "accounts": [B], "status": 200}]
    r = observed_privacy(h)
    assert r.verdict is Verdict.FAILED and "outside an onion request" in r.details[0]
    h = observed()
    h.observations["sn05"] = []  # nobody relayed to the destination: the client came itself
    r = observed_privacy(h)
    assert r.verdict is Verdict.FAILED and "no node relayed a request to it" in r.details[0]
    assert observed_privacy(History()).verdict is Verdict.UNKNOWN


def test_nodes_without_an_admin_interface_make_the_check_unknown_not_ok():
    """Real storage servers have no observations: collecting skips them (saying why, never
    calling an admin interface they lack) and the check of a route over them is unknown."""
    from types import SimpleNamespace

    from harness.recording import collect_observations

    full = base()
    kinds = {name: "oxen-storage" if name in ("sn01", "sn03") else "python" for name in full.nodes}
    asked: list[str] = []

    def node_admin(name, path):
        asked.append(name)
        return {"observations": full.observations.get(name, [])}

    net = SimpleNamespace(nodes=[SimpleNamespace(name=n) for n in sorted(kinds)],
                          node=lambda n: SimpleNamespace(kind=kinds[n]), node_admin=node_admin)
    errors: list[str] = []
    collected = collect_observations(net, errors=errors)
    assert "sn01" not in asked and "sn03" not in asked and "sn01" not in collected
    assert "sn01: no observations: oxen-storage nodes have no admin interface" in errors
    h = base()
    h.observations = collected
    r = privacy(h)
    assert r.verdict is Verdict.UNKNOWN, r
    assert any("sn01" in d and "no observations collected" in d for d in r.details), r.details
