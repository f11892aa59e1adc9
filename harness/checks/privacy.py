"""Metadata privacy: what each node could learn, from the nodes' own observations.

Rules (each violation names the operation, attempt, node and observation):

1. *path shape* — every onion-routed attempt used ``hops`` (3) distinct nodes in distinct /24s,
   and the destination was not on its path;
2. *relays learn no account* — no onion observation with ``hop == "relay"`` carries an account;
3. *the guard sees the client but no account* — for every successful onion attempt the guard
   observed it (relay hop, ``next_hop`` = the second hop, during the attempt) without accounts;
4. *the destination sees accounts but only a node* — the destination observed it (destination
   hop, same method) from an address that is not a client's, and so did the other relays;
5. *no account next to a client address* — no observation anywhere pairs an account with a
   client-only address, and no direct (non-onion) storage RPC named one of the history's
   accounts.

Client addresses are ``history.client_addresses`` plus what guards saw; node-side addresses are
the nodes' own IPs plus the sources of authenticated node→node (``swarm``) requests. Behind the
testnet's Toxiproxy every node sees the proxy's address, which may equal the client's (process
backend): such addresses are reported as ambiguous and rules 3–4 then rest on the onion hop
structure the nodes recorded.
"""

from __future__ import annotations

from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker
from harness.client.records import AttemptRecord, OperationRecord


def subnet24(ip: str) -> str:
    return ip.rsplit(".", 1)[0] if "." in ip else ip


def _matches(obs: list[dict[str, Any]], a: AttemptRecord, slack: float, *, hop: str,
             next_hop: str | None = None, method: str | None = None,
             server: str | None = None) -> list[dict[str, Any]]:
    lo = a.started_at - slack
    hi = a.started_at + a.elapsed_ms / 1000.0 + slack
    out = []
    for o in obs:
        if o.get("channel") != "onion" or o.get("hop") != hop:
            continue
        if not (lo <= float(o.get("ts", 0)) <= hi):
            continue
        if next_hop is not None and o.get("next_hop") != next_hop:
            continue
        if method is not None and o.get("method") != method:
            continue
        if server is not None and not str(o.get("server") or "").startswith(server):
            continue
        out.append(o)
    return out


