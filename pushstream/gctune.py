"""Garbage collection for long-running pipeline processes.

CPython's default thresholds (700 allocations for a young collection) made the collector run thousands of
times a second in the router and the senders, which allocate a few dicts per device; the older generations,
holding every imported module, Faust's and aiokafka's objects and the caches, were traversed again and again
(py-spy put 9% of the router's busy samples on one allocation line of `rules.preferences.record_sent`).
Freezing what start-up built and collecting young objects every 50,000 allocations keeps the collector for the
reference cycles it exists for. ``PUSHSTREAM_GC=default`` keeps CPython's settings (for comparisons).
"""

from __future__ import annotations

import gc
import os

THRESHOLDS = (50_000, 20, 100)


def tune() -> bool:
    """Freeze the objects built so far (imports, configuration) and raise the collection thresholds; called once
    by each role's start-up. Returns whether the settings were changed."""
    if os.environ.get("PUSHSTREAM_GC", "").lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True
