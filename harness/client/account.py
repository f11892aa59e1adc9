"""Session accounts: an Ed25519 seed, its Session ID, and the account file format.

File format (JSON, written with mode 0600 because the seed is the account's secret)::

    {"session_id": "05…", "seed": "<64 hex characters: the Ed25519 seed>"}

``session_id`` is redundant (it derives from the seed) and is checked on load so that a file
edited by hand or truncated is reported instead of silently becoming another account.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.protocol.keys import Identity, SessionID

from .errors import AccountError

FILE_MODE = 0o600


@dataclass(frozen=True)
class Account:
    """A Session account (``05`` Session ID) given by its Ed25519 identity."""

    identity: Identity

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def generate(cls) -> Account:
        return cls(Identity.generate())

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> Account:
        try:
            return cls(Identity.from_seed_hex(seed_hex))
        except ValueError as exc:
            raise AccountError(f"invalid account seed: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "account data") -> Account:
        if not isinstance(data, dict):
            raise AccountError(
                f"{source}: expected a JSON object {{\"session_id\", \"seed\"}}, "
                f"got {type(data).__name__}")
        seed = data.get("seed")
        if seed is None:
            raise AccountError(f"{source}: missing key 'seed' (64 hex characters, the Ed25519 seed)")
        if not isinstance(seed, str) or len(seed.strip()) != 64:
            raise AccountError(f"{source}: 'seed' must be 64 hex characters (a 32-byte Ed25519 seed)")
        try:
            identity = Identity.from_seed_hex(seed)
        except ValueError:
            raise AccountError(f"{source}: 'seed' is not hex") from None
        account = cls(identity)
        sid = data.get("session_id")
        if sid is not None:
            if not isinstance(sid, str):
                raise AccountError(f"{source}: 'session_id' must be a string")
            try:
                SessionID.parse(sid)
            except ValueError as exc:
                raise AccountError(f"{source}: 'session_id' is invalid: {exc}") from None
            if sid.lower() != account.session_id:
                raise AccountError(
                    f"{source}: 'session_id' {sid} does not belong to this seed (the seed gives "
                    f"{account.session_id}); the file was edited or mixed up with another account")
        return account

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Account:
        """Read an account file; AccountError says what is wrong with it."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AccountError(
                f"account file {p} does not exist; create one with 'testnet account new -o {p}'"
            ) from None
        except IsADirectoryError:
            raise AccountError(f"account file {p} is a directory") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AccountError(f"account file {p} cannot be read: {exc}") from None
        if not text.strip():
            raise AccountError(f"account file {p} is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AccountError(f"account file {p} is not JSON: {exc}") from None
        return cls.from_dict(data, source=f"account file {p}")

    # -- properties ----------------------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self.identity.session_id

    @property
    def seed_hex(self) -> str:
        return self.identity.seed_hex

    def to_dict(self) -> dict[str, str]:
        return {"session_id": self.session_id, "seed": self.seed_hex}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the account file (mode 0600, atomically).  Refuses to replace an existing file
        unless ``overwrite`` (an account file is a secret key: losing one loses the account)."""
        p = Path(path)
        if p.exists() and not overwrite:
            raise AccountError(f"account file {p} already exists; refusing to overwrite it")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise AccountError(f"cannot write account file {p}: directory {parent} does not exist")
        try:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp")
        except OSError as exc:
            raise AccountError(f"cannot write account file {p}: {exc}") from None
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json() + "\n")
            os.replace(tmp, p)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise AccountError(f"cannot write account file {p}: {exc}") from None
        return p

    def __repr__(self) -> str:
        return f"Account(session_id={self.session_id!r})"
