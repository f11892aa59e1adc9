"""``python -m nodes.toxiproxy``: run the Toxiproxy-compatible server (see server.py)."""

import sys

from .server import main

sys.exit(main())
