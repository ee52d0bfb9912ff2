"""HTTP API served by every worker (contract §4)."""
