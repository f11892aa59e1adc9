"""Command line of the storage node (docs/DESIGN.md "Storage node")."""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED, SecretError, read_secret
from nodes.protocol.constants import ADMIN_PORT, LMQ_PORT, STORAGE_PORT

from .server_forward import IPNetwork, parse_networks


class ConfigError(ValueError):
    """A command-line value is invalid; the message says which flag and why."""


@dataclass(frozen=True)
class Config:
    ip: str
    public_ip: str
    port: int
    admin_port: int
    lmq_port: int
    seed_url: str
    data_dir: Path
    key_seed_hex: str
    #: bearer token of the admin port (empty: every admin call is refused)
    admin_token: str = ""
    #: sent with proofs so the seed accepts this node (empty: none sent)
    join_token: str = ""
    proof_interval: float = 1.0
    poll_interval: float = 1.0
    rate_limit: float = 0.0  # requests per second per client IP; 0 = off
    log_file: Path | None = None
    name: str | None = None
    log_level: str = "info"
    # timeouts (seconds)
    fanout_timeout: float = 5.0
    relay_timeout: float = 10.0
    seed_timeout: float = 3.0
    purge_interval: float = 2.0
    #: networks (besides loopback) onion requests may be forwarded to (docs/fileserver.md)
    forward_allow: tuple[IPNetwork, ...] = ()


_RATE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:/\s*s)?\s*$")


def parse_rate(text: str | float | int | None) -> float:
    """'10/s', '10' or 2.5 -> requests per second (0 = off)."""
    if text is None:
        return 0.0
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _RATE_RE.match(text)
        if not m:
            raise ConfigError(f"--rate-limit {text!r}: expected N or N/s (requests per second)")
        value = float(m.group(1))
    if value < 0:
        raise ConfigError(f"--rate-limit must be >= 0, got {value}")
    return value


def _port(value: int, flag: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{flag} {value}: must be a TCP port 1-65535")
    return value


def _ipv4(value: str, flag: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected an IPv4 address such as 127.0.3.1") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nodes.snode",
        description="Session testnet storage service node (HTTPS storage RPC + onion requests).",
    )
    p.add_argument("--ip", required=True, help="address to bind the storage and admin ports to")
    p.add_argument("--public-ip", help="address advertised to the seed (default: --ip)")
    p.add_argument("--port", type=int, default=STORAGE_PORT, help="HTTPS storage port")
    p.add_argument("--admin-port", type=int, default=ADMIN_PORT, help="plain-HTTP admin port")
    p.add_argument("--lmq-port", type=int, default=LMQ_PORT, help="advertised OMQ port (not served)")
    p.add_argument("--seed-url", required=True, help="seed base URL, e.g. http://127.0.1.1:22023")
    p.add_argument("--data-dir", required=True, type=Path, help="directory for storage.db and tls/")
    p.add_argument("--key-seed-file", type=Path,
                   help=f"file holding the node's Ed25519 seed, 64 hex chars (default ${ENV_KEY_SEED})")
    p.add_argument("--key-seed", help="the seed itself; visible in ps to every local user: for manual "
                                      "runs only (the harness uses the environment)")
    p.add_argument("--admin-token-file", type=Path,
                   help=f"file holding the admin port's bearer token (default ${ENV_ADMIN_TOKEN}; "
                        "none: every admin call is refused)")
    p.add_argument("--join-token-file", type=Path,
                   help=f"file holding the testnet's join token sent with proofs (default ${ENV_JOIN_TOKEN})")
    p.add_argument("--proof-interval", type=float, default=1.0, help="seconds between proofs")
    p.add_argument("--poll-interval", type=float, default=1.0,
                   help="seconds between get_service_nodes polls")
    p.add_argument("--rate-limit", default="0", help="per-client-IP limit, N/s (default off)")
    p.add_argument("--log-file", type=Path, help="JSON-lines log file (default stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--name", help="node name used in logs (default: first 12 hex of the key)")
    p.add_argument("--fanout-timeout", type=float, default=5.0,
                   help="seconds to wait for each swarm member during fan-out")
    p.add_argument("--relay-timeout", type=float, default=10.0,
                   help="seconds to wait for the next onion hop before answering 504")
    p.add_argument("--forward-allow", action="append", default=[], metavar="CIDR",
                   help="a network (besides loopback) onion requests may be forwarded to, e.g. the "
                        "testnet's container network; repeatable")
    return p


def parse_args(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    ip = _ipv4(args.ip, "--ip")
    public_ip = _ipv4(args.public_ip, "--public-ip") if args.public_ip else ip
    seed_url = args.seed_url.rstrip("/")
    if not seed_url.startswith(("http://", "https://")):
        raise ConfigError(f"--seed-url {args.seed_url!r}: expected http://HOST:PORT or https://HOST:PORT")
    try:
        key = (args.key_seed or read_secret(args.key_seed_file, ENV_KEY_SEED, "--key-seed-file")).lower()
        admin_token = read_secret(args.admin_token_file, ENV_ADMIN_TOKEN, "--admin-token-file")
        join_token = read_secret(args.join_token_file, ENV_JOIN_TOKEN, "--join-token-file")
    except SecretError as e:
        raise ConfigError(str(e)) from None
    if not key:
        raise ConfigError(f"no key seed: give --key-seed-file FILE or set ${ENV_KEY_SEED}")
    if not re.fullmatch(r"[0-9a-f]{64}", key.strip()):
        raise ConfigError("--key-seed: expected 64 hex characters (the node's 32-byte Ed25519 seed)")
    key = key.strip()
    for flag, val in (("--proof-interval", args.proof_interval), ("--poll-interval", args.poll_interval),
                      ("--fanout-timeout", args.fanout_timeout), ("--relay-timeout", args.relay_timeout)):
        if val <= 0:
            raise ConfigError(f"{flag} must be > 0, got {val}")
    try:
        forward_allow = parse_networks(args.forward_allow)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Config(
        ip=ip,
        public_ip=public_ip,
        port=_port(args.port, "--port"),
        admin_port=_port(args.admin_port, "--admin-port"),
        lmq_port=_port(args.lmq_port, "--lmq-port"),
        seed_url=seed_url,
        data_dir=args.data_dir,
        key_seed_hex=key,
        admin_token=admin_token,
        join_token=join_token,
        proof_interval=args.proof_interval,
        poll_interval=args.poll_interval,
        rate_limit=parse_rate(args.rate_limit),
        log_file=args.log_file,
        name=args.name,
        log_level=args.log_level,
        fanout_timeout=args.fanout_timeout,
        relay_timeout=args.relay_timeout,
        forward_allow=forward_allow,
    )
