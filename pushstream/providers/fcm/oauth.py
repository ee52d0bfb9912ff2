"""The FCM OAuth decisions of a send, as pure functions over plain values (the client does the fetching).

- `token_fetch`: single flight: whether a send that needs a token (none yet, near expiry, or the one a 401
  refused) joins the fetch under way, uses the token it finds, or starts the one fetch;
- `bearer_still_valid`: whether the token last found valid can be used without asking google-auth again.
"""

from __future__ import annotations

from typing import Literal

TokenFetch = Literal["join", "fresh", "fetch"]


def token_fetch(fetching: bool, current: str | None, stale: str | None, valid: bool) -> TokenFetch:
    """What a send does that needs a token newer than ``stale`` (None: any valid one).

    ``join`` while a fetch is under way (however many sends need it, one fetch); ``fresh`` when the
    credentials hold a ``valid`` token other than the refused one (another send refreshed it); else ``fetch``.
    """
    if fetching:
        return "join"
    if current is not None and current != stale and valid:
        return "fresh"
    return "fetch"


def bearer_still_valid(token: object, expiry: object, checked: tuple[object, object, float], now: float) -> bool:
    """True when the credentials' ``token`` and ``expiry`` are the very objects last found valid, and
    ``now`` is before the refresh threshold computed then (``checked`` = token, expiry, until)."""
    return token is not None and token is checked[0] and expiry is checked[1] and now < checked[2]
