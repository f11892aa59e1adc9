"""SQLite message store of the storage node: persistence, purge, paging, expiry updates."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from nodes.snode.storage import Message, Storage

pytestmark = pytest.mark.unit

PK = "05" + "ab" * 32
OTHER = "03" + "cd" * 32


def msg(i: int, pubkey: str = PK, ns: int = 0, ts: int = 1_700_000_000_000, expiry: int | None = None,
        data: bytes | None = None) -> Message:
    now = int(time.time() * 1000)
    return Message(pubkey, ns, f"{i:043d}", ts + i, expiry if expiry is not None else now + 60_000,
                   data if data is not None else f"data{i}".encode())


@pytest.fixture
def store(tmp_path):
    s = Storage(tmp_path / "storage.db")
    yield s
    s.close()


async def test_survives_restart(tmp_path):
    path = tmp_path / "storage.db"
    s = Storage(path)
    await s.store(msg(1))
    await s.bulk_store([msg(2), msg(3, pubkey=OTHER)])
    s.close()
    s2 = Storage(path)
    try:
        now = int(time.time() * 1000)
        got, more = await s2.retrieve(PK, 0, None, None, None, now)
        assert [m.hash for m in got] == [msg(1).hash, msg(2).hash] and not more
        assert got[0].data == b"data1" and got[0].timestamp == msg(1).timestamp
        assert await s2.count() == 3
        assert s2.call(lambda: s2.db.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        s2.close()


async def test_duplicate_store_keeps_message_and_extends_expiry(store):
    m = msg(1)
    assert await store.store(m) == (True, m.expiry)
    longer = Message(m.pubkey, m.namespace, m.hash, m.timestamp, m.expiry + 5000, m.data)
    assert await store.store(longer) == (False, m.expiry + 5000)
    assert await store.store(m) == (False, m.expiry + 5000)
    assert await store.count() == 1
    assert await store.bulk_store([m, msg(2)]) == 1


async def test_purge_expired(store):
    now = int(time.time() * 1000)
    await store.bulk_store([msg(1, expiry=now - 1), msg(2, expiry=now + 60_000)])
    # an expired-but-unpurged message is not served
    got, _ = await store.retrieve(PK, 0, None, None, None, now)
    assert [m.hash for m in got] == [msg(2).hash]
    assert await store.purge_expired(now) == 1
    assert await store.count() == 1
    assert await store.purge_expired(now + 120_000) == 1
    assert await store.count() == 0


async def test_retrieve_paging_by_count_and_size(store):
    now = int(time.time() * 1000)
    await store.bulk_store([msg(i, data=b"x" * 1000) for i in range(10)])
    got, more = await store.retrieve(PK, 0, msg(3).hash, 4, None, now)
    assert [m.hash for m in got] == [msg(i).hash for i in range(4, 8)] and more
    got, more = await store.retrieve(PK, 0, None, None, 3000, now)
    assert len(got) == 2 and more  # ~1.4 kB each once base64 + overhead is counted
    got, more = await store.retrieve(PK, 0, None, None, 10, now)
    assert len(got) == 1 and more  # always at least one message
    got, _ = await store.retrieve(PK, 5, None, None, None, now)
    assert got == []


async def test_delete_and_expiry_updates(store):
    now = int(time.time() * 1000)
    await store.bulk_store([msg(1), msg(2, ns=5), msg(3, pubkey=OTHER)])
    assert await store.delete_by_hash(PK, [msg(3).hash, msg(1).hash]) == [msg(1).hash]
    assert await store.update_expiry(PK, [msg(2).hash], [now + 1000], False, True) == [(msg(2).hash, now + 1000)]
    assert await store.update_expiry(PK, [msg(2).hash], [now + 500_000], False, True) == []
    assert await store.get_expiries(PK, [msg(2).hash, "nope"]) == {msg(2).hash: now + 1000}
    assert await store.update_all_expiries(PK, None, now + 100) == [(5, msg(2).hash)]
    assert await store.delete_all(PK, None) == [(5, msg(2).hash)]
    assert await store.owners() == [OTHER]


# --- public outboxes and subaccount revocations ----------------------------------------------

async def test_public_outbox_keeps_only_the_newest_message(store):
    now = int(time.time() * 1000)
    first = msg(1, ns=-21, ts=now)
    assert await store.store(first) == (True, first.expiry)
    newer = msg(2, ns=-21, ts=now + 1000)
    assert (await store.store(newer))[0] is True
    got, _ = await store.retrieve(PK, -21, None, None, None, now)
    assert [m.hash for m in got] == [newer.hash]
    # an older message is accepted but not kept; the newest stays
    older = msg(3, ns=-21, ts=now - 1000)
    assert (await store.store(older))[0] is True
    got, _ = await store.retrieve(PK, -21, None, None, None, now)
    assert [m.hash for m in got] == [newer.hash]
    # a duplicate of the held message is a duplicate
    assert (await store.store(newer))[0] is False
    # replicated messages follow the same rule; other namespaces and accounts are untouched
    await store.store(msg(4, ns=-20, ts=now))
    await store.store(msg(5, ns=-20, ts=now + 1))
    n = await store.bulk_store([msg(6, ns=-21, ts=now + 5000), msg(7, ns=-21, ts=now + 2000),
                               msg(8, pubkey=OTHER, ns=-21, ts=now)])
    assert n == 2
    got, _ = await store.retrieve(PK, -21, None, None, None, now)
    assert [m.hash for m in got] == [msg(6).hash]
    assert len((await store.retrieve(PK, -20, None, None, None, now))[0]) == 2
    assert len((await store.retrieve(OTHER, -21, None, None, None, now))[0]) == 1


async def test_subaccount_revocations(store):
    t1, t2, t3 = (bytes([3, 1, 0, 0]) + bytes([i]) * 32 for i in range(3))
    assert await store.revoke_subaccounts(PK, [t1, t2], 1000) == 2
    assert await store.revoke_subaccounts(PK, [t2, t3], 2000) == 1  # t2 was already revoked
    assert await store.subaccount_revoked(PK, t1) and not await store.subaccount_revoked(OTHER, t1)
    assert await store.revoked_subaccounts(PK) == sorted([t1, t2, t3])
    assert await store.unrevoke_subaccounts(PK, [t1, t1, bytes(36)]) == 1
    assert not await store.subaccount_revoked(PK, t1)
    assert await store.revoked_subaccounts(OTHER) == []


async def test_revocation_list_keeps_the_50_most_recent(store):
    tokens = [bytes([3, 1, 0, 0]) + i.to_bytes(32, "big") for i in range(60)]
    for i, t in enumerate(tokens):
        await store.revoke_subaccounts(PK, [t], 1000 + i)
    kept = await store.revoked_subaccounts(PK)
    assert len(kept) == 50 and set(kept) == set(tokens[10:])
    # re-revoking an old token refreshes it
    await store.revoke_subaccounts(PK, [tokens[10]], 5000)
    await store.revoke_subaccounts(PK, [tokens[0]], 5001)
    kept = set(await store.revoked_subaccounts(PK))
    assert tokens[10] in kept and tokens[0] in kept and tokens[11] not in kept



async def _with_db_thread_busy(store, stores):
    """Run ``stores`` (coroutines) while the database thread is held busy, so they queue up."""
    release = threading.Event()
    blocker = asyncio.ensure_future(store.run(release.wait, 10))
    tasks = [asyncio.ensure_future(c) for c in stores]
    await asyncio.sleep(0)  # every store is queued behind the blocker
    release.set()
    await blocker
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_store_on_an_idle_db_thread_needs_no_hand_off(store, monkeypatch):
    async def no_hand_off(*args):
        raise AssertionError("store handed off to the database thread while it was idle")

    monkeypatch.setattr(store, "run", no_hand_off)
    m = msg(1)
    assert await store.store(m) == (True, m.expiry)
    assert await store.store(m) == (False, m.expiry)
    monkeypatch.undo()
    assert await store.count() == 1


def _count_transactions(store, monkeypatch) -> list[int]:
    """The sizes of the store transactions ``store`` writes from now on (one entry each)."""
    batches: list[int] = []
    write = store._store_many

    def counting(msgs):
        batches.append(len(msgs))
        return write(msgs)

    monkeypatch.setattr(store, "_store_many", counting)
    return batches


async def test_concurrent_stores_are_written_together_with_the_same_results(store, monkeypatch):
    batches = _count_transactions(store, monkeypatch)
    ms = [msg(i) for i in range(20)]
    later = Message(ms[3].pubkey, 0, ms[3].hash, ms[3].timestamp, ms[3].expiry + 1000, ms[3].data)
    results = await _with_db_thread_busy(store, [store.store(m) for m in [*ms, ms[0], later]])
    assert results[:20] == [(True, m.expiry) for m in ms]
    assert results[20] == (False, ms[0].expiry)  # a duplicate in the same batch is seen as one
    assert results[21] == (False, later.expiry)  # and extends the expiry
    assert await store.count() == 20
    assert batches == [22]  # one hand-off and one commit for the lot


async def test_stores_of_one_loop_turn_share_one_commit_on_the_loop(store, monkeypatch):
    async def no_hand_off(*args):
        raise AssertionError("store handed off to the database thread while it was idle")

    monkeypatch.setattr(store, "run", no_hand_off)
    batches = _count_transactions(store, monkeypatch)
    ms = [msg(i) for i in range(8)]
    results = await asyncio.gather(*(store.store(m) for m in ms))  # all arrive in one turn
    assert results == [(True, m.expiry) for m in ms]
    assert await store.store(ms[0]) == (False, ms[0].expiry)  # a later turn: its own commit
    assert batches == [8, 1]
    monkeypatch.undo()
    assert await store.count() == 8


async def test_a_failing_store_in_a_batch_fails_alone(store, monkeypatch):
    bad = msg(5)
    write_one = store._store_in_tx

    def failing(m):
        if m.hash == bad.hash:
            raise sqlite3.OperationalError("disk I/O error (test)")
        return write_one(m)

    monkeypatch.setattr(store, "_store_in_tx", failing)
    ms = [msg(i) for i in range(10)]
    results = await _with_db_thread_busy(store, [store.store(m) for m in ms])
    assert isinstance(results[5], sqlite3.OperationalError)
    assert [r for i, r in enumerate(results) if i != 5] == [(True, m.expiry) for i, m in enumerate(ms) if i != 5]
    assert await store.count() == 9
    m11 = msg(11)
    assert await store.store(m11) == (True, m11.expiry)  # the writer carries on


async def test_a_read_sees_the_stores_that_arrived_before_it(store):
    """A retrieve started after a store in the same loop turn (a ``batch`` of store and retrieve
    runs its subrequests concurrently) finds the message, whether the database thread is idle
    or busy; the real server answers a batch store+retrieve with the stored message."""
    now = int(time.time() * 1000)
    m0, m1 = msg(0), msg(1)
    stored, (found, _more) = await asyncio.gather(
        store.store(m0), store.retrieve(PK, 0, None, None, None, now))
    assert stored == (True, m0.expiry) and [m.hash for m in found] == [m0.hash]
    # the thread busy: the store waits to be handed off, the retrieve waits for the store
    results = await _with_db_thread_busy(store, [store.store(m1),
                                                 store.retrieve(PK, 0, None, None, None, now)])
    assert results[0] == (True, m1.expiry)
    assert sorted(m.hash for m in results[1][0]) == sorted([m0.hash, m1.hash])
