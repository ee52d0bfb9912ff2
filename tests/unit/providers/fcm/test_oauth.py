"""The FCM OAuth decisions without google-auth or a network (pushstream.providers.fcm.oauth, outcome.after_reauth)."""

from __future__ import annotations

import pytest

from pushstream.providers.fcm.classify import classify_fcm_answer
from pushstream.providers.fcm.oauth import bearer_still_valid, token_fetch
from pushstream.providers.outcome import Action, after_reauth

UNAUTHENTICATED = b'{"error":{"code":401,"status":"UNAUTHENTICATED","message":"bad token"}}'


@pytest.mark.parametrize(("fetching", "current", "stale", "valid", "expected"), [
    (True, None, None, False, "join"),  # a fetch is under way: everyone waits for that one
    (True, "tok-1", "tok-1", True, "join"),
    (False, None, None, False, "fetch"),  # no token yet
    (False, "tok-1", None, False, "fetch"),  # near expiry
    (False, "tok-1", None, True, "fresh"),
    (False, "tok-1", "tok-1", True, "fetch"),  # the token a 401 refused, though google-auth thinks it valid
    (False, "tok-2", "tok-1", True, "fresh"),  # another send refreshed it meanwhile
])
def test_token_fetch_is_single_flight(fetching: bool, current: str | None, stale: str | None, valid: bool,
                                      expected: str) -> None:
    assert token_fetch(fetching, current, stale, valid) == expected


def test_the_token_last_found_valid_is_reused_until_its_threshold_and_only_while_unchanged() -> None:
    token, expiry = "tok-1", object()
    checked = (token, expiry, 1000.0)

    assert bearer_still_valid(token, expiry, checked, now=999.0)
    assert not bearer_still_valid(token, expiry, checked, now=1000.0)
    assert not bearer_still_valid("tok-2", expiry, checked, now=10.0)  # refreshed: look again
    assert not bearer_still_valid(token, object(), checked, now=10.0)
    assert not bearer_still_valid(None, None, (None, None, 1000.0), now=10.0)


def test_a_401_renews_once_and_a_second_401_is_refused() -> None:
    unauthenticated = classify_fcm_answer(401, UNAUTHENTICATED)
    assert unauthenticated.action is Action.REAUTH

    assert after_reauth(unauthenticated, renewed=False) == "renew"
    assert after_reauth(unauthenticated, renewed=True) == "refused"
    assert after_reauth(classify_fcm_answer(200, b'{"name":"projects/p/messages/1"}'), renewed=False) == "done"
    assert after_reauth(classify_fcm_answer(429, b"{}"), renewed=True) == "done"
