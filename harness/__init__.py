"""session-testnet harness: what drives a testnet (topology, backends, client, faults, checks)."""

from harness.network import NotReadyError, Testnet, clean
from harness.topology import Topology

__all__ = ["Testnet", "Topology", "NotReadyError", "clean"]
