"""Test-suite settings: testnets started by tests live in their own state home, so they never
touch a user's own testnets, and leftovers of a crashed run are swept by the next one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SESSION_TESTNET_HOME",
                      str(Path(tempfile.gettempdir()) / f"session-testnet-tests-{os.getuid()}"))
