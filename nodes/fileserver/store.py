"""Files on disk with an SQLite index (size, upload time, expiry).

Layout as production's (config_base.FILE_BASE_PATH): ``DATA_DIR/files/<last 3 digits of the
id>/<id>``; the index is ``DATA_DIR/files.db``. Ids are decimal strings of random 53-bit
integers (production's BACKWARDS_COMPAT_IDS: clients keep ids in a double).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

ID_BITS = 53
_ID_RE = re.compile(r"^[0-9]{1,16}$")


def new_file_id() -> str:
    return str(secrets.randbits(ID_BITS))


def is_file_id(text: str) -> bool:
    """Ids are 1-16 decimal digits; anything else is never a stored file (404)."""
    return bool(_ID_RE.match(text)) and int(text) < (1 << ID_BITS)


@dataclass(frozen=True)
class FileInfo:
    file_id: str
    size: int
    uploaded: float
    expires: float


class FileStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "files"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(data_dir / "files.db"), isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                        " uploaded REAL NOT NULL, expires REAL NOT NULL)")

    def close(self) -> None:
        self.db.close()

    def path(self, file_id: str) -> Path:
        return self.root / file_id[-3:].rjust(3, "0") / file_id

    async def put(self, data: bytes, expiry_s: float) -> FileInfo:
        """Store ``data`` under a new id (retried on the rare collision, as production does)."""
        now = time.time()
        for _ in range(25):
            file_id = new_file_id()
            try:
                self.db.execute("INSERT INTO files (id, size, uploaded, expires) VALUES (?, ?, ?, ?)",
                                (file_id, len(data), now, now + expiry_s))
            except sqlite3.IntegrityError:
                continue
            try:
                await asyncio.to_thread(self._write, self.path(file_id), data)
            except OSError:
                self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))
                raise
            return FileInfo(file_id, len(data), now, now + expiry_s)
        raise OSError("25 random file ids in a row were taken")

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def info(self, file_id: str, now: float | None = None) -> FileInfo | None:
        """The file's index entry, or None if unknown or expired."""
        if not is_file_id(file_id):
            return None
        row = self.db.execute("SELECT size, uploaded, expires FROM files WHERE id = ?",
                              (file_id,)).fetchone()
        if row is None or row[2] <= (time.time() if now is None else now):
            return None
        return FileInfo(file_id, int(row[0]), float(row[1]), float(row[2]))

    async def get(self, file_id: str) -> bytes | None:
        if self.info(file_id) is None:
            return None
        try:
            return await asyncio.to_thread(self.path(file_id).read_bytes)
        except FileNotFoundError:
            return None

    def purge(self, now: float | None = None) -> int:
        """Remove expired files; returns how many."""
        t = time.time() if now is None else now
        ids = [r[0] for r in self.db.execute("SELECT id FROM files WHERE expires <= ?", (t,))]
        for file_id in ids:
            self.path(file_id).unlink(missing_ok=True)
            self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return len(ids)

    def totals(self) -> tuple[int, int]:
        """(files, bytes) currently stored and not expired."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE expires > ?",
                              (time.time(),)).fetchone()
        return int(row[0]), int(row[1])
