"""The mass-deactivation guard of one (app, provider): too many dead tokens at once is our fault, not theirs.

Sandbox tokens sent to production APNs (or a wrong bundle id, or another project's FCM tokens) make *every*
answer a per-device rejection (`400 BadDeviceToken`). Taken at their word, they would deactivate every device
of the app in one send. So the sender feeds every sent batch's answers here (`observe`) before settling it:
when the invalid-token answers of the last ``window_seconds`` reach ``share`` of at least ``min_answers``
answers, the guard trips. While it is tripped those answers are held (retried later, the device untouched)
instead of deactivating, and the caller keeps the provider's breaker open.

Too few answers to judge yet (a notification's first small batches) but already at or over the share, with at
least ``confirm_min_invalid`` invalid ones: those are held for up to ``confirm_seconds`` from the first such
answer (the guard is "suspicious"), so the rest of the burst can arrive and trip it. So at most
``confirm_min_invalid - 1`` devices are deactivated before a burst trips the guard, and a handful of dead tokens
(the everyday case) is believed at once; a suspicious few cost one ``confirm_seconds`` delay, then are believed.

Reset: the breaker's half-open probes keep testing the provider; a probe whose invalid share is below
``share`` (the configuration was fixed) resets the guard (`observe(..., probe=True)`). A restarted sender
starts with a fresh guard, which trips again on the first window if nothing was fixed.
"""

from __future__ import annotations

from collections import deque

from pushstream.policies import GuardPolicy


class InvalidationGuard:
    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self.tripped = False
        self.trips = 0
        self.window_invalid = 0  # what the window held when it last tripped or now
        self.window_answers = 0
        self.suspect_since: float | None = None  # too few answers to judge, but over the share, since then
        self._window: deque[tuple[float, int, int]] = deque()

    def observe(self, now: float, invalid: int, answers: int, *, probe: bool = False) -> bool:
        """Feed one sent batch's answers; True: hold this batch's invalid-token answers (do not deactivate)."""
        if answers <= 0:
            return self.tripped
        policy = self.policy
        if self.tripped:
            if probe and invalid < policy.share * answers:
                self.reset()
                return False
            return True
        self._window.append((now, invalid, answers))
        self.window_invalid += invalid
        self.window_answers += answers
        horizon = now - policy.window_seconds
        while self._window and self._window[0][0] < horizon:
            _, old_invalid, old_answers = self._window.popleft()
            self.window_invalid -= old_invalid
            self.window_answers -= old_answers
        if self.window_answers >= policy.min_answers and self.window_invalid >= policy.share * self.window_answers:
            self.tripped, self.suspect_since = True, None
            self.trips += 1
            return True
        if (invalid and self.window_invalid >= policy.confirm_min_invalid
                and self.window_invalid >= policy.share * self.window_answers):
            if self.suspect_since is None:
                self.suspect_since = now
            return now - self.suspect_since < policy.confirm_seconds
        if self.window_invalid < policy.share * self.window_answers:
            self.suspect_since = None
        return False

    def hold_seconds(self, now: float) -> float | None:
        """While suspicious (not tripped): how long held answers wait, until the confirmation time is over."""
        if self.tripped or self.suspect_since is None:
            return None
        return max(0.5, self.suspect_since + self.policy.confirm_seconds - now)

    def reset(self) -> None:
        """Trust the provider's invalid-token answers again, with an empty window."""
        self.tripped, self.suspect_since = False, None
        self._window.clear()
        self.window_invalid = self.window_answers = 0
