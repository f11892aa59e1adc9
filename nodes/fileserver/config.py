"""Command line of the file server (docs/fileserver.md)."""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_KEY_SEED, SecretError, read_secret
from nodes.protocol.constants import ADMIN_PORT

#: the file server's HTTP port in a testnet (production listens on 80 behind its host name; a
#: testnet process may not bind ports below 1024)
FILESERVER_PORT = 22050
#: production's limit (session-file-server config_base.MAX_FILE_SIZE)
MAX_FILE_SIZE = 6_000_000
#: production's expiry (config_base.FILE_EXPIRY = '3 weeks')
FILE_EXPIRY_S = 21 * 24 * 3600


class ConfigError(ValueError):
    """A command-line value is invalid; the message says which flag and why."""


@dataclass(frozen=True)
class Config:
    ip: str
    public_ip: str
    port: int
    admin_port: int
    data_dir: Path
    key_seed_hex: str
    admin_token: str = ""
    max_file_size: int = MAX_FILE_SIZE
    file_expiry: float = FILE_EXPIRY_S
    purge_interval: float = 30.0
    log_file: Path | None = None
    name: str = "fileserver"
    log_level: str = "info"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.fileserver",
                                description="Session testnet file server (HTTP + v4 onion requests).")
    p.add_argument("--ip", required=True, help="address to bind the HTTP and admin ports to")
    p.add_argument("--public-ip", help="address the server is reached at (default: --ip)")
    p.add_argument("--port", type=int, default=FILESERVER_PORT, help="HTTP port")
    p.add_argument("--admin-port", type=int, default=ADMIN_PORT, help="plain-HTTP admin port")
    p.add_argument("--data-dir", required=True, type=Path, help="directory for files/ and files.db")
    p.add_argument("--key-seed-file", type=Path,
                   help=f"file holding the server's Ed25519 seed, 64 hex chars (default ${ENV_KEY_SEED})")
    p.add_argument("--admin-token-file", type=Path,
                   help=f"file holding the admin port's bearer token (default ${ENV_ADMIN_TOKEN})")
    p.add_argument("--max-file-size", type=int, default=MAX_FILE_SIZE,
                   help=f"largest upload in bytes (production: {MAX_FILE_SIZE})")
    p.add_argument("--file-expiry", type=float, default=FILE_EXPIRY_S,
                   help="seconds a file is kept after upload (production: 3 weeks)")
    p.add_argument("--purge-interval", type=float, default=30.0,
                   help="seconds between removals of expired files")
    p.add_argument("--log-file", type=Path, help="JSON-lines log file (default stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--name", default="fileserver", help="name used in logs")
    return p


def _ip(value: str, flag: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected an IPv4 address such as 127.3.0.4") from None


def parse_args(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    try:
        key = read_secret(args.key_seed_file, ENV_KEY_SEED, "--key-seed-file").strip().lower()
        admin_token = read_secret(args.admin_token_file, ENV_ADMIN_TOKEN, "--admin-token-file")
    except SecretError as e:
        raise ConfigError(str(e)) from None
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ConfigError(f"no usable key seed: give --key-seed-file FILE or set ${ENV_KEY_SEED} "
                          "(64 hex characters, the server's Ed25519 seed)")
    for flag, port in (("--port", args.port), ("--admin-port", args.admin_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} {port}: must be a TCP port 1-65535")
    if args.max_file_size < 1:
        raise ConfigError(f"--max-file-size must be >= 1 byte, got {args.max_file_size}")
    for flag, val in (("--file-expiry", args.file_expiry), ("--purge-interval", args.purge_interval)):
        if val <= 0:
            raise ConfigError(f"{flag} must be > 0 seconds, got {val}")
    ip = _ip(args.ip, "--ip")
    return Config(ip=ip, public_ip=_ip(args.public_ip, "--public-ip") if args.public_ip else ip,
                  port=args.port, admin_port=args.admin_port, data_dir=args.data_dir,
                  key_seed_hex=key, admin_token=admin_token, max_file_size=args.max_file_size,
                  file_expiry=args.file_expiry, purge_interval=args.purge_interval,
                  log_file=args.log_file, name=args.name, log_level=args.log_level)
