"""SQLite message store.

SQL runs on one dedicated worker thread (one connection, WAL journal, synchronous=NORMAL) so the
asyncio event loop is not blocked by slow queries (purges, replication reads, big deletes).  Every
public coroutine is a thin wrapper around a synchronous ``_name`` method, which tests may also
call directly through :meth:`Storage.run`.  The one exception is :meth:`Storage.store`, the
request hot path, with group commits: the stores of one turn of the event loop are written in
one transaction (tens of µs) on the event loop itself when the database thread has nothing in
hand (never both at once: the loop counts the thread's jobs), and on the thread, still batched,
otherwise.

Semantics follow the storage server's database layer: messages are unique by hash; storing a
duplicate keeps the stored message and extends its expiry if the new one is later; retrieve pages
by insertion order after ``last_hash`` (unknown hash -> from the start).  A public outbox
namespace -(20n+1) holds one message per account: a newer one (by timestamp) replaces it, an
older one is not kept.  Revoked group subaccount tokens are kept per account (the 50 most
recent, as the storage server's ``revoked_autoclean`` trigger does).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nodes.protocol.constants import MAX_SUBACCOUNT_TOKENS, is_public_outbox_namespace

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL UNIQUE,
    pubkey    TEXT NOT NULL,
    namespace INTEGER NOT NULL DEFAULT 0,
    timestamp INTEGER NOT NULL,
    expiry    INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_owner ON messages(pubkey, namespace, id);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expiry);
CREATE TABLE IF NOT EXISTS revoked_subaccounts (
    pubkey    TEXT NOT NULL,
    token     BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (pubkey, token)
);
"""

# Per-message allowance added to the data size when applying retrieve's max_size (hash, keys,
# JSON punctuation); the storage server counts data (base64 size for JSON) + hash + overhead.
RETRIEVE_MSG_OVERHEAD = 100
_CHUNK = 500  # SQLite host-parameter batches


@dataclass(frozen=True)
class Message:
    pubkey: str  # 66 hex chars, lower case
    namespace: int
    hash: str
    timestamp: int
    expiry: int
    data: bytes


def _row_message(row: Any) -> Message:
    """A Message from a ``SELECT pubkey, namespace, hash, timestamp, expiry, data`` row."""
    return Message(row[0], row[1], row[2], row[3], row[4], bytes(row[5]))


