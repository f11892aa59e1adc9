"""The seed as an oxend stand-in for real storage servers (OxenMQ over ZeroMQ, pyzmq).

* :mod:`.config` — which real nodes the seed serves (a JSON file) and the keys it hands them;
* :mod:`.framing` — OxenMQ framing (HI/HELLO, REPLY, UNKNOWNCOMMAND, pushes);
* :mod:`.commands` — the six oxend commands, answered from the seed's registry (pure);
* :mod:`.observations` — pings and peer reports the servers sent;
* :mod:`.server` — one ROUTER socket per real node, ``notify.block`` pushes.

See docs/nodes.md ("Real storage servers") for the contract.

Only :mod:`.server` needs pyzmq; it is imported where real nodes are configured, so a seed without
real nodes runs where pyzmq is not installed.
"""

from .commands import COMMANDS, OxendCommands
from .config import ENV_NODES_FILE, OxenMQConfigError, RealNodeSpec, load_real_nodes, oxend_privkeys

__all__ = ["COMMANDS", "ENV_NODES_FILE", "OxenMQConfigError", "OxendCommands", "RealNodeSpec",
           "load_real_nodes", "oxend_privkeys"]
