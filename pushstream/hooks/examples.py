"""Example hooks, to copy (and used by the tests).

    apps:
      demo:
        hooks: {pre_send: "pushstream.hooks.examples:quiet_vips_and_utm"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushstream.rules.hooks import KEEP, PreSend, adjust, drop

QUIET_TAG = "vip_quiet"


def quiet_vips_and_utm(notification: Mapping[str, Any], user: Mapping[str, Any],
                       device: Mapping[str, Any]) -> PreSend:
    """Devices tagged ``vip_quiet`` get no marketing (suppressed ``vip_quiet``); every other marketing send
    carries ``utm_source=push`` and ``utm_campaign=<notification id>`` in its data."""
    if notification.get("channel") != "marketing":
        return KEEP
    if QUIET_TAG in (device.get("tags") or ()):
        return drop(QUIET_TAG)
    return adjust(data={**(notification.get("data") or {}), "utm_source": "push",
                        "utm_campaign": str(notification["id"])})


def record_outcomes(outcomes: list[dict[str, Any]]) -> None:
    """A post-send hook that keeps the outcomes it is given in ``SEEN`` (for a test or a REPL)."""
    SEEN.extend(outcomes)


SEEN: list[dict[str, Any]] = []
