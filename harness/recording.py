"""Recording a history during a test, against a running testnet.

:class:`HistoryRecorder` hands out clients whose sends, receipts and records all land in one
:class:`harness.checks.History`, :class:`harness.faults.Faults` writing to a timeline shared with
it, gathers the nodes' observations, keeps the check results the test ran and writes the
report (:mod:`harness.report`: report.md, report.json, report.html). The pytest ``history`` fixture hands one out.

This is the layer above the checkers: :mod:`harness.checks` only reads a finished history (pure
functions, no network); everything here talks to a testnet.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.checks import CheckResult, History, delivery, latency
from harness.client import Account, Client, ClientError
from harness.faults.actions import Faults
from harness.faults.timeline import Timeline
from harness.nodekinds import record_kind
from harness.report import Report, write


def node_directory(net: Any) -> dict[str, dict[str, Any]]:
    """Node name → {"ed25519", "x25519", "public_ip", "bind_ip", "admin_url", "swarm_id"} of a
    :class:`harness.network.Testnet`."""
    return {n.name: {"ed25519": n.pubkey_ed25519, "x25519": n.pubkey_x25519,
                     "public_ip": n.public_ip, "bind_ip": n.bind_ip or n.public_ip,
                     "admin_url": n.admin_url, "swarm_id": n.swarm_id}
            for n in net.nodes}


def testnet_info(net: Any) -> dict[str, Any]:
    """{"name", "seed", "backend", "swarms", "swarm_size", "nodes"?} of a testnet: what a report
    needs to say how to bring the same testnet up again (``nodes``: its node groups as
    ``N:KIND[=PATH]`` specs, when it has groups)."""
    t = net.topology
    info = {"name": net.name, "seed": str(t.seed), "backend": getattr(net.backend, "kind", None),
            "swarms": t.swarms, "swarm_size": t.swarm_size}
    if t.nodes:
        info["nodes"] = [g.spec() for g in t.nodes]
    return info


def observers(net: Any) -> list[str]:
    """Names of everything that keeps observations: the nodes and the file server (if any)."""
    fs = getattr(getattr(net, "state", None), "fileserver", None)
    return [n.name for n in net.nodes] + ([fs.name] if fs is not None else [])


def collect_observations(net: Any, names: Iterable[str] | None = None, *,
                         errors: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every node's (and the file server's) observation buffer (``GET
    /admin/v1/observations?since=0``), by name.

    A node that does not answer (killed, paused) or has no admin interface (the real storage
    server) is left out, so checks that need its observations say unknown; with ``errors`` the
    reason is appended there (``"sn03: …"``) instead of being lost."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in (list(names) if names is not None else observers(net)):
        record = net.node(name)
        if not record_kind(record).has_admin:
            if errors is not None:
                errors.append(f"{name}: no observations: {record.kind} nodes have no admin interface")
            continue
        try:
            answer = net.node_admin(name, "observations?since=0")
            out[name] = list((answer or {}).get("observations", []))
        except Exception as e:  # a dead node has no observations to give; say why
            if errors is not None:
                errors.append(f"{name}: observations unavailable: {e}")
    return out


def clear_observations(net: Any) -> None:
    """Empty every running node's (and the file server's) observation buffer (start of a
    scenario); nodes without an admin interface observe nothing."""
    for name in observers(net):
        if not record_kind(net.node(name)).has_admin:
            continue
        try:
            net.node_admin(name, "observations", method="DELETE")
        except Exception:  # noqa: S110 - a stopped node has nothing to clear
            pass


def local_address_towards(ip: str, port: int = 22021) -> str:
    """The source address this host uses to reach ``ip`` (what a node would see as the
    client's address without a proxy in between). Sends nothing: a UDP socket is only
    connected, which selects the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, port))
        return str(s.getsockname()[0])


