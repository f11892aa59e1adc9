"""``python -m nodes.udprelay``: run the UDP relay (see relay.py)."""

import sys

from .relay import main

sys.exit(main())