def _chunks(seq: Sequence[T], n: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _settle(batch: Sequence[tuple[Message, asyncio.Future[tuple[bool, int]]]],
            results: Sequence[tuple[bool, int] | Exception]) -> None:
    """Give each waiting store its result (or exception); a caller that went away has none."""
    for (_, fut), r in zip(batch, results, strict=True):
        if fut.done():  # the caller went away (cancelled)
            continue
        if isinstance(r, Exception):
            fut.set_exception(r)
        else:
            fut.set_result(r)


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snode-db")
        self._conn: sqlite3.Connection | None = None
        self._jobs = 0  # jobs submitted to the database thread and not finished yet
        # store(): messages waiting for the database thread, and the task writing them
        self._pending_stores: list[tuple[Message, asyncio.Future[tuple[bool, int]]]] = []
        self._store_writer: asyncio.Future[None] | None = None
        self._flush_scheduled = False  # a call of _flush_pending_stores is on the loop's queue
        self._executor.submit(self._open).result()

    # --- plumbing ------------------------------------------------------------------------------
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        self._conn = conn

    @property
    def db(self) -> sqlite3.Connection:
        assert self._conn is not None, "storage is closed"
        return self._conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        job = self._executor.submit(fn, *args)
        self._jobs += 1
        # counted down on the loop once the thread is really done with it (not when an awaiting
        # caller is cancelled): while it is above 0 the loop thread never touches the connection
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._job_done))
        return await asyncio.wrap_future(job)

    def _job_done(self) -> None:
        self._jobs -= 1

    async def _ordered(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`run`, after every store that arrived before this call is written: a request
        sees the stores before it (read-your-writes, as the storage server's one database
        connection gives; e.g. a ``batch`` of a store and a retrieve, whose subrequests run
        concurrently, retrieves the stored message)."""
        if self._pending_stores:
            if self._store_writer is None and self._jobs == 0:
                self._flush_pending_stores()  # now, on the loop (the thread is idle)
            else:
                await asyncio.wait([f for _, f in self._pending_stores])
        return await self.run(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run synchronously on the DB thread (for code outside the event loop and tests; not
        from another thread while the loop serves stores, which may use the connection too)."""
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        try:
            self._executor.submit(_close).result()
        finally:
            self._executor.shutdown(wait=True)

    # --- sync implementations (DB thread only) -------------------------------------------------
    def _store(self, m: Message) -> tuple[bool, int]:
        """Insert; on a duplicate hash extend the expiry if later.  Returns (new, expiry), ``new``
        meaning "not a duplicate hash".

        In a public outbox a newer message replaces the one held and an older one is accepted
        but not kept (still ``new``: its hash was not stored before).
        """
        result = self._store_many([m])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _store_many(self, msgs: Sequence[Message]) -> list[tuple[bool, int] | Exception]:
        """:meth:`_store` for each message, in order, in one transaction (one commit): each
        result is ``(new, expiry)`` or the exception that message's statements raised (SQLite
        undoes only the failed statement; the others are kept)."""
        db = self.db
        out: list[tuple[bool, int] | Exception] = []
        if len(msgs) == 1 and not is_public_outbox_namespace(msgs[0].namespace):
            # one message: autocommit, each statement its own transaction (a new message is one
            # INSERT; an outbox's delete + insert below needs the explicit transaction)
            try:
                out.append(self._store_in_tx(msgs[0]))
            except sqlite3.Error as e:
                out.append(e)
            return out
        db.execute("BEGIN IMMEDIATE")
        try:
            for m in msgs:
                try:
                    out.append(self._store_in_tx(m))
                except sqlite3.Error as e:
                    out.append(e)
            db.execute("COMMIT")
            return out
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _store_in_tx(self, m: Message) -> tuple[bool, int]:
        db = self.db
        if not is_public_outbox_namespace(m.namespace):
            # the common case, a new message, in one statement
            if db.execute(
                    "INSERT OR IGNORE INTO messages (hash, pubkey, namespace, timestamp, expiry, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (m.hash, m.pubkey, m.namespace, m.timestamp, m.expiry, m.data)).rowcount == 1:
                return True, m.expiry
        row = db.execute("SELECT id, expiry FROM messages WHERE hash = ?", (m.hash,)).fetchone()
        if row is None:
            self._insert_one(m)
            return True, m.expiry
        mid, exp = row
        if exp < m.expiry:
            db.execute("UPDATE messages SET expiry = ? WHERE id = ?", (m.expiry, mid))
            exp = m.expiry
        return False, exp

    def _insert_one(self, m: Message) -> bool:
        """Insert a message whose hash is not stored (inside a transaction); False when it is an
        outbox message older than the one the outbox holds."""
        db = self.db
        if is_public_outbox_namespace(m.namespace):
            held = db.execute("SELECT id, timestamp FROM messages WHERE pubkey = ? AND namespace = ?",
                              (m.pubkey, m.namespace)).fetchall()
            if any(ts >= m.timestamp for _, ts in held):
                return False
            db.executemany("DELETE FROM messages WHERE id = ?", [(mid,) for mid, _ in held])
        db.execute(
            "INSERT INTO messages (hash, pubkey, namespace, timestamp, expiry, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (m.hash, m.pubkey, m.namespace, m.timestamp, m.expiry, m.data))
        return True

    def _bulk_store(self, msgs: Sequence[Message]) -> int:
        """Insert replicated messages keeping hash/timestamp/expiry; duplicates are ignored (public
        outboxes keep their newest message).  Returns how many were inserted."""
        db = self.db
        n = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for m in msgs:
                if db.execute("SELECT 1 FROM messages WHERE hash = ?", (m.hash,)).fetchone() is None:
                    n += self._insert_one(m)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def _retrieve(self, pubkey: str, namespace: int, last_hash: str | None, max_count: int | None,
                  max_size: int | None, now_ms: int) -> tuple[list[Message], bool]:
        db = self.db
        last_id = None
        if last_hash:
            row = db.execute("SELECT id FROM messages WHERE pubkey = ? AND namespace = ? AND hash = ?",
                             (pubkey, namespace, last_hash)).fetchone()
            last_id = row[0] if row else None
        limit = (max_count + 1) if max_count else -1
        rows = db.execute(
            "SELECT hash, timestamp, expiry, data FROM messages"
            " WHERE pubkey = ? AND namespace = ? AND id > ? AND expiry > ? ORDER BY id LIMIT ?",
            (pubkey, namespace, last_id if last_id is not None else -1, now_ms, limit))
        out: list[Message] = []
        more = False
        total = 0
        for h, ts, exp, data in rows:
            if max_count and len(out) >= max_count:
                more = True
                break
            if max_size is not None:
                total += RETRIEVE_MSG_OVERHEAD + len(h) + (len(data) + 2) // 3 * 4
                if out and total > max_size:
                    more = True
                    break
            out.append(Message(pubkey, namespace, h, ts, exp, bytes(data)))
        return out, more

    def _delete_by_hash(self, pubkey: str, hashes: Sequence[str]) -> list[str]:
        deleted: list[str] = []
        db = self.db
        for chunk in _chunks(list(hashes)):
            q = ",".join("?" * len(chunk))
            deleted += [r[0] for r in db.execute(
                f"DELETE FROM messages WHERE pubkey = ? AND hash IN ({q}) RETURNING hash",
                (pubkey, *chunk))]
        return deleted

    def _delete_all(self, pubkey: str, namespace: int | None) -> list[tuple[int, str]]:
        if namespace is None:
            cur = self.db.execute("DELETE FROM messages WHERE pubkey = ? RETURNING namespace, hash",
                                  (pubkey,))
        else:
            cur = self.db.execute(
                "DELETE FROM messages WHERE pubkey = ? AND namespace = ? RETURNING namespace, hash",
                (pubkey, namespace))
        return [(r[0], r[1]) for r in cur]

    def _delete_before(self, pubkey: str, namespace: int | None, before: int) -> list[tuple[int, str]]:
        if namespace is None:
            cur = self.db.execute(
                "DELETE FROM messages WHERE pubkey = ? AND timestamp <= ? RETURNING namespace, hash",
                (pubkey, before))
        else:
            cur = self.db.execute(
                "DELETE FROM messages WHERE pubkey = ? AND namespace = ? AND timestamp <= ?"
                " RETURNING namespace, hash", (pubkey, namespace, before))
        return [(r[0], r[1]) for r in cur]

    def _update_expiry(self, pubkey: str, hashes: Sequence[str], expiries: Sequence[int],
                       extend_only: bool, shorten_only: bool) -> list[tuple[str, int]]:
        """Set expiries (one for all, or one per hash).  Returns [(hash, new_expiry)] updated."""
        if len(expiries) not in (1, len(hashes)):
            raise ValueError("update_expiry: need one expiry or one per hash")
        cond = " AND expiry < ?" if extend_only else " AND expiry > ?" if shorten_only else ""
        db = self.db
        out: list[tuple[str, int]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for i, h in enumerate(hashes):
                exp = expiries[0] if len(expiries) == 1 else expiries[i]
                params: tuple[Any, ...] = (exp, pubkey, h) + ((exp,) if cond else ())
                cur = db.execute(f"UPDATE messages SET expiry = ? WHERE pubkey = ? AND hash = ?{cond}",
                                 params)
                if cur.rowcount > 0:
                    out.append((h, exp))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def _update_all_expiries(self, pubkey: str, namespace: int | None,
                             expiry: int) -> list[tuple[int, str]]:
        """Shorten (never extend) every expiry later than `expiry`."""
        if namespace is None:
            cur = self.db.execute(
                "UPDATE messages SET expiry = ? WHERE pubkey = ? AND expiry > ? RETURNING namespace, hash",
                (expiry, pubkey, expiry))
        else:
            cur = self.db.execute(
                "UPDATE messages SET expiry = ? WHERE pubkey = ? AND namespace = ? AND expiry > ?"
                " RETURNING namespace, hash", (expiry, pubkey, namespace, expiry))
        return [(r[0], r[1]) for r in cur]

    def _get_expiries(self, pubkey: str, hashes: Sequence[str] | None) -> dict[str, int]:
        db = self.db
        if hashes is None:
            return {h: e for h, e in db.execute(
                "SELECT hash, expiry FROM messages WHERE pubkey = ?", (pubkey,))}
        out: dict[str, int] = {}
        for chunk in _chunks(list(hashes)):
            q = ",".join("?" * len(chunk))
            for h, e in db.execute(f"SELECT hash, expiry FROM messages WHERE pubkey = ? AND hash IN ({q})",
                                   (pubkey, *chunk)):
                out[h] = e
        return out

    def _revoke_subaccounts(self, pubkey: str, tokens: Sequence[bytes], now_ms: int) -> int:
        """Add tokens to the account's revocation list (a repeat refreshes its time); keeps the
        MAX_SUBACCOUNT_TOKENS most recent.  Returns how many were not revoked before."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            added = 0
            for t in tokens:
                cur = db.execute("UPDATE revoked_subaccounts SET timestamp = ?"
                                 " WHERE pubkey = ? AND token = ? AND timestamp < ?",
                                 (now_ms, pubkey, t, now_ms))
                exists = cur.rowcount > 0 or db.execute(
                    "SELECT 1 FROM revoked_subaccounts WHERE pubkey = ? AND token = ?",
                    (pubkey, t)).fetchone() is not None
                if not exists:
                    db.execute("INSERT INTO revoked_subaccounts (pubkey, token, timestamp)"
                               " VALUES (?, ?, ?)", (pubkey, t, now_ms))
                    added += 1
            db.execute(
                "DELETE FROM revoked_subaccounts WHERE pubkey = ? AND rowid NOT IN ("
                " SELECT rowid FROM revoked_subaccounts WHERE pubkey = ?"
                " ORDER BY timestamp DESC, rowid DESC LIMIT ?)",
                (pubkey, pubkey, MAX_SUBACCOUNT_TOKENS))
            db.execute("COMMIT")
            return added
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _unrevoke_subaccounts(self, pubkey: str, tokens: Sequence[bytes]) -> int:
        n = 0
        for t in dict.fromkeys(tokens):
            n += self.db.execute("DELETE FROM revoked_subaccounts WHERE pubkey = ? AND token = ?",
                                 (pubkey, t)).rowcount
        return n

    def _subaccount_revoked(self, pubkey: str, token: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM revoked_subaccounts WHERE pubkey = ? AND token = ?",
                               (pubkey, token)).fetchone() is not None

    def _revoked_subaccounts(self, pubkey: str) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute(
            "SELECT token FROM revoked_subaccounts WHERE pubkey = ? ORDER BY token", (pubkey,))]

    def _purge_expired(self, now_ms: int) -> int:
        return self.db.execute("DELETE FROM messages WHERE expiry <= ?", (now_ms,)).rowcount

    def _count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def _owners(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT pubkey FROM messages")]

    def _messages_of(self, pubkeys: Sequence[str], now_ms: int) -> list[Message]:
        out: list[Message] = []
        for chunk in _chunks(list(pubkeys)):
            q = ",".join("?" * len(chunk))
            out += [_row_message(r) for r in self.db.execute(
                "SELECT pubkey, namespace, hash, timestamp, expiry, data FROM messages"
                f" WHERE pubkey IN ({q}) AND expiry > ? ORDER BY id", (*chunk, now_ms))]
        return out

    def _all_messages(self, now_ms: int) -> list[Message]:
        return [_row_message(r) for r in self.db.execute(
            "SELECT pubkey, namespace, hash, timestamp, expiry, data FROM messages"
            " WHERE expiry > ? ORDER BY id", (now_ms,))]

    def _delete_hashes(self, hashes: Sequence[str]) -> int:
        n = 0
        for chunk in _chunks(list(hashes)):
            q = ",".join("?" * len(chunk))
            n += self.db.execute(f"DELETE FROM messages WHERE hash IN ({q})", tuple(chunk)).rowcount
        return n

    # --- async API ------------------------------------------------------------------------------
    async def store(self, m: Message) -> tuple[bool, int]:
        """Store one message (see :meth:`_store`), the hot path, with group commits: the stores
        that arrive in one turn of the event loop are written together, in one transaction with
        one commit, right after that turn and on the loop itself while the database thread is
        idle (a short transaction costs less there than two thread switches, which on busy cores
        wait for a time slice); while the thread is busy, the stores that arrive wait for it
        together and are then handed to it as one transaction. Each caller gets its answer once
        its transaction is committed."""
        fut: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._pending_stores.append((m, fut))
        if self._store_writer is None and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_pending_stores)
        return await fut

    def _flush_pending_stores(self) -> None:
        """Write the stores that arrived in the last turn of the loop, here if the database
        thread is idle, else through :meth:`_write_pending_stores`."""
        self._flush_scheduled = False
        if not self._pending_stores or self._store_writer is not None:
            return
        if self._jobs != 0:
            self._store_writer = asyncio.ensure_future(self._write_pending_stores())
            return
        batch, self._pending_stores = self._pending_stores, []
        try:
            results: list[tuple[bool, int] | Exception] = self._store_many([m for m, _ in batch])
        except Exception as e:  # noqa: BLE001 - the transaction failed: every store did
            results = [e] * len(batch)
        _settle(batch, results)

    async def _write_pending_stores(self) -> None:
        batch: list[tuple[Message, asyncio.Future[tuple[bool, int]]]] = []
        try:
            while self._pending_stores:
                batch, self._pending_stores = self._pending_stores, []
                try:
                    results: list[tuple[bool, int] | Exception] = await self.run(
                        self._store_many, [m for m, _ in batch])
                except Exception as e:  # noqa: BLE001 - the transaction failed: every store did
                    results = [e] * len(batch)
                _settle(batch, results)
                batch = []
        except asyncio.CancelledError:  # the loop is going away: nobody waits forever
            for _, fut in batch + self._pending_stores:
                fut.cancel()
            self._pending_stores = []
            raise
        finally:
            self._store_writer = None

    async def bulk_store(self, msgs: Sequence[Message]) -> int:
        return await self._ordered(self._bulk_store, msgs)

    async def retrieve(self, pubkey: str, namespace: int, last_hash: str | None, max_count: int | None,
                       max_size: int | None, now_ms: int) -> tuple[list[Message], bool]:
        return await self._ordered(self._retrieve, pubkey, namespace, last_hash, max_count, max_size, now_ms)

    async def delete_by_hash(self, pubkey: str, hashes: Sequence[str]) -> list[str]:
        return await self._ordered(self._delete_by_hash, pubkey, hashes)

    async def delete_all(self, pubkey: str, namespace: int | None) -> list[tuple[int, str]]:
        return await self._ordered(self._delete_all, pubkey, namespace)

    async def delete_before(self, pubkey: str, namespace: int | None, before: int) -> list[tuple[int, str]]:
        return await self._ordered(self._delete_before, pubkey, namespace, before)

    async def update_expiry(self, pubkey: str, hashes: Sequence[str], expiries: Sequence[int],
                            extend_only: bool, shorten_only: bool) -> list[tuple[str, int]]:
        return await self._ordered(self._update_expiry, pubkey, hashes, expiries, extend_only, shorten_only)

    async def update_all_expiries(self, pubkey: str, namespace: int | None, expiry: int) -> list[tuple[int, str]]:
        return await self._ordered(self._update_all_expiries, pubkey, namespace, expiry)

    async def get_expiries(self, pubkey: str, hashes: Sequence[str] | None) -> dict[str, int]:
        return await self._ordered(self._get_expiries, pubkey, hashes)

    async def revoke_subaccounts(self, pubkey: str, tokens: Sequence[bytes], now_ms: int) -> int:
        return await self._ordered(self._revoke_subaccounts, pubkey, tokens, now_ms)

    async def unrevoke_subaccounts(self, pubkey: str, tokens: Sequence[bytes]) -> int:
        return await self._ordered(self._unrevoke_subaccounts, pubkey, tokens)

    async def subaccount_revoked(self, pubkey: str, token: bytes) -> bool:
        return await self._ordered(self._subaccount_revoked, pubkey, token)

    async def revoked_subaccounts(self, pubkey: str) -> list[bytes]:
        return await self._ordered(self._revoked_subaccounts, pubkey)

    async def purge_expired(self, now_ms: int) -> int:
        return await self._ordered(self._purge_expired, now_ms)

    async def count(self) -> int:
        return await self._ordered(self._count)

    async def owners(self) -> list[str]:
        return await self._ordered(self._owners)

    async def messages_of(self, pubkeys: Sequence[str], now_ms: int) -> list[Message]:
        return await self._ordered(self._messages_of, pubkeys, now_ms)

    async def all_messages(self, now_ms: int) -> list[Message]:
        return await self._ordered(self._all_messages, now_ms)

    async def delete_hashes(self, hashes: Sequence[str]) -> int:
        return await self._ordered(self._delete_hashes, hashes)
