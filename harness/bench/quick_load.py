"""The loads only ``testnet bench --quick`` puts on a testnet:

- :func:`onion_store_rate`: many client sessions (distinct accounts) storing onion-routed
  messages at once for a fixed window; acknowledged stores per second.
- :func:`churn_delivery`: the suites' standard seeded churn schedule for a short window while
  one client sends a steady stream to another (as the suites' churn scenario does, with the
  same client settings and app-like resends); delivered / acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from harness.bench.figures import latency_summary
from harness.network import Testnet

Reporter = Callable[[str], None]


async def onion_store_rate(net: Testnet, clients: int, window_s: float) -> dict[str, Any]:
    """``clients`` sessions, each with its own account and recipient, bootstrap and send one
    uncounted message (building their onion paths); then each sends one message after another
    for ``window_s`` seconds. ``per_s``: acknowledged sends (stored by the swarm) per second of
    the whole window, the tail of sends in flight at its end included."""
    from harness.client import Account, ClientError, SessionClient

    if clients < 1 or window_s <= 0:
        raise ValueError(f"need clients >= 1 and window_s > 0, got {clients}, {window_s}")
    senders = [SessionClient(net.seed_url, Account.generate()) for _ in range(clients)]
    recipients = [Account.generate().session_id for _ in range(clients)]
    samples: list[float] = []
    errors: Counter[str] = Counter()
    try:
        await asyncio.gather(*(c.bootstrap() for c in senders))
        warm = await asyncio.gather(*(c.send(r, "warm-up") for c, r in zip(senders, recipients, strict=True)),
                                    return_exceptions=True)
        warm_failed = sum(isinstance(w, BaseException) for w in warm)
        t0 = time.perf_counter()
        end = t0 + window_s

        async def worker(client: SessionClient, to: str) -> None:
            i = 0
            while time.perf_counter() < end:
                i += 1
                t = time.perf_counter()
                try:
                    await client.send(to, f"rate {i}")
                except ClientError as e:
                    errors[type(e).__name__] += 1
                    continue
                samples.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(worker(c, r) for c, r in zip(senders, recipients, strict=True)))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.close() for c in senders), return_exceptions=True)
    return {"per_s": round(len(samples) / wall, 1), "acknowledged": len(samples),
            "failed": sum(errors.values()), "errors": dict(errors), "warm_up_failed": warm_failed,
            "clients": clients, "window_s": window_s, "wall_s": round(wall, 2),
            **latency_summary(samples)}


def _live_swarms(net: Testnet) -> dict[int, list[str]]:
    """Swarm id -> names of its active members, as the seed says now."""
    out: dict[int, list[str]] = {}
    for name, nr in net.refresh().nodes.items():
        if nr.active and nr.swarm_id is not None:
            out.setdefault(nr.swarm_id, []).append(name)
    return {sid: sorted(m) for sid, m in sorted(out.items())}


def churn_delivery(net: Testnet, window_s: float, send_rate: float, wait_s: float,
                   report: Reporter) -> dict[str, Any]:
    """``{"rate", "acknowledged", "delivered", "seed", "steps", ...}``: the standard churn
    schedule (:func:`harness.suites.support.standard_churn`, seeded from the testnet seed) for
    ``window_s`` seconds while alice sends to bob ``send_rate`` times a second; then the
    testnet is waited ready again and bob reads until every acknowledged send arrived (or
    ``wait_s``). ``rate`` = acknowledged sends bob received / acknowledged sends (None when
    nothing was acknowledged). The suites' delivery checker's verdict comes along."""
    from harness.checks import delivery
    from harness.client import Timeout
    from harness.recording import HistoryRecorder
    from harness.suites import support

    net.wait_ready(timeout=60)
    seed = str(net.topology.seed)
    schedule = support.standard_churn(net, window_s, _live_swarms(net))
    history = HistoryRecorder(label="testnet bench --quick: churn")
    seen: set[str] = set()
    try:
        settings = support.client_settings(net)  # outlasts a store waiting for a killed peer
        alice, bob = history.client(net, **settings), history.client(net, **settings)
        sends = support.sends_during(schedule, history.faults(net), alice, bob.session_id,
                                     rate=send_rate, prefix="churn")
        acked, failed = sends.acked, sends.failed
        report(f"bench --quick: churn over; {len(acked)} sends acknowledged, waiting for delivery")
        net.wait_ready(timeout=60)

        def arrived(got: list[Any]) -> bool:
            seen.update(m.body for m in got)
            return seen >= acked

        try:
            bob.wait_for(arrived, timeout=wait_s)
        except Timeout:
            pass  # what did not arrive counts as not delivered
        check = delivery(history.collect())
    finally:
        history.close()
    delivered = len(acked & seen)
    out: dict[str, Any] = {
        "rate": round(delivered / len(acked), 5) if acked else None,
        "acknowledged": len(acked), "delivered": delivered, "gave_up": failed,
        "seed": seed, "schedule": schedule.name, "window_s": window_s,
        "interval_s": support.STANDARD_CHURN_INTERVAL_S, "action": support.STANDARD_CHURN_ACTION,
        "steps": len(schedule.steps), "send_rate": send_rate,
        "schedule_errors": sends.run.errors if sends.run else ["the schedule did not run"],
        "delivery_check": check.verdict.value if hasattr(check.verdict, "value") else str(check.verdict),
    }
    if not acked:
        out["reason"] = f"no send was acknowledged during the churn ({failed} gave up)"
    return out
