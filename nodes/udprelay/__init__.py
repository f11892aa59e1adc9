"""A plain UDP relay: ``python -m nodes.udprelay --config FILE`` (see relay.py)."""
