"""Property-based fuzzing of every external input (contract §1 input topics, §4 HTTP bodies), without Kafka.

Each decoder of `pushstream.models.inputs` gets arbitrary bytes, JSON of arbitrary shape and near-valid records:
it answers a model or an `Invalid` with a known reason and a detail, never another exception. What it accepts
the rest of the pipeline can carry (it encodes, and its segment can be matched). What would reach the DLQ
carries its reason and no raw device address.

Derandomized (the same examples on every run, so CI is reproducible and fast); PUSHSTREAM_FUZZ_EXAMPLES raises
the count for a deeper local run.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pushstream.config import LimitsSettings
from pushstream.models.base import Invalid, encode
from pushstream.models.dlq import dead_letter
from pushstream.models.inputs import (
    BODY_KINDS,
    CancelRequest,
    decode_body,
    decode_device,
    decode_engagement,
    decode_notification,
    decode_preference,
)
from pushstream.models.notifications import NotificationRequest
from pushstream.rules.targeting import segment_matches
from tests.strategies import (
    REASONS,
    apns_tokens,
    damaged,
    fcm_tokens,
    json_values,
    near_valid,
    topic_inputs,
    valid_records,
)
from tests.unit.factories import APP_ID, device, settings

EXAMPLES = int(os.environ.get("PUSHSTREAM_FUZZ_EXAMPLES", "100"))
fuzz = hsettings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SETTINGS = settings()
DECODERS: dict[str, Any] = {
    "pushstream.devices": lambda raw: decode_device(raw, SETTINGS),
    "pushstream.preferences": lambda raw: decode_preference(raw, SETTINGS),
    "pushstream.notifications": lambda raw: decode_notification(raw, SETTINGS, received_at=1_800_000_000.0),
    "pushstream.engagement": lambda raw: decode_engagement(raw, SETTINGS),
}
DEVICES = [device("d-a", "apns", app_version="6.4.1", locale="de-AT", tags=["beta"]),
           device("d-f", "fcm"), device("d-w", "webpush", app_version=None, locale=None)]


def verdict(decode: Any, raw: bytes) -> Any:
    """The model, or the Invalid; any other exception fails the test (it would be an internal_error)."""
    try:
        return decode(raw)
    except Invalid as error:
        assert error.reason in REASONS, error
        assert error.detail, error
        return error


def carried(record: Any) -> None:
    """An accepted record survives what the pipeline does with it next: it encodes (intents, user events are JSON)
    and a segment target can be matched against devices of every platform."""
    if isinstance(record, CancelRequest):
        return
    assert orjson.loads(encode(record)) == record.asdict() if hasattr(record, "asdict") else True
    if isinstance(record, NotificationRequest) and "segment" in record.target:
        for d in DEVICES:
            segment_matches(d, record.target["segment"])


@pytest.mark.parametrize("topic", list(DECODERS))
def test_every_seed_record_is_valid(topic: str) -> None:
    for record in valid_records(APP_ID)[topic]:
        assert not isinstance(verdict(DECODERS[topic], orjson.dumps(record)), Invalid), record


@pytest.mark.parametrize("topic", list(DECODERS))
@fuzz
@given(data=st.data())
def test_a_topic_decoder_answers_a_model_or_a_reason(topic: str, data: st.DataObject) -> None:
    raw = data.draw(topic_inputs(topic, APP_ID))
    result = verdict(DECODERS[topic], raw)
    if not isinstance(result, Invalid):
        carried(result)


@pytest.mark.parametrize("topic", list(DECODERS))
@fuzz
@given(data=st.data())
def test_a_near_valid_record_with_an_unknown_field_or_a_missing_required_one_is_rejected(
        topic: str, data: st.DataObject) -> None:
    record = data.draw(st.sampled_from(valid_records(APP_ID)[topic]))
    name = data.draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in record))
    assert isinstance(verdict(DECODERS[topic], orjson.dumps({**record, name: data.draw(json_values)})), Invalid)
    required = {"pushstream.devices": ("app_id", "user_id", "device_id"), "pushstream.preferences": ("user_id",),
                "pushstream.notifications": ("id", "app_id"),
                "pushstream.engagement": ("type", "notification_id", "user_id", "device_id", "at")}[topic]
    field = data.draw(st.sampled_from(required))
    error = verdict(DECODERS[topic], orjson.dumps({k: v for k, v in record.items() if k != field}))
    assert isinstance(error, Invalid) and error.reason == "missing_field", (field, error)


def test_an_oversize_record_is_rejected_before_it_is_parsed() -> None:
    small = settings(limits=LimitsSettings(max_record_bytes=100))
    raw = orjson.dumps({**valid_records(APP_ID)["pushstream.devices"][0], "tags": ["x" * 200]})
    with pytest.raises(Invalid) as error:
        decode_device(raw, small)
    assert error.value.reason == "oversize"


# --- HTTP bodies (contract §4) --------------------------------------------------------------------------------

BODY_TOPIC = {"notification": "pushstream.notifications", "event": "pushstream.engagement",
              "device": "pushstream.devices"}


def body_inputs(kind: str) -> st.SearchStrategy[bytes]:
    """Bodies as a client sends them: the topic's records, with or without their app_id."""
    near = near_valid(BODY_TOPIC[kind], APP_ID).map(
        lambda r: {k: v for k, v in r.items() if k != "app_id"} if r.get("app_id") == APP_ID and len(r) % 2 else r)
    return st.one_of(st.binary(max_size=64), json_values.map(orjson.dumps), near.map(orjson.dumps),
                     damaged(near.map(orjson.dumps)))