class RecordedClient:
    """A blocking :class:`harness.client.Client` whose operations are written to a history:
    ``send`` remembers the body by op_id, ``receive``/``wait_for`` remember what came back.
    Every other attribute is the wrapped client's."""

    def __init__(self, client: Client, history: History) -> None:
        self._client = client
        self._history = history

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send(self, to: str, body: str, **kw: Any) -> Any:
        try:
            rec = self._client.send(to, body, **kw)
        except ClientError as e:
            if e.record is not None:
                self._history.sent[e.record.op_id] = {"to": to, "body": body}
            raise
        self._history.sent[rec.op_id] = {"to": to, "body": body}
        return rec

    def _got(self, msgs: list[Any]) -> list[Any]:
        at = time.time()
        for m in msgs:
            self._history.deliveries.append({"account": self._client.session_id, **m.to_dict(),
                                             "at": at})
        return msgs

    def receive(self, **kw: Any) -> list[Any]:
        return self._got(self._client.receive(**kw))

    def wait_for(self, *args: Any, **kw: Any) -> list[Any]:
        return self._got(self._client.wait_for(*args, **kw))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RecordedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HistoryRecorder:
    """Collects one test's history and check results; writes the report on failure."""

    def __init__(self, label: str = "", nodeid: str | None = None) -> None:
        self.label = label
        #: the pytest node id of the test recording (replay command in the report)
        self.nodeid = nodeid
        self.history = History()
        self.timeline = Timeline()
        self.results: list[CheckResult] = []
        self.nets: list[Any] = []
        self.collect_errors: list[str] = []
        self.closed = False
        self._clients: list[RecordedClient] = []
        self._faults: list[Faults] = []

    # -- set-up -------------------------------------------------------------------------------
    def attach(self, net: Any, *, clear: bool = True) -> None:
        """Use ``net``'s node directory (and, with ``clear``, start its observations afresh)."""
        if net not in self.nets:
            self.nets.append(net)
        self.history.nodes.update(node_directory(net))
        if clear:
            clear_observations(net)

    def client(self, net: Any, account: Account | None = None, **kw: Any) -> RecordedClient:
        """A blocking client on ``net`` recording into this history (closed at teardown)."""
        self.attach(net, clear=net not in self.nets)
        kw.setdefault("retry_backoff", 0.05)
        c = RecordedClient(Client(net.seed_url, account or Account.generate(),
                                  sink=self.history.records, **kw), self.history)
        self._clients.append(c)
        nodes = net.nodes
        if nodes:
            addr = local_address_towards(nodes[0].public_ip, nodes[0].storage_port)
            if addr not in self.history.client_addresses:
                self.history.client_addresses.append(addr)
        return c

    def faults(self, net: Any, **kw: Any) -> Faults:
        """:class:`Faults` on ``net`` writing to this history's timeline (every fault still
        applied is removed at teardown)."""
        self.attach(net, clear=False)
        f = Faults(net, self.timeline, **kw)
        self._faults.append(f)
        return f

    # -- collection and checks ----------------------------------------------------------------
    def collect(self) -> History:
        """Bring the history up to date: fault events and every attached net's observations."""
        self.history.events = list(self.timeline.events)
        for net in self.nets:
            self.history.nodes.update(node_directory(net))
            self.history.observations.update(collect_observations(net, errors=self.collect_errors))
        return self.history

    def check(self, *results: CheckResult) -> list[CheckResult]:
        """Record check results (they go into the report)."""
        self.results.extend(results)
        return list(results)

    def require(self, *results: CheckResult) -> None:
        """Record the results and fail the test (with every result's details) unless all are
        ``OK``: a ``FAILED`` or ``UNKNOWN`` verdict fails it."""
        self.check(*results)
        bad = [r for r in results if not r.ok]
        if bad:
            raise AssertionError("check(s) not ok:\n" + "\n".join(str(r) for r in bad))

    def default_checks(self) -> list[CheckResult]:
        return [delivery(self.history), latency(self.history)]

    # -- teardown -----------------------------------------------------------------------------
    def write_report(self, folder: str | Path, *, log_paths: dict[str, str] | None = None
                     ) -> dict[str, Path]:
        """Write ``report.md``, ``report.json``, ``history.json`` and ``report.html`` into
        ``folder``: the results the test recorded, else the default checks (delivery,
        latency)."""
        try:
            self.collect()
        except Exception as e:  # the net may be gone already: report what we have
            self.collect_errors.append(f"collect: {e}")
        results = self.results or self.default_checks()
        report = Report.build(results, self.history, log_paths=log_paths,
                              title=f"check report: {self.label}" if self.label else "check report",
                              testnet=", ".join(n.name for n in self.nets) or None,
                              testnets=[testnet_info(n) for n in self.nets], nodeid=self.nodeid)
        return write(report, folder)

    def close(self, *, remove_faults: bool = True) -> None:
        """Close every client and (unless ``remove_faults`` is false: a testnet kept for
        inspection) remove every fault still applied. Idempotent."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for c in self._clients:
            try:
                c.close()
            except Exception as e:  # close every client
                errors.append(str(e))
        for f in self._faults if remove_faults else []:
            try:
                f.remove_all()
            except Exception as e:  # remove every fault
                errors.append(str(e))
        if errors:
            raise RuntimeError("history teardown: " + "; ".join(errors))


__all__ = ["observers", "HistoryRecorder", "RecordedClient", "clear_observations", "collect_observations",
           "local_address_towards", "node_directory", "testnet_info"]
