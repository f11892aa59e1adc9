"""Recording a history during a test: clients whose sends, receipts and records all land in one
:class:`History`, a fault timeline shared with :class:`harness.faults.Faults`, and the checks the
test ran (the pytest ``history`` fixture hands out a :class:`HistoryRecorder`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.checks.delivery import delivery
from harness.checks.history import (
    History,
    clear_observations,
    collect_observations,
    local_address_towards,
    node_directory,
)
from harness.checks.latency import latency
from harness.checks.result import CheckResult
from harness.client import Account, Client, ClientError
from harness.faults.actions import Faults
from harness.faults.timeline import Timeline


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
            rec = getattr(e, "record", None)
            if rec is not None:
                self._history.sent[rec.op_id] = {"to": to, "body": body}
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

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.history = History()
        self.timeline = Timeline()
        self.results: list[CheckResult] = []
        self.nets: list[Any] = []
        self.collect_errors: list[str] = []
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
        """:class:`Faults` on ``net`` writing to this history's timeline."""
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
        """Record the results and fail the test (with every result's details) unless all pass."""
        self.check(*results)
        failed = [r for r in results if not r.ok]
        if failed:
            raise AssertionError("check(s) failed:\n" + "\n".join(str(r) for r in failed))

    def default_checks(self) -> list[CheckResult]:
        return [delivery(self.history), latency(self.history)]

    # -- teardown -----------------------------------------------------------------------------
    def write_report(self, folder: str | Path, *, log_paths: dict[str, str] | None = None
                     ) -> dict[str, Path]:
        from harness.report import Report

        try:
            self.collect()
        except Exception as e:  # the net may be gone already: report what we have
            self.collect_errors.append(f"collect: {e}")
        results = self.results or self.default_checks()
        report = Report.build(results, self.history, log_paths=log_paths,
                              title=f"check report: {self.label}" if self.label else "check report",
                              testnet=", ".join(n.name for n in self.nets) or None)
        return report.write(folder)

    def close(self) -> None:
        errors = []
        for c in self._clients:
            try:
                c.close()
            except Exception as e:  # close every client
                errors.append(str(e))
        for f in self._faults:
            try:
                f.remove_all()
            except Exception as e:  # remove every fault
                errors.append(str(e))
        if errors:
            raise RuntimeError("history teardown: " + "; ".join(errors))


__all__ = ["HistoryRecorder", "RecordedClient"]
