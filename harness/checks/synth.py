"""Builders of synthetic histories (records, observations, events) for pure tests and demos of
the checkers, shaped exactly like what the client, the faults and the nodes produce."""

from __future__ import annotations

from typing import Any

from harness.checks.history import History
from harness.client.records import AttemptRecord, ReceiveRecord, SendRecord
from harness.faults.timeline import Event

T0 = 1_700_000_000.0


def directory(n: int = 6, prefix: str = "127.1") -> dict[str, dict[str, Any]]:
    return {f"sn{i:02d}": {"ed25519": f"{i:02d}" * 32, "public_ip": f"{prefix}.{i}.1",
                           "bind_ip": f"{prefix}.{i}.2", "swarm_id": i % 2}
            for i in range(1, n + 1)}


def hop(nodes: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return {"ip": nodes[name]["public_ip"], "port": 22021, "ed25519": nodes[name]["ed25519"]}


def attempt(nodes: dict[str, dict[str, Any]], n: int, path: list[str], dest: str, *,
            at: float, ms: float = 50.0, ok: bool = True, method: str = "store",
            error_kind: str | None = None, status: int | None = 200, error: str | None = None,
            actions: list[str] | None = None) -> AttemptRecord:
    return AttemptRecord(n=n, method=method, path=[hop(nodes, p) for p in path],
                         destination=hop(nodes, dest), enc_type="aes-gcm", started_at=at,
                         elapsed_ms=ms, http_status=200 if status else None, status=status, ok=ok,
                         error_kind=error_kind, error=error, actions=list(actions or []))


def send(op_id: str, frm: str, to: str, h: str, attempts: list[AttemptRecord], *,
         ok: bool = True, at: float | None = None, ms: float | None = None) -> SendRecord:
    start = at if at is not None else attempts[0].started_at
    end = start + (ms if ms is not None else sum(a.elapsed_ms for a in attempts)) / 1000
    ok_att = [a for a in attempts if a.ok]
    return SendRecord(op_id=op_id, kind="send", account=frm, recipient=to, started_at=start,
                      ended_at=end, outcome="ok" if ok else "error",
                      error=None if ok else "store failed", error_type=None if ok else "StoreFailed",
                      attempts=attempts, message_hash=h if ok else None,
                      destination=ok_att[-1].destination if ok_att else None,
                      path=ok_att[-1].path if ok_att else [], confirmations=2 if ok else 0)


def receive(op_id: str, account: str, hashes: list[str], *, at: float) -> ReceiveRecord:
    return ReceiveRecord(op_id=op_id, kind="receive", account=account, recipient=account,
                         started_at=at, ended_at=at + 0.05, outcome="ok", new_hashes=list(hashes))


def onion_obs(seq: int, ts: float, *, hop_: str, next_hop: str | None = None,
              method: str | None = None, accounts: list[str] | None = None,
              remote: str = "127.0.0.1", channel: str = "onion") -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "remote_addr": remote, "channel": channel, "hop": hop_,
            "next_hop": next_hop, "method": method, "accounts": list(accounts or []),
            "status": 200}


def observe(history: History, a: AttemptRecord, recipient: str, *,
            guard_accounts: list[str] | None = None, dest_remote: str = "127.0.0.1") -> None:
    """The observations the nodes of a successful attempt would record."""
    if a.destination is None:
        raise ValueError(f"attempt {a.n} has no destination: nothing would observe it")
    chain = [*a.path, a.destination]
    for i, h in enumerate(chain):
        name = history.node_name(h["ed25519"])
        if name is None:
            raise ValueError(f"hop {h} is not in the history's node directory")
        obs = history.observations.setdefault(name, [])
        ts = a.started_at + 0.01 * (i + 1)
        if i < len(chain) - 1:
            obs.append(onion_obs(len(obs) + 1, ts, hop_="relay", next_hop=chain[i + 1]["ed25519"],
                                 accounts=guard_accounts if i == 0 else None))
        else:
            obs.append(onion_obs(len(obs) + 1, ts, hop_="destination", method=a.method,
                                 accounts=[recipient], remote=dest_remote))


def event(action: str, phase: str, nodes: list[str], wall: float, seq: int,
          **params: Any) -> Event:
    return Event(action=action, phase=phase, nodes=nodes, target=",".join(nodes),
                 params=params, wall=wall, offset=wall - T0, seq=seq)


__all__ = ["T0", "attempt", "directory", "event", "hop", "observe", "onion_obs", "receive", "send"]
