"""``python -m nodes.seed``: run the seed until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_TESTNET_SEED, SecretError, read_secret
from nodes.common.logs import JsonLogger
from nodes.common.service import run_service
from nodes.protocol.constants import HARDFORK, SEED_HTTPS_PORT, SEED_PORT
from nodes.protocol.swarm import PRODUCTION, SwarmParams

from .app import SeedServer, build_server
from .omq import ENV_NODES_FILE, OxenMQConfigError, load_real_nodes
from .omq.commands import SERVER_BOOTSTRAP_THRESHOLD
from .registry import DEFAULT_START_HEIGHT, MIN_HARDFORK


def parse_hardfork(text: str) -> tuple[int, int]:
    """``"19.4"`` → (19, 4); raises ValueError."""
    major, sep, minor = text.strip().partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ValueError(f"--hardfork must be MAJOR.REVISION like 19.4, got {text!r}")
    hf = (int(major), int(minor))
    if hf < MIN_HARDFORK:
        raise ValueError(f"--hardfork must be at least {MIN_HARDFORK[0]}.{MIN_HARDFORK[1]} (the real storage "
                         f"server is never ready below it), got {text}")
    return hf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nodes.seed",
                                description="session-testnet seed: service-node directory (oxend stand-in)")
    p.add_argument("--host", default="127.0.0.1", help="IP to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=SEED_PORT, help="HTTP JSON-RPC port (default %(default)s)")
    p.add_argument("--https-port", type=int, default=SEED_HTTPS_PORT,
                   help="HTTPS port for the same app, 0 disables it (default %(default)s)")
    p.add_argument("--data-dir", type=Path, default=Path("seed-data"),
                   help="state (seed.json) and tls/ directory (default %(default)s)")
    p.add_argument("--testnet-seed", help="testnet seed string; block hashes and real nodes' keys derive from "
                                         "it; visible in ps: for manual runs (default --testnet-seed-file, "
                                         f"${ENV_TESTNET_SEED}, else \"0\")")
    p.add_argument("--testnet-seed-file", type=Path, help="file holding the testnet seed")
    p.add_argument("--expect", type=int, default=0,
                   help="number of registered nodes before the first block (default %(default)s: at once)")
    p.add_argument("--min-swarm-size", type=int, default=PRODUCTION.min_swarm_size)
    p.add_argument("--new-swarm-size", type=int, default=PRODUCTION.new_swarm_size)
    p.add_argument("--ideal-swarm-margin", type=int, default=PRODUCTION.ideal_swarm_margin)
    p.add_argument("--block-interval", type=float, default=1.0, help="seconds between blocks")
    p.add_argument("--proof-timeout", type=float, default=6.0,
                   help="deregister a node whose last proof is older than this many seconds")
    p.add_argument("--admin-token", help="bearer token of the admin endpoints; visible in ps: for manual runs "
                                        f"(default --admin-token-file, ${ENV_ADMIN_TOKEN}; empty disables them)")
    p.add_argument("--admin-token-file", type=Path, help="file holding the admin token")
    p.add_argument("--join-token-file", type=Path,
                   help=f"file holding the join token nodes must send with proofs (default ${ENV_JOIN_TOKEN}; "
                        "none: any node may register)")
    p.add_argument("--oxenmq-nodes", type=Path, default=os.environ.get(ENV_NODES_FILE) or None,
                   help="JSON file listing the real storage servers this seed serves as their oxend over "
                        f"OxenMQ (default ${ENV_NODES_FILE}; none: no OxenMQ endpoints); see docs/nodes.md")
    p.add_argument("--oxenmq-timeout", type=float, default=90.0,
                   help="deregister a real node silent on OxenMQ for this many seconds (default %(default)s; "
                        "real servers ping every 30 s)")
    p.add_argument("--oxenmq-min-nodes", type=int, default=SERVER_BOOTSTRAP_THRESHOLD,
                   help="hold a real server's first node list until the seed lists this many nodes (default "
                        "%(default)s: with fewer the server asks public seed nodes; 0 disables the guard)")
    p.add_argument("--hardfork", default=f"{HARDFORK[0]}.{HARDFORK[1]}",
                   help="[hardfork].[snode revision] the chain reports, >= 19.3 (default %(default)s)")
    p.add_argument("--start-height", type=int, default=DEFAULT_START_HEIGHT,
                   help="block height the chain starts at, as on a long-running network (default %(default)s; "
                        "height-gated ifelse requests compare against it); a restored state keeps its own")
    p.add_argument("--log-file", type=Path, default=None, help="JSON-lines log file (default stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    for name in ("port", "https_port"):
        v = getattr(args, name)
        if not 0 <= v <= 65535 or (name == "port" and v == 0):
            p.error(f"--{name.replace('_', '-')} must be a port number, got {v}")
    if args.expect < 0:
        p.error("--expect must be >= 0")
    if args.start_height < 0:
        p.error("--start-height must be >= 0")
    if args.oxenmq_min_nodes < 0:
        p.error("--oxenmq-min-nodes must be >= 0")
    if args.block_interval <= 0 or args.proof_timeout <= 0 or args.oxenmq_timeout <= 0:
        p.error("--block-interval, --proof-timeout and --oxenmq-timeout must be > 0")
    try:
        if args.testnet_seed is None:
            args.testnet_seed = read_secret(args.testnet_seed_file, ENV_TESTNET_SEED, "--testnet-seed-file",
                                            default="0") or "0"
        if args.admin_token is None:
            args.admin_token = read_secret(args.admin_token_file, ENV_ADMIN_TOKEN, "--admin-token-file")
        args.join_token = read_secret(args.join_token_file, ENV_JOIN_TOKEN, "--join-token-file")
    except SecretError as exc:
        p.error(str(exc))
    try:
        args.hardfork = parse_hardfork(args.hardfork)
    except ValueError as exc:
        p.error(str(exc))
    args.real_nodes = []
    if args.oxenmq_nodes is not None:
        try:
            args.real_nodes = load_real_nodes(Path(args.oxenmq_nodes))
        except OxenMQConfigError as exc:
            p.error(str(exc))
    try:
        args.params = SwarmParams(min_swarm_size=args.min_swarm_size, ideal_swarm_margin=args.ideal_swarm_margin,
                                  new_swarm_size=args.new_swarm_size)
    except ValueError as exc:
        p.error(str(exc))
    return args


async def run(args: argparse.Namespace) -> int:
    logger = JsonLogger("seed", args.log_file, level=args.log_level)
    server: SeedServer | None = None

    async def start() -> None:
        nonlocal server
        server = build_server(host=args.host, port=args.port, https_port=args.https_port,
                              data_dir=args.data_dir, testnet_seed=args.testnet_seed, expect=args.expect,
                              params=args.params, block_interval=args.block_interval,
                              proof_timeout=args.proof_timeout, admin_token=args.admin_token,
                              logger=logger, real_nodes=args.real_nodes, hardfork=args.hardfork,
                              oxenmq_timeout=args.oxenmq_timeout, oxenmq_min_nodes=args.oxenmq_min_nodes,
                              start_height=args.start_height, join_token=args.join_token)
        await server.start()

    async def stop() -> None:
        if server is not None:
            await server.stop()

    try:
        return await run_service("seed", logger, start, stop)
    finally:
        logger.close()


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
