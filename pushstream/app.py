"""The all-in-one entry: `faust -A pushstream.app worker` (``PUSHSTREAM_ROLE=router`` for the router alone)."""

from __future__ import annotations

import os
import sys

from pushstream.config import ConfigError
from pushstream.credentials import check_credentials
from pushstream.factory import create_app
from pushstream.runtime import load_runtime, with_hooks

try:
    _rt = load_runtime()
    check_credentials(_rt.settings)  # a bad key stops the worker here, with one message (no traceback)
    _rt = with_hooks(_rt)  # so does a hook that cannot be imported
except ConfigError as _exc:
    print(f"pushstream: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

app = create_app(_rt, role=os.environ.get("PUSHSTREAM_ROLE", "all"))
