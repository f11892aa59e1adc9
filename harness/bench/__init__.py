"""`testnet bench`: speed and memory of a testnet, measured the same way for every node
implementation, and side by side (``--versus``) as ratios.

- :mod:`harness.bench.load` — the load: onion-routed messages, direct stores, store and
  retrieve throughput;
- :mod:`harness.bench.memory` — resident memory per node (``/proc`` or docker stats);
- :mod:`harness.bench.figures` — the pure arithmetic (percentiles, throughput, ratios);
- :mod:`harness.bench.run` — one run on one or two testnets, and its JSON shape;
- :mod:`harness.bench.cli` — the command and its table.
"""

from harness.bench.cli import bench
from harness.bench.run import run_bench

commands = [bench]

__all__ = ["bench", "commands", "run_bench"]
