"""What one APNs send decides, as pure functions over plain values (the client does the I/O around them).

- `request_headers`: the header list of one push, in the order HPACK indexes best;
- `next_step`: after an answer, reconnect (once), renew the provider token (once) or be done;
- `token_renewal`: whether an ExpiredProviderToken/403 re-signs the shared JWT now.
"""

from __future__ import annotations

from typing import Literal

from pushstream.providers.h2state import Header
from pushstream.providers.outcome import Action, Verdict

Step = Literal["reconnect", "renew_token", "done"]
Renewal = Literal["renewed_elsewhere", "too_soon", "sign"]


def request_headers(head: list[Header], token: bytes, common: list[Header], apns_id: bytes,
                    tail: list[Header]) -> list[Header]:
    """Every header of one push but ``authorization`` (added per attempt: a re-auth resend carries the new JWT).

    ``head`` (method, scheme, authority), ``common`` (host, topic) and ``tail`` (priority, expiration,
    collapse id, push type) are shared by a sender or a batch and HPACK-indexed; ``:path`` and ``apns-id``
    are unique per push, so they are never-indexed literals: indexing them would only churn the table.
    """
    return [*head, (b":path", b"/3/device/" + token, True), *common, (b"apns-id", apns_id, True), *tail]


def next_step(verdict: Verdict, reconnect: bool, reconnected: bool, reauthed: bool) -> Step:
    """After one APNs answer: ``reconnect`` (the table's row says so: resend once on a fresh connection),
    ``renew_token`` (REAUTH: resend once with a renewed JWT, if `token_renewal` allows) or ``done``."""
    if reconnect and not reconnected:
        return "reconnect"
    if verdict.action is Action.REAUTH and not reauthed:
        return "renew_token"
    return "done"


def token_renewal(issued_at: int, rejected_issued_at: int, now: float, min_interval: float) -> Renewal:
    """Whether APNs rejecting the JWT issued at ``rejected_issued_at`` re-signs the shared one now.

    ``renewed_elsewhere`` when another send renewed it since (resend with the current one); ``too_soon``
    within ``min_interval`` of the last signing (Apple answers TooManyProviderTokenUpdates to faster
    renewals: give the verdict back instead); else ``sign``.
    """
    if issued_at != rejected_issued_at:
        return "renewed_elsewhere"
    if now - issued_at < min_interval:
        return "too_soon"
    return "sign"
