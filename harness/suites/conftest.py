"""Fixtures and hooks of the packaged scenarios (the testnet fixtures and options come from the
session-testnet pytest plugin, :mod:`harness.pytest_plugin`).

- ``clients``: :class:`Clients`, the scenario's client factory: the built-in client, or the
  adapter under test when ``--testnet-client CMD`` is given (scenarios marked ``builtin_client``
  are then skipped, saying why).
- a failed scenario gets a ``scenario`` report section (:mod:`harness.suites.explain`): the
  property, the seed and replay command, the faults in force, the failed or lost messages, the
  report's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.pytest_nodes import node_groups
from harness.pytest_plugin import artifacts_dir
from harness.recording import HistoryRecorder, RecordedClient, testnet_info
from harness.suites.explain import explain, property_of
from harness.suites.families import BUILTIN_CLIENT_MARKER
from harness.suites.support import account_for


class Clients:
    """Hands out a scenario's clients, all recording into its history, with accounts derived
    from the testnet's seed (a replay with ``--testnet-seed`` has the same Session IDs)."""

    def __init__(self, request: pytest.FixtureRequest, history: HistoryRecorder) -> None:
        self.history = history
        self.nodeid = request.node.nodeid
        builtin_only = request.node.get_closest_marker(BUILTIN_CLIENT_MARKER) is not None
        cmd = request.config.getoption("--testnet-client")
        #: the adapter command under test (None: the built-in client)
        self.command: str | None = None if builtin_only else cmd
        self._count = 0
        self._adapters: list[Any] = []

    def label(self) -> str:
        self._count += 1
        return f"{self.nodeid}/client-{self._count}"

    def builtin(self, net: Any, **kw: Any) -> RecordedClient:
        """A built-in client (whatever ``--testnet-client`` says)."""
        kw.setdefault("account", account_for(net, self.label()))
        return self.history.client(net, **kw)

    def new(self, net: Any, **kw: Any) -> Any:
        """A client of the scenario: the adapter under test if there is one (of ``kw`` only
        ``account`` is then used, e.g. a second device of an account; the rest tune the
        built-in client), else :meth:`builtin`."""
        if self.command is None:
            return self.builtin(net, **kw)
        from harness.adapter import AdapterClient  # only scenarios under --testnet-client

        account = kw.get("account") or account_for(net, self.label())
        c = AdapterClient.start(self.command, net, self.history, seed_hex=account.seed_hex)
        self._adapters.append(c)
        return c

    def close(self) -> None:
        errors = []
        for c in self._adapters:
            try:
                c.close()
            except Exception as e:  # close every adapter
                errors.append(str(e))
        if errors:
            raise RuntimeError("closing client adapters: " + "; ".join(errors))


@pytest.fixture
def clients(request: pytest.FixtureRequest, history: HistoryRecorder) -> Iterator[Clients]:
    c = Clients(request, history)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(autouse=True)
def _builtin_client_only(request: pytest.FixtureRequest) -> None:
    cmd = request.config.getoption("--testnet-client")
    if cmd and request.node.get_closest_marker(BUILTIN_CLIENT_MARKER) is not None:
        pytest.skip(f"needs the built-in client (its paths and raw storage RPC), not {cmd!r}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.failed and call.when == "call":
        try:
            text = _explain(item)
        except Exception as e:  # the explanation must never hide the failure
            text = f"(could not explain the failure: {e})"
        report.sections.append(("scenario", text))
        # the failure text itself carries it too: JUnit XML and CI pages show only that
        add = getattr(report.longrepr, "addsection", None)
        if callable(add):
            add("scenario", text)
    return report


def _explain(item: pytest.Item) -> str:
    funcargs = getattr(item, "funcargs", {})
    rec = funcargs.get("history")
    nets = list(rec.nets) if isinstance(rec, HistoryRecorder) else []
    for value in funcargs.values():  # the module testnet, a factory's testnets
        for net in getattr(value, "nets", None) or ([value] if hasattr(value, "topology") else []):
            if hasattr(net, "topology") and net not in nets:
                nets.append(net)
    history = rec.collect() if isinstance(rec, HistoryRecorder) else None
    return explain(prop=property_of(getattr(item, "function", None)), nodeid=item.nodeid,
                   client=item.config.getoption("--testnet-client"),
                   nodes=[g.spec() for g in node_groups(item.config)],
                   testnets=[testnet_info(n) for n in nets], history=history,
                   events=list(rec.timeline.events) if isinstance(rec, HistoryRecorder) else [],
                   results=list(rec.results) if isinstance(rec, HistoryRecorder) else [],
                   report=str(artifacts_dir(item.config, item.nodeid) / "report.html")
                   if isinstance(rec, HistoryRecorder) else None)
