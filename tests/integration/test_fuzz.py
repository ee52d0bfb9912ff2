"""Fuzzed input against a real router and sender process, the broker and the fakes: a hypothesis-generated
(fixed seed) mix of bad records on every input topic, interleaved with valid traffic, and fuzzed HTTP bodies.

- the processes stay up (the same pids from start to end);
- every bad record is in the DLQ exactly once, with the reason its decoder gives, its origin, and its value
  redacted (count equality: bad records published == their dead letters; nothing else is dead-lettered);
- every fuzzed HTTP body is a JSON 400 naming the same reason, never a 500;
- the valid traffic (registrations, preferences, notifications over Kafka and HTTP, a cancel, opens) is still
  delivered exactly once per device.
Printed: sent / delivered / duplicated / dead-lettered / lost, and the bad records per topic and reason.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import strategies as st

from pushstream.config import load_settings
from pushstream.models.base import Invalid
from pushstream.models.inputs import (
    decode_body,
    decode_device,
    decode_engagement,
    decode_notification,
    decode_preference,
)
from pushstream.models.redact import redact_bytes
from pushstream.models.status import FINAL_STATUSES
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.harness import DEMO_KEY, Kafka, RoleProcess, make_stack, wait_for
from tests.strategies import REASONS, damaged, draw_examples, json_values, near_valid, topic_inputs

USERS = 120  # an iPhone and an Android phone each; the first 30 also a browser
BROWSERS = 30
NOTIFICATIONS = 12  # 10 users each, disjoint: every device gets exactly one notification
VIA_HTTP = 4  # of them sent through POST /v1/apps/demo/notifications
BAD_PER_TOPIC = 100
NEAR_VALID = 60  # of them
BAD_BODIES = 40  # per route
PROVIDERS = ("apns", "fcm", "webpush")


def reason_of(decode: Any, raw: bytes) -> str | None:
    """The decoder's reason for rejecting ``raw``, None when it is valid (such draws are not published)."""
    try:
        decode(raw)
    except Invalid as error:
        return error.reason
    return None


