"""Audit records: building, target summaries, key fingerprints, the planner's Kafka records, no secrets."""

from __future__ import annotations

import orjson
import pytest

from pushstream.agents.io import Outbox
from pushstream.agents.planner import plan_batch
from pushstream.rules.audit import (
    REQUEST_ID_HEADER,
    audit_record,
    clean_user_agent,
    key_fingerprint,
    request_id_of,
    target_summary,
)
from tests.unit.factories import API_KEY, raw_notification
from tests.unit.rules.test_cancel import message_event, planner_ctx


def test_key_fingerprint_is_stable_short_and_not_the_key() -> None:
    fp = key_fingerprint("s3cret-key")
    assert fp == key_fingerprint("s3cret-key") != key_fingerprint("s3cret-kez")
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16 and "s3cret" not in fp


@pytest.mark.parametrize(("target", "summary"), [
    ({"user_ids": ["u-1", "u-2"]}, {"user_ids": 2}),
    ({"all": True}, {"all": True}),
    ({"test_devices": True}, {"test_devices": True}),
    ({"segment": {"platforms": ["apns"], "tags_any": ["beta"]}}, {"segment": {"platforms": ["apns"],
                                                                                "tags_any": ["beta"]}}),
])
def test_target_summary(target: dict, summary: dict) -> None:
    assert target_summary(target) == summary


def test_an_http_record_has_the_contract_shape() -> None:
    record = audit_record(notification_id="n-42", app_id="demo", target={"user_ids": ["u-1", "u-2"]},
                          at="2026-11-22T18:00:00.120Z", via="http", key_id="sha256:0123456789abcdef",
                          remote="203.0.113.7", user_agent="curl/8.5", request_id="r-1")
    assert record == {"notification_id": "n-42", "app_id": "demo", "via": "http", "key_id": "sha256:0123456789abcdef",
                      "remote": "203.0.113.7", "user_agent": "curl/8.5", "request_id": "r-1",
                      "target": {"user_ids": 2}, "at": "2026-11-22T18:00:00.120Z"}
    assert list(record) == ["notification_id", "app_id", "via", "key_id", "remote", "user_agent", "request_id",
                            "target", "at"]


def test_a_kafka_record_has_no_http_fields() -> None:
    record = audit_record(notification_id="n-1", app_id="demo", target={"all": True}, at="t", via="kafka")
    assert record == {"notification_id": "n-1", "app_id": "demo", "via": "kafka", "target": {"all": True}, "at": "t"}


def test_user_agents_lose_credentials_and_length() -> None:
    assert clean_user_agent(None) is None and clean_user_agent("") is None
    assert clean_user_agent("curl/8.5") == "curl/8.5"
    assert clean_user_agent("x Bearer abc.def y") == "x Bearer [redacted] y"
    assert clean_user_agent(f"bot/1 ({API_KEY})", (API_KEY,)) == "bot/1 ([redacted])"
    assert len(clean_user_agent("a" * 5000) or "") == 256


def test_request_id_header_from_either_header_form() -> None:
    assert request_id_of(None) is None and request_id_of([]) is None
    assert request_id_of([("other", b"x"), (REQUEST_ID_HEADER, b"r-1")]) == "r-1"
    assert request_id_of({REQUEST_ID_HEADER: b"r-2"}) == "r-2"


def test_the_planner_audits_kafka_requests_once_and_leaves_http_ones_to_the_handler() -> None:
    ctx = planner_ctx()
    outbox = Outbox(ctx)
    kafka = raw_notification(id="n-k", target={"user_ids": ["u-1", "u-2", "u-3"]}, data={"secret": API_KEY})
    http = raw_notification(id="n-h")
    plan_batch(ctx, [message_event(kafka, 1), message_event(http, 2, [(REQUEST_ID_HEADER, b"r-1")])], outbox)
    audits = [(key, orjson.loads(value)) for topic, key, value, _p in outbox._pending if topic == "audit"]
    assert audits == [(b"n-k", {"notification_id": "n-k", "app_id": "demo", "via": "kafka",
                                "target": {"user_ids": 3}, "at": "2026-11-22T12:00:00.000Z"})]
    assert API_KEY.encode() not in b"".join(value for topic, _k, value, _p in outbox._pending if topic == "audit")


def test_cancels_and_invalid_requests_are_not_audited() -> None:
    ctx = planner_ctx()
    outbox = Outbox(ctx)
    plan_batch(ctx, [message_event({"type": "cancel", "app_id": "demo", "id": "n-1"}, 1),
                     message_event(raw_notification(target={"user_ids": []}), 2)], outbox)
    assert not [p for p in outbox._pending if p[0] == "audit"]
