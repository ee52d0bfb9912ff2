"""The all-in-one entry: `faust -A pushstream.app worker` (``PUSHSTREAM_ROLE=router`` for the router alone)."""

from __future__ import annotations

import os

from pushstream.factory import create_app
from pushstream.runtime import load_runtime

app = create_app(load_runtime(), role=os.environ.get("PUSHSTREAM_ROLE", "all"))