@checker("privacy")
def privacy(history: History, *, hops: int = 3, slack_s: float = 2.0,
            require_evidence: bool = True) -> CheckResult:
    """The rules of this module over ``history``. Verdict: ``FAILED`` on any violation; else
    ``UNKNOWN`` when there is no successful onion request, no node observation at all, or
    (with ``require_evidence``) a request that guard or destination did not record; else
    ``OK``."""
    onion_ops: list[tuple[OperationRecord, AttemptRecord]] = [
        (r, a) for r in history.records for a in r.attempts if a.path]
    accounts = {x for r in history.records for x in (r.account, r.recipient) if x}
    violations: list[str] = []
    bad_ops: list[str] = []

    def violate(op: OperationRecord | None, text: str) -> None:
        violations.append(text)
        if op is not None:
            bad_ops.append(op.op_id)

    # 1. path shape
    for r, a in onion_ops:
        eds = [h.get("ed25519") for h in a.path]
        nets = [subnet24(h.get("ip", "")) for h in a.path]
        where = f"{r.kind} {r.op_id} attempt {a.n} ({a.method})"
        route = " → ".join(history.label(h) for h in a.path)
        if len(a.path) != hops:
            violate(r, f"{where}: path has {len(a.path)} hops, not {hops}: {route}")
        if len(set(eds)) != len(eds):
            violate(r, f"{where}: a node appears twice on the path: {route}")
        if len(set(nets)) != len(nets):
            violate(r, f"{where}: two hops share a /24: {route}")
        if a.destination and a.destination.get("ed25519") in eds:
            violate(r, f"{where}: destination {history.label(a.destination)} is on its own path")

    # node-side and client addresses
    node_side: set[str] = set()
    for info in history.nodes.values():
        node_side.update(x for x in (info.get("public_ip"), info.get("bind_ip")) if x)
    for obs in history.observations.values():
        node_side.update(o["remote_addr"] for o in obs
                         if o.get("channel") == "swarm" and o.get("remote_addr")
                         and int(o.get("status") or 0) < 400)
    client_seen = set(history.client_addresses)

    # 2. relays carry no accounts
    for name, obs in history.observations.items():
        for o in obs:
            if o.get("channel") == "onion" and o.get("hop") == "relay" and o.get("accounts"):
                violate(None, f"{name} as a relay (seq {o.get('seq')}) saw accounts "
                              f"{o['accounts']}")

    # 3./4. per successful onion attempt
    verified, unverified, checked = 0, [], 0
    per_position: list[tuple[OperationRecord, AttemptRecord, int, dict[str, Any]]] = []
    for r, a in onion_ops:
        if not a.ok or len(a.path) != hops or not a.destination:
            continue
        checked += 1
        # an onion request to a server (attachments): the path's last node is the exit, which
        # forwards to the server's URL; the server's own observations are checked by
        # harness.checks.attachments
        server = None if a.destination.get("ed25519") else str(a.destination.get("url") or "")
        chain = [*a.path, a.destination] if server is None else list(a.path)
        missing = []
        for i, node in enumerate(chain):
            node_name = history.node_name(node.get("ed25519"))
            if node_name is None or node_name not in history.observations:
                missing.append(f"{history.label(node)} (no observations collected)")
                continue
            obs = history.observations[node_name]
            if i < len(chain) - 1:
                found = _matches(obs, a, slack_s, hop="relay", next_hop=chain[i + 1].get("ed25519"))
            elif server is not None:
                found = _matches(obs, a, slack_s, hop="relay", server=server)
            else:
                found = _matches(obs, a, slack_s, hop="destination", method=a.method)
            if not found and i in (0, len(chain) - 1):
                role = "guard" if i == 0 else "destination" if server is None else "exit"
                missing.append(f"{history.label(node)} ({role})")
            for o in found:
                per_position.append((r, a, i, {**o, "node": node_name}))
                if i == 0 and o.get("remote_addr"):
                    client_seen.add(o["remote_addr"])
        if missing:
            unverified.append(f"{r.kind} {r.op_id} attempt {a.n}: no matching observation at "
                              + ", ".join(missing))
            if r.op_id not in bad_ops and require_evidence:
                bad_ops.append(r.op_id)
        else:
            verified += 1

    client_only = client_seen - node_side
    ambiguous = client_seen & node_side
    for r, a, i, o in per_position:
        where = f"{r.kind} {r.op_id} attempt {a.n}"
        if i == 0 and o.get("accounts"):
            violate(r, f"{where}: guard {o['node']} saw accounts {o['accounts']} together with "
                       f"the client's address {o.get('remote_addr')}")
        if i > 0 and o.get("remote_addr") in client_only:
            role = "destination" if i == hops and (a.destination or {}).get("ed25519") else f"hop {i + 1}"
            violate(r, f"{where}: {role} {o['node']} saw the client's address "
                       f"{o['remote_addr']}" + (f" and accounts {o['accounts']}"
                                                if o.get("accounts") else ""))

    # 5. accounts next to client addresses anywhere; direct storage RPCs naming our accounts
    starts = [r.started_at for r in history.records]
    ends = [r.ended_at or r.started_at for r in history.records]
    lo, hi = (min(starts) - slack_s, max(ends) + slack_s) if starts else (0.0, 0.0)
    for name, obs in history.observations.items():
        for o in obs:
            acc = set(o.get("accounts") or [])
            if not acc:
                continue
            if o.get("remote_addr") in client_only:
                violate(None, f"{name} (seq {o.get('seq')}, {o.get('channel')} {o.get('method')}) "
                              f"saw accounts {sorted(acc)} from client address {o['remote_addr']}")
            elif (o.get("channel") == "storage_rpc" and acc & accounts
                  and lo <= float(o.get("ts", 0)) <= hi):
                violate(None, f"{name} (seq {o.get('seq')}) got a direct storage RPC "
                              f"{o.get('method')} naming {sorted(acc & accounts)} (not onion-routed)")

    details = list(violations)
    if require_evidence:
        details += unverified
    else:
        details += [f"note: {u}" for u in unverified]
    if ambiguous:
        details.append(f"note: address(es) {', '.join(sorted(ambiguous))} are used by clients and "
                       "by node-side traffic alike (Toxiproxy in front of every node): rules 3-4 "
                       "rest on the onion hop structure the nodes recorded")
    lacking = []
    if checked == 0:
        lacking.append("no successful onion request in the history to check")
    if not history.observations:
        lacking.append("no node observations were collected (call history.collect())")
    if require_evidence and unverified:
        lacking.append(f"{len(unverified)} onion requests without evidence at guard or "
                       "destination")
    details[:0] = [f"unknown: {x}" for x in lacking] if not violations else []
    verdict = Verdict.FAILED if violations else Verdict.UNKNOWN if lacking else Verdict.OK
    summary = (f"{checked} successful onion requests checked, {verified} verified at guard and "
               f"destination; {len(violations)} violations"
               + (f"; {len(unverified)} without evidence" if unverified else ""))
    return CheckResult("privacy", verdict, summary, details, {
        "violations": violations, "unverified": unverified, "checked": checked,
        "verified": verified, "onion_attempts": len(onion_ops),
        "client_addresses": sorted(client_seen), "node_side_addresses": sorted(node_side),
        "ambiguous_addresses": sorted(ambiguous), "op_ids": list(dict.fromkeys(bad_ops)),
    })


