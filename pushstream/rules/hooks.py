"""What a per-app pre-send hook may answer, and what the router makes of it. Pure.

A hook returns `KEEP` (or None), `drop(reason)` or `adjust(title=..., body=..., data=...)`; anything else, an
exception or a blown time budget is a hook error: that device is dead-lettered with reason `hook_error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HOOK_ERROR = "hook_error"
ADJUSTABLE = frozenset({"title", "body", "data"})
MAX_REASON = 64


@dataclass(frozen=True)
class PreSend:
    """A pre-send hook's answer for one device: ``keep``, ``drop`` (with the `suppressed` reason) or ``adjust``
    (``changes`` replace the notification's title, body or data for this device)."""

    action: str
    reason: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)


KEEP = PreSend("keep")
ERROR = PreSend("error", HOOK_ERROR)


def drop(reason: str) -> PreSend:
    return PreSend("drop", reason)


def adjust(**changes: Any) -> PreSend:
    return PreSend("adjust", changes=changes)


def interpret(answer: Any) -> PreSend:
    """The hook's return value as a verdict; `ERROR` for anything a hook may not answer."""
    if answer is None:
        return KEEP
    if not isinstance(answer, PreSend):
        return ERROR
    if answer.action == "keep":
        return KEEP
    if answer.action == "drop":
        ok = isinstance(answer.reason, str) and 0 < len(answer.reason) <= MAX_REASON
        return answer if ok else ERROR
    if answer.action == "adjust":
        changes = answer.changes
        if not changes:
            return KEEP
        if set(changes) - ADJUSTABLE:
            return ERROR
        texts_ok = all(isinstance(changes[k], str) for k in ("title", "body") if k in changes)
        data = changes.get("data", {})
        data_ok = isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
        return answer if texts_ok and data_ok else ERROR
    return ERROR
