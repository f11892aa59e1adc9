"""What the scenarios share: client settings, deterministic accounts, the client factory (the
built-in client or the adapter under test), and small helpers over a testnet's swarms.

Scenarios import from here; nothing here knows a scenario."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.client import Account, StoreFailed
from harness.client.records import SendRecord
from harness.faults import Schedule
from harness.faults import runner as schedule_runner
from harness.nodekinds import kind_class
from nodes.protocol.keys import derive_seed
from nodes.protocol.swarm import swarm_for, swarm_space

#: a short request timeout: a killed container does not refuse, it stays silent
CLIENT: dict[str, Any] = {"request_timeout": 4.0}
#: the standard churn schedule: every 10 s one node, never the last live member of its swarm,
#: is killed and started again 10 s later (long enough to be deregistered and to register
#: again), while one client sends to another SEND_RATE times a second; the churn scenario runs
#: it for 2 minutes, ``testnet bench --quick`` for a short window
STANDARD_CHURN_NAME = "standard-churn"
STANDARD_CHURN_INTERVAL_S = 10.0
STANDARD_CHURN_ACTION = "kill"
SEND_RATE = 5.0


def standard_churn(net: Any, duration: float, swarms: Mapping[int, Sequence[str]]) -> Schedule:
    """The standard churn schedule over ``net``'s nodes for ``duration`` seconds, seeded from
    the testnet seed (a replay with the same seed draws the same kills); ``swarms``: swarm id ->
    names of its live members (at least one of each stays up)."""
    return Schedule.churn(str(net.topology.seed), duration, STANDARD_CHURN_INTERVAL_S,
                          nodes=[n.name for n in net.nodes], swarms=swarms,
                          action=STANDARD_CHURN_ACTION, name=STANDARD_CHURN_NAME)


class ScenarioClient(Protocol):
    """What every scenario that accepts ``--testnet-client`` uses of a client: the built-in
    :class:`harness.recording.RecordedClient` and :class:`harness.adapter.AdapterClient` both
    have it."""

    @property
    def session_id(self) -> str: ...

    def send(self, to: str, body: str) -> Any: ...

    def wait_for(self, predicate: Callable[[list[Any]], bool] | None = None, *,
                 count: int | None = None, timeout: float = 30.0) -> list[Any]: ...

    def close(self) -> None: ...


def client_settings(net: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default :data:`CLIENT`) with a request timeout long enough for a store whose
    destination waits for a killed swarm peer (the node kinds' ``dead_peer_wait_s``, plus 2 s):
    4 s on our nodes, 7 s on the real server."""
    settings = dict(CLIENT if base is None else base)
    wait = max(kind_class(k).dead_peer_wait_s for k in net.topology.kinds)
    if wait:
        settings["request_timeout"] = max(float(settings.get("request_timeout", 0)), wait + 2)
    return settings


def module_testnet(request: Any, backend: str, **topology: Any) -> Iterator[Any]:
    """Body of a module-scoped testnet fixture with its own shape: ``yield from
    module_testnet(request, testnet_backend, swarms=3, swarm_size=3)`` (started and torn down
    by the plugin's :class:`~harness.pytest_plugin.TestnetOwner`, like the ``testnet`` fixture)."""
    from harness.pytest_plugin import TestnetOwner  # pytest-only, as the scenarios are

    owner = TestnetOwner(request.config, backend)
    try:
        yield owner(**topology)
    finally:
        owner.finish()


def account_for(net: Any, label: str) -> Account:
    """The account ``label`` of a scenario on ``net``: derived from the testnet's seed, so a
    replay with the same seed has the same Session IDs (and so the same swarms and targets)."""
    return Account.from_seed_hex(derive_seed(str(net.topology.seed), "account", label).hex())


def send_like_an_app(client: Any, to: str, body: str, tries: int = 3,
                     backoff: float = 0.5) -> None:
    """Send; if the client gives up, resend as a messenger app's send job does, after a backoff
    that doubles per try (its attempts can all meet a just-killed or restarting node that the
    client cannot tell from a broken path). Failed tries stay in the history (the report shows
    them)."""
    for n in range(1, tries + 1):
        try:
            client.send(to, body)
            return
        except StoreFailed:
            if n == tries:
                raise
            time.sleep(backoff * 2 ** (n - 1))  # the app's retry backoff, not a readiness wait


@dataclass
class SendsDuring:
    """What :func:`sends_during` saw: the bodies whose send was acknowledged, the sends given up
    after the app's resends, and the schedule's run (None if it did not finish)."""

    acked: set[str] = field(default_factory=set)
    failed: int = 0
    run: schedule_runner.RunResult | None = None


def sends_during(schedule: Schedule, faults: Any, sender: Any, to: str, *,
                 rate: float = SEND_RATE, prefix: str = "steady") -> SendsDuring:
    """Apply ``schedule`` with ``faults`` (in a thread) while ``sender`` sends ``"<prefix> i"``
    to ``to`` ``rate`` times a second (slower when sends take longer), resending like an app
    (:func:`send_like_an_app`), until the schedule is over."""
    out = SendsDuring()
    done = threading.Event()

    def apply_schedule() -> None:
        try:
            out.run = schedule_runner.run(schedule, faults)
        finally:
            done.set()

    worker = threading.Thread(target=apply_schedule, name=f"{schedule.name}-schedule", daemon=True)
    worker.start()
    i, start = 0, time.monotonic()
    while not done.is_set():
        body = f"{prefix} {i}"
        i += 1
        # a steady stream: pacing, not a readiness wait
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        try:
            send_like_an_app(sender, to, body)
            out.acked.add(body)
        except StoreFailed:
            out.failed += 1
    worker.join()
    return out


def swarm_names(net: Any, client: Any, session_id: str) -> set[str]:
    """Node names of the swarm of ``session_id`` as ``client`` (built-in) sees it."""
    by_key = {n.pubkey_ed25519: n.name for n in net.nodes}
    return {by_key[m.ed25519] for m in client.get_swarm(session_id)}


def swarm_of(net: Any, session_id: str) -> list[str]:
    """Node names of the swarm of ``session_id`` by the testnet's directory as it was at ``up``
    (no client; after churn ask a client: :func:`swarm_names`)."""
    ids = sorted({n.swarm_id for n in net.nodes if n.swarm_id is not None})
    sid = swarm_for(swarm_space(session_id), ids)
    return sorted(n.name for n in net.nodes if n.swarm_id == sid)


def store_route(record: SendRecord) -> set[str]:
    """ed25519 keys of the path and destination of a send's successful store."""
    ok = [a for a in record.attempts if a.method == "store" and a.ok][-1]
    return {h["ed25519"] for h in [*ok.path, ok.destination or {}] if "ed25519" in h}


__all__ = ["CLIENT", "SEND_RATE", "STANDARD_CHURN_ACTION", "STANDARD_CHURN_INTERVAL_S",
           "STANDARD_CHURN_NAME", "standard_churn", "ScenarioClient", "account_for", "client_settings", "module_testnet", "send_like_an_app", "store_route",
           "swarm_names", "swarm_of"]
