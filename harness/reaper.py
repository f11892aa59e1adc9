"""``python -m harness.reaper NAME --owner-pid P [--owner-start T]``: the reaper of one leased
testnet (started by ``Testnet.up(lease=True)``; see :mod:`harness.lease` for the design). It is
its own module so that nothing imports it: ``-m`` then runs it without a second copy."""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness.lease import watch
from harness.state import state_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.reaper",
        description="Remove a leased testnet when its owner process dies (started by "
                    "Testnet.up(lease=True); not meant to be run by hand).")
    parser.add_argument("name", help="the testnet's name")
    parser.add_argument("--owner-pid", type=int, required=True, help="the lease owner's pid")
    parser.add_argument("--owner-start", type=int, default=None,
                        help="the lease owner's start time (/proc/PID/stat field 22)")
    args = parser.parse_args(argv)
    home = state_home()
    outcome = watch(args.name, args.owner_pid, args.owner_start, home)
    print(json.dumps({"time": time.time(), "testnet": args.name, "owner_pid": args.owner_pid,
                      "outcome": outcome}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
