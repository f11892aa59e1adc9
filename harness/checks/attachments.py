"""Attachment metadata: what the file server and the nodes could learn of who uploads what.

A file server's observations (``GET /admin/v1/observations`` of ``nodes/fileserver``, collected
into ``history.observations`` under its name) carry ``endpoint`` and ``file_id``; a node that
forwarded an onion request to a server (the exit) records ``hop == "relay"`` with ``server`` set.

Rules (each violation names the observer, the observation and the address):

1. *the file server never meets a client* — every file server observation naming a file (an
   upload's new id, a download's id) came through an onion request (``channel == "onion"``),
   never a direct HTTP request, and its source is not a client address;
2. *an exit node relayed it* — for each of those, some node recorded forwarding an onion
   request to that server within ``slack_s`` seconds;
3. *no node sees both the uploader's address and where the file goes* — no exit observation
   (``server`` set) comes from a client address (the exit is never the client's guard), and no
   observation at all pairs a client address with a file id.

Client addresses are ``history.client_addresses`` plus the sources of guard observations of the
history's attachment attempts, minus node-side addresses (the nodes' IPs, the sources of
node-to-node requests): behind Toxiproxy the proxy's address can equal a client's, which is then
ambiguous and rules 1-3 rest on the channel and the relays the nodes recorded.
"""

from __future__ import annotations

from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker

ATTACHMENT_KINDS = ("upload", "download")


def _file_server_names(history: History) -> list[str]:
    """Observers whose observations have the file server's shape (an ``endpoint`` key)."""
    return [name for name, obs in history.observations.items()
            if any("endpoint" in o for o in obs)]


@checker("attachment_privacy")
def attachment_privacy(history: History, *, slack_s: float = 2.0) -> CheckResult:
    """The rules of this module. Verdict: ``FAILED`` on any violation; ``UNKNOWN`` when no file
    server observation names a file; else ``OK``."""
    servers = _file_server_names(history)
    node_side: set[str] = set()
    for info in history.nodes.values():
        node_side.update(x for x in (info.get("public_ip"), info.get("bind_ip")) if x)
    for name, obs in history.observations.items():
        if name in servers:
            continue
        node_side.update(o["remote_addr"] for o in obs
                         if o.get("channel") == "swarm" and o.get("remote_addr")
                         and int(o.get("status") or 0) < 400)
    client_seen = set(history.client_addresses)
    client_only = client_seen - node_side

    exits: list[tuple[str, dict[str, Any]]] = [
        (name, o) for name, obs in history.observations.items() if name not in servers
        for o in obs if o.get("channel") == "onion" and o.get("server")]
    violations: list[str] = []
    files = relayed = 0
    for name, o in exits:
        if o.get("remote_addr") in client_only:
            violations.append(f"{name} (seq {o.get('seq')}) forwarded to {o.get('server')} a "
                              f"request that came from the client address {o['remote_addr']}: "
                              "it saw who uploads and where")
    for server in servers:
        for o in history.observations[server]:
            if o.get("file_id") is None:
                continue
            files += 1
            where = (f"{server} (seq {o.get('seq')}, {o.get('channel')} {o.get('method')} "
                     f"{o.get('endpoint')}, file {o.get('file_id')})")
            if o.get("channel") != "onion":
                violations.append(f"{where} was asked directly from {o.get('remote_addr')}, not "
                                  "through an onion request")
                continue
            if o.get("remote_addr") in client_only:
                violations.append(f"{where} came from the client address {o['remote_addr']}")
            ts = float(o.get("ts", 0))
            if any(abs(float(e.get("ts", 0)) - ts) <= slack_s for _, e in exits):
                relayed += 1
            else:
                violations.append(f"{where}: no node forwarded an onion request to a server then "
                                  "(it did not come through an exit node)")
    for name, obs in history.observations.items():
        if name in servers:
            continue
        for o in obs:
            if o.get("file_id") is not None and o.get("remote_addr") in client_only:
                violations.append(f"{name} (seq {o.get('seq')}) saw file {o['file_id']} from the "
                                  f"client address {o['remote_addr']}")
    verdict = (Verdict.FAILED if violations else Verdict.UNKNOWN if files == 0 else Verdict.OK)
    summary = (f"{files} file server observations naming a file, {relayed} relayed by an exit "
               f"node; {len(exits)} exit observations; {len(violations)} violations")
    details = list(violations) or ([] if files else [
        "unknown: no file server observation names a file (no upload or download observed, or "
        "the file server's observations were not collected)"])
    ambiguous = client_seen & node_side
    if ambiguous:
        details.append(f"note: address(es) {', '.join(sorted(ambiguous))} are used by clients and "
                       "by node-side traffic alike (Toxiproxy): the rules rest on channels and relays")
    return CheckResult("attachment_privacy", verdict, summary, details, {
        "violations": violations, "files": files, "relayed": relayed, "exits": len(exits),
        "file_servers": servers, "client_addresses": sorted(client_seen)})


__all__ = ["attachment_privacy"]
