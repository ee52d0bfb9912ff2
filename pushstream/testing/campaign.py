"""What one test campaign cost: per device, the requests the fake providers received and the final statuses.

One type for every campaign run under faults: a worker or role process SIGKILLed part-way
(tests/integration/crash.py, `python -m benchmarks.crash`) and the broker faults of tests/integration/faults.py.
Plain counting over what the fakes recorded and the status records read back; nothing here runs anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

Request = tuple[float, "int | None", str]  # arrival time, client port, path of one provider request


@dataclass
class CampaignOutcome:
    """``devices`` are the ids the campaign targets; ``dead_ports`` the local ports of processes SIGKILLed
    during it (a request that came on one may be repeated by the process's successor). ``killed_at`` is when the
    one kill of a crash campaign happened (None for fault campaigns, which note their ``steps`` instead)."""

    notification_id: str
    devices: set[str]
    requests: dict[str, list[Request]] = field(default_factory=dict)  # device → its provider requests
    finals: Counter[str] = field(default_factory=Counter)  # device → final status records
    statuses: Counter[str] = field(default_factory=Counter)  # final status → devices
    dead_ports: set[int] = field(default_factory=set)
    killed: str = ""  # the process a crash campaign killed
    killed_at: float | None = None
    steps: list[str] = field(default_factory=list)  # fault label @ pushed requests when taken
    pushed_at_steps: list[int] = field(default_factory=list)  # provider requests seen when each step was taken
    seconds: float = 0.0

    def add_request(self, device: str, at: float, port: int | None, path: str) -> None:
        self.requests.setdefault(device, []).append((at, port, path))

    @property
    def sent(self) -> int:
        return sum(len(seen) for seen in self.requests.values())

    @property
    def repeated(self) -> int:
        """Devices pushed more than once."""
        return sum(1 for seen in self.requests.values() if len(seen) > 1)

    @property
    def duplicated(self) -> int:
        """Requests beyond the first per device."""
        return sum(len(seen) - 1 for seen in self.requests.values() if len(seen) > 1)

    @property
    def unexplained_duplicates(self) -> int:
        """Repeats whose earlier request did not come on a connection of a process that was then SIGKILLed."""
        return sum(1 for seen in self.requests.values()
                   for _, port, _ in sorted(seen, key=lambda s: s[0])[:-1] if port not in self.dead_ports)

    @property
    def killed_after(self) -> int:
        """Provider requests that arrived before the kill."""
        if self.killed_at is None:
            return 0
        return sum(1 for seen in self.requests.values() for at, _, _ in seen if at <= self.killed_at)

    @property
    def after_kill(self) -> Counter[str]:
        """Device → requests that arrived after the kill on connections of the processes still alive."""
        counts: Counter[str] = Counter()
        if self.killed_at is not None:
            for device, seen in self.requests.items():
                counts[device] = sum(1 for at, port, _ in seen if at > self.killed_at and port not in self.dead_ports)
        return +counts

    @property
    def repeated_after_kill(self) -> int:
        return sum(1 for n in self.after_kill.values() if n > 1)

    @property
    def missing_at_fakes(self) -> int:
        """Targeted devices no provider request reached."""
        return len(self.devices - set(self.requests))

    @property
    def without_final(self) -> int:
        """Targeted devices without a final status."""
        return len(self.devices - set(self.finals))

    @property
    def lost(self) -> int:
        """Devices without a final status, or with a final status but never pushed."""
        return self.without_final + self.missing_at_fakes

    @property
    def multiple_finals(self) -> int:
        return sum(1 for n in self.finals.values() if n > 1)

    def summary(self) -> str:
        text = (f"{self.notification_id}: {len(self.devices)} devices in {self.seconds:.0f}s; "
                f"sent {self.sent}, delivered {self.statuses.get('delivered', 0)}, "
                f"repeated {self.repeated} (duplicated {self.duplicated}, unexplained by a kill "
                f"{self.unexplained_duplicates}), dead-lettered {self.statuses.get('dead_lettered', 0)}, "
                f"without a final status {self.without_final}, never pushed {self.missing_at_fakes}, "
                f"devices with >1 final status {self.multiple_finals}, finals {dict(self.statuses)}")
        if self.killed_at is not None:
            text += (f"; killed {self.killed} after {self.killed_after} sends, repeated after the kill "
                     f"{self.repeated_after_kill}" + self._repeats_after_kill())
        if self.steps:
            text += f"; faults: {', '.join(self.steps)}"
        return text

    def _repeats_after_kill(self, limit: int = 3) -> str:
        """A few devices pushed twice after the kill, with each request's time (relative to the kill) and
        client port (``dead`` when it was one of the killed process's)."""
        repeated = [d for d, n in self.after_kill.items() if n > 1][:limit]
        if not repeated or self.killed_at is None:
            return ""
        killed_at = self.killed_at

        def show(device: str) -> str:
            return device + " " + ", ".join(
                f"{at - killed_at:+.2f}s {'dead' if port in self.dead_ports else port} {path[:40]}"
                for at, port, path in self.requests.get(device, []))
        return "; e.g. " + " | ".join(show(d) for d in repeated)
