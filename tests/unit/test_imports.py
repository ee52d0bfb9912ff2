"""Importing a module does nothing: no config is read and no Faust app is built, except by pushstream.app,
the one entry point (`faust -A pushstream.app worker`)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pushstream
from pushstream.agents.senders import SentMemory

ENTRY_POINTS = {"pushstream.app", "pushstream.testing.fakes.__main__"}


def test_every_module_imports_without_a_config() -> None:
    names = sorted(m.name for m in pkgutil.walk_packages(pushstream.__path__, "pushstream.")
                   if m.name not in ENTRY_POINTS)
    code = (
        "import importlib, sys, faust\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "assert 'pushstream.app' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={"PUSHSTREAM_CONFIG": "/nonexistent/pushstream.yaml",
                                                              "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(names) > 40


def test_sent_memory_keeps_the_newest_ids_within_its_cap() -> None:
    memory = SentMemory(cap=3)
    for n in range(5):
        memory.add(f"b{n}")
    assert len(memory) == 3
    assert "b0" not in memory and "b1" not in memory and "b4" in memory