@pytest.mark.parametrize("kind", BODY_KINDS)
@fuzz
@given(data=st.data())
def test_an_http_body_is_a_record_or_a_400_reason_and_what_is_published_decodes_the_same(
        kind: str, data: st.DataObject) -> None:
    raw = data.draw(body_inputs(kind))
    result = verdict(lambda r: decode_body(kind, r, APP_ID, SETTINGS, received_at=1_800_000_000.0), raw)
    if isinstance(result, Invalid):
        return
    record, published = result
    carried(record)
    # The HTTP handler publishes `published` on the input topic: the topic's decoder must accept it too, as the
    # same record (a notification's received_at is the Kafka timestamp there, so it is set alike here).
    again = DECODERS[BODY_TOPIC[kind]](orjson.dumps(published))
    assert again == record


def test_an_http_body_for_another_app_is_rejected() -> None:
    body = orjson.dumps({**valid_records(APP_ID)["pushstream.devices"][0], "app_id": "other"})
    with pytest.raises(Invalid) as error:
        decode_body("device", body, APP_ID, SETTINGS, received_at=0.0)
    assert error.value.reason == "bad_field"


# --- dead letters: a reason, and no raw address ---------------------------------------------------------------


@st.composite
def records_with_addresses(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A device record holding real-looking addresses, near-valid or damaged, and the secrets it holds."""
    token = draw(st.one_of(apns_tokens, fcm_tokens))
    p256dh, auth = draw(fcm_tokens), draw(fcm_tokens)
    record = draw(near_valid("pushstream.devices", APP_ID))
    secrets: list[tuple[str, str]] = []  # (field, address)
    if "token" in record:
        record["token"], secrets = token, [("token", token)]
    elif isinstance(record.get("subscription"), dict) and isinstance(record["subscription"].get("keys"), dict):
        record["subscription"]["keys"].update(p256dh=p256dh, auth=auth)
        secrets = [("p256dh", p256dh), ("auth", auth)]
    raw = orjson.dumps(record)
    how = draw(st.sampled_from(["whole", "damaged", "cut_after_secret"]))
    if how == "damaged":
        raw = draw(damaged(st.just(raw)))
    elif how == "cut_after_secret" and secrets:
        # A producer that cut the record short just after an address (the JSON string left unterminated).
        end = raw.index(secrets[0][1].encode()) + len(secrets[0][1])
        raw = raw[:end + draw(st.integers(min_value=0, max_value=1))] + draw(st.sampled_from([b"", b"\\", b" "]))
    # Redaction goes by field (models/redact.py): an address counts while its field name is intact. A damaged
    # name ("uoken") makes it an unknown field, kept like any other value.
    return raw, [a for name, a in secrets if f'"{name}":"{a}'.encode() in raw]


@fuzz
@given(records_with_addresses())
def test_a_dead_letter_has_a_reason_and_no_raw_address(case: tuple[bytes, list[str]]) -> None:
    raw, secrets = case
    result = verdict(DECODERS["pushstream.devices"], raw)
    error = result if isinstance(result, Invalid) else Invalid("bad_token", "a provider rejected it")
    letter = encode(dead_letter(error.reason, error.detail, topic="pushstream.devices", partition=0, offset=7,
                                key=b"u-1", value=raw))
    assert orjson.loads(letter)["reason"] in REASONS
    for secret in secrets:
        assert secret.encode() not in letter, (raw, letter)


def test_a_record_cut_short_just_after_its_token_keeps_no_token_in_the_dlq() -> None:
    """Found by the property above: an unterminated JSON string after `"token":` kept the raw token."""
    token = "FcmAbcdefghijklmnopqrstuvwxyz0123456789"
    for tail in ("", "\\"):
        raw = b'{"type":"register","platform":"fcm","token":"' + token.encode() + tail.encode()
        letter = encode(dead_letter("bad_json", "cut", topic="t", partition=0, offset=1, key=None, value=raw))
        assert token.encode() not in letter


@fuzz
@given(key=st.sampled_from(["platforms", "tags_any", "locales", "app_version_gte"]),
       value=st.one_of(st.sampled_from(["9" * 5000, "1." * 3000, "٣.٤"]), st.lists(st.text(), max_size=3),
                       json_values))
def test_a_segment_the_decoder_accepts_can_be_matched(key: str, value: Any) -> None:
    record = {**valid_records(APP_ID)["pushstream.notifications"][1]}
    record["target"] = {"segment": {**record["target"]["segment"], key: value}}
    result = verdict(DECODERS["pushstream.notifications"], orjson.dumps(record))
    if not isinstance(result, Invalid):
        carried(result)