def interleave(bad: list[bytes], good: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(max(len(bad), len(good))):
        out += bad[i:i + 1] + good[i:i + 1]
    return out


def letter_value(letter: dict[str, Any]) -> bytes:
    value = letter["value"]
    return base64.b64decode(value) if letter["value_encoding"] == "base64" else value.encode()


async def test_fuzzed_records_and_bodies_are_dead_lettered_or_refused_and_valid_traffic_is_delivered_once(
        tmp_path: Path, fakes: FakesProcess, processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    settings = load_settings(d.config_path)
    router_port, sender_port = free_port(), free_port()
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(router_port)], router_port)
    sender = RoleProcess(d, "tx", ["--role", "sender", "--lane", "transactional", "--web-port", str(sender_port)],
                         sender_port)
    for process in (router, sender):
        processes.append(process.start())
    for process in (router, sender):
        process.wait_ready()
    pids = {p.name: p.process.pid for p in (router, sender) if p.process is not None}

    # Bad records of every input topic (the decoder's verdict is the expected reason).
    endpoint = stack.subscription("fuzz")["endpoint"]
    decoders: dict[str, Any] = {
        "pushstream.devices": lambda raw: decode_device(raw, settings),
        "pushstream.preferences": lambda raw: decode_preference(raw, settings),
        "pushstream.notifications": lambda raw: decode_notification(raw, settings, received_at=0.0),
        "pushstream.engagement": lambda raw: decode_engagement(raw, settings),
    }
    bad: dict[str, list[bytes]] = {}
    expected: Counter[tuple[str, str]] = Counter()  # (topic, reason) → bad records
    for n, (topic, decode) in enumerate(decoders.items()):
        # Most of them near-valid (one field wrong, at any depth); the rest any bytes, any JSON, damaged JSON.
        near = draw_examples(near_valid(topic, "demo", endpoint).map(orjson.dumps), 3 * NEAR_VALID, 9000 + n)
        anything = draw_examples(topic_inputs(topic, "demo", endpoint), 3 * BAD_PER_TOPIC, 9500 + n)
        rejected = [raw for raw in dict.fromkeys(near) if reason_of(decode, raw) is not None][:NEAR_VALID]
        rejected += [raw for raw in dict.fromkeys(anything) if raw not in rejected and reason_of(decode, raw)]
        bad[topic] = rejected[:BAD_PER_TOPIC]
        assert len(bad[topic]) == BAD_PER_TOPIC, (topic, len(bad[topic]))
        for raw in bad[topic]:
            reason = reason_of(decode, raw)
            assert reason in REASONS
            expected[(d.topic(topic), reason)] += 1

    users = [f"u-{i:03d}" for i in range(USERS)]
    registrations: list[dict[str, Any]] = []
    for i, user in enumerate(users):
        registrations.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios",
                              "platform": "apns", "token": f"{i + 1:08x}" * 8})
        registrations.append({"type": "register", "app_id": "demo", "user_id": user,
                              "device_id": f"{user}-android", "platform": "fcm", "token": f"fcm-fuzz-{user}"})
        if i < BROWSERS:
            registrations.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-web",
                                  "platform": "webpush", "subscription": stack.subscription(f"sub-{user}")})
    devices = 2 * USERS + BROWSERS
    preferences = [{"app_id": "demo", "user_id": user, "categories": {"promo": False}} for user in users[::3]]
    notifications: list[dict[str, Any]] = [
        {"id": f"ok-{n:02d}", "app_id": "demo", "channel": "transactional", "title": f"hello {n}",
                      "target": {"user_ids": users[10 * n:10 * n + 10]}} for n in range(NOTIFICATIONS)]
    opens = [{"type": "opened", "app_id": "demo", "notification_id": "ok-00", "user_id": user,
              "device_id": f"{user}-ios", "at": "2026-12-02T05:00:00Z"} for user in users[:10]]

    async with Kafka(d) as kafka:
        await kafka.publish("pushstream.devices", interleave(bad["pushstream.devices"], registrations), seed=1)
        await kafka.publish("pushstream.preferences", interleave(bad["pushstream.preferences"], preferences),
                            seed=2)
        await kafka.wait_drained(["pushstream.devices", "pushstream.preferences", "pushstream.user-events"],
                                 timeout=90)
        wait_for(lambda: all(len(router.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == (
            3 if i < BROWSERS else 2) for i, u in enumerate(users) if i % 10 == 0), timeout=60, what="registrations")

        # Fuzzed HTTP bodies on each POST route: a JSON 400 with the decoder's reason, never anything else.
        refused: Counter[str] = Counter()
        body_topic = {"notifications": ("notification", "pushstream.notifications"),
                      "devices": ("device", "pushstream.devices"), "events": ("event", "pushstream.engagement")}
        with httpx.Client(base_url=router.url, headers={"Authorization": f"Bearer {DEMO_KEY}"},
                          timeout=30) as http:
            for n, (route, (kind, topic)) in enumerate(body_topic.items()):
                near_body = near_valid(topic, "demo", endpoint).map(orjson.dumps)
                bodies = st.one_of(st.binary(max_size=64), json_values.map(orjson.dumps), near_body,
                                   damaged(near_body))
                drawn = [b for b in dict.fromkeys(draw_examples(bodies, 3 * BAD_BODIES, fixed_seed=9100 + n))
                         if reason_of(lambda raw, k=kind: decode_body(k, raw, "demo", settings, received_at=0.0), b)
                         is not None][:BAD_BODIES]
                assert len(drawn) == BAD_BODIES
                for body in drawn:
                    want = reason_of(lambda raw, k=kind: decode_body(k, raw, "demo", settings, received_at=0.0), body)
                    answer = http.post(f"/v1/apps/demo/{route}", content=body)
                    assert answer.status_code == 400, (route, body[:200], answer.status_code, answer.text[:300])
                    assert answer.json()["error"] == want, (route, body[:200], answer.text[:300])
                    refused[f"{route}/{want}"] += 1
            # Valid requests through the same route, between the fuzzed ones.
            for request in notifications[:VIA_HTTP]:
                answer = http.post("/v1/apps/demo/notifications",
                                   content=orjson.dumps({k: v for k, v in request.items() if k != "app_id"}))
                assert answer.status_code == 202, answer.text

        cancel = {"type": "cancel", "app_id": "demo", "id": "never-sent"}
        await kafka.publish("pushstream.notifications",
                            interleave(bad["pushstream.notifications"], [*notifications[VIA_HTTP:], cancel]), seed=3)
        await kafka.publish("pushstream.engagement", interleave(bad["pushstream.engagement"], opens),
                            key=lambda v: v["user_id"] if isinstance(v, dict) else None, seed=4)

        wanted = sum(expected.values())
        dead = await kafka.read("pushstream.dlq", until=lambda rs: len(rs) >= wanted, timeout=90, settle=2.0)

        def complete(records: list[dict[str, Any]]) -> bool:
            return len({(r["notification_id"], r["device_id"]) for r in records
                        if r["status"] in FINAL_STATUSES}) >= devices  # every user is targeted once

        statuses = await kafka.read_json("pushstream.status", until=complete, timeout=90, settle=2.0)
        progress = wait_for(lambda: (doc := router.get("/v1/apps/demo/notifications/ok-00").json()).get(
            "opened") == 10 and doc, timeout=30, what="the opens of ok-00 counted")

    # The dead letters: one per bad record, with the decoder's reason, origin and redacted value.
    letters = [orjson.loads(r.value) for r in dead]
    got = Counter((letter["topic"], letter["reason"]) for letter in letters)
    originals = Counter(redact_bytes(raw) for raws in bad.values() for raw in raws)
    for letter in letters:
        assert letter["partition"] is not None and letter["offset"] is not None and letter["detail"]
    values = Counter(letter_value(letter) for letter in letters)

    # The valid traffic: every targeted device exactly one final status, delivered, one accepted request each.
    finals: Counter[tuple[str, str]] = Counter()
    delivered = 0
    for record in statuses:
        if record["status"] in FINAL_STATUSES:
            finals[(record["notification_id"], record["device_id"])] += 1
            delivered += record["status"] == "delivered"
    def devices_of(user: str) -> list[str]:
        return [f"{user}-ios", f"{user}-android", *([f"{user}-web"] if int(user[2:]) < BROWSERS else [])]

    targeted = {(n["id"], device) for n in notifications for user in n["target"]["user_ids"]
                for device in devices_of(user)}
    accepted: Counter[str] = Counter()
    for provider in PROVIDERS:
        for request in stack.fakes.requests(provider):
            if request["status"] in (200, 201) and request["path"].startswith(
                    ("/3/device/", "/v1/projects/", "/push/")):
                accepted[f"{provider}:{request['key']}"] += 1
    tally = {"sent": len(targeted), "delivered": delivered,
             "duplicated": sum(n - 1 for n in accepted.values() if n > 1)
             + sum(n - 1 for n in finals.values() if n > 1),
             "dead_lettered": len(letters), "lost": len(targeted - set(finals))}
    by_reason = {f"{t.removeprefix(d.prefix + 'pushstream.')}/{r}": n for (t, r), n in sorted(got.items())}
    print(f"\nfuzz: {tally}; bad published {sum(expected.values())} = dead letters {len(letters)}; "
          f"by topic and reason {by_reason}; HTTP bodies refused (400) {dict(sorted(refused.items()))}")
    assert got == expected, (got - expected, expected - got)
    assert values == originals
    assert set(finals) == targeted and set(finals.values()) == {1}
    assert tally == {"sent": len(targeted), "delivered": len(targeted), "duplicated": 0,
                     "dead_lettered": sum(expected.values()), "lost": 0}
    assert sum(accepted.values()) == len(targeted)
    assert progress["opened"] == 10
    assert {p.name: p.process.pid for p in (router, sender) if p.process is not None} == pids
    assert router.alive() and sender.alive()