def history_accounts(history: History) -> set[str]:
    """Session IDs of the history's clients and recipients: from records, sends and deliveries
    (so a client under test without onion records counts too)."""
    out = {x for r in history.records for x in (r.account, r.recipient) if x}
    out |= {str(v["to"]) for v in history.sent.values() if v.get("to")}
    out |= {str(d["account"]) for d in history.deliveries if d.get("account")}
    return out


@checker("observed_privacy")
def observed_privacy(history: History, *, slack_s: float = 2.0) -> CheckResult:
    """What the nodes saw, without the client's records (so it holds for any client):

    1. *relays read nothing* — no onion observation with ``hop == "relay"`` carries an account
       or a storage method (the relay could not read the request it passed on);
    2. *accounts only reach nodes through onions* — every observation naming one of the
       history's accounts is an onion destination's or a swarm peer's (node-to-node), never a
       direct storage RPC (where the sender is the client itself);
    3. *the destination never meets the client* — every onion destination observation naming
       an account was relayed to it: another node recorded an onion relay to it (``next_hop``
       its key) within ``slack_s``, so the connection came from a node, not the client.

    Verdict: ``FAILED`` on any violation; ``UNKNOWN`` when no destination observation names an
    account of the history (nothing was checked); else ``OK``."""
    accounts = history_accounts(history)
    key_of = {name: str(info.get("ed25519")) for name, info in history.nodes.items()}
    relays_to: dict[str, list[float]] = {}
    relay_obs = 0
    violations: list[str] = []
    for name, obs in history.observations.items():
        for o in obs:
            if o.get("channel") != "onion" or o.get("hop") != "relay":
                continue
            relay_obs += 1
            if o.get("next_hop"):
                relays_to.setdefault(str(o["next_hop"]), []).append(float(o.get("ts", 0)))
            if o.get("accounts") or o.get("method"):
                violations.append(f"{name} as a relay (seq {o.get('seq')}) read "
                                  f"{o.get('method')!r} {o.get('accounts')}")
    destinations = matched = 0
    for name, obs in history.observations.items():
        for o in obs:
            named = set(o.get("accounts") or []) & accounts
            if not named:
                continue
            where = f"{name} (seq {o.get('seq')}, {o.get('channel')} {o.get('method')})"
            if o.get("channel") == "swarm":
                continue
            if o.get("channel") != "onion" or o.get("hop") != "destination":
                violations.append(f"{where} saw {sorted(named)} outside an onion request: the "
                                  f"sender {o.get('remote_addr')} named them to it directly")
                continue
            destinations += 1
            ts = float(o.get("ts", 0))
            if any(abs(t - ts) <= slack_s for t in relays_to.get(key_of.get(name, ""), [])):
                matched += 1
            else:
                violations.append(f"{where} saw {sorted(named)} but no node relayed a request "
                                  "to it then: it may have come from the client directly")
    verdict = (Verdict.FAILED if violations else Verdict.UNKNOWN if destinations == 0
               else Verdict.OK)
    summary = (f"{destinations} destination observations naming the history's accounts, "
               f"{matched} relayed by a node; {relay_obs} relay observations; "
               f"{len(violations)} violations")
    details = list(violations) or ([] if destinations else [
        "unknown: no node observed a request naming an account of the history"])
    return CheckResult("observed_privacy", verdict, summary, details, {
        "violations": violations, "destinations": destinations, "relayed": matched,
        "relay_observations": relay_obs, "accounts": sorted(accounts)})


__all__ = ["history_accounts", "observed_privacy", "privacy", "subnet24"]
