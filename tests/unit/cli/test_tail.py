"""`pushstream tail` filters: status and audit records name app and notification; a dead letter names them in
the original value it carries (a notification request's `id`, a sender's redacted item's `notification_id`)."""

from __future__ import annotations

import orjson

from pushstream.cli.tail import matches, render

STATUS = {"notification_id": "n-1", "app_id": "demo", "user_id": "u-1", "device_id": "d-1", "status": "delivered"}


def letter(value: object) -> dict[str, object]:
    return {"reason": "bad", "detail": "", "topic": "t", "partition": 0, "offset": 1, "at": "now",
            "value": value if isinstance(value, str) or value is None else orjson.dumps(value).decode()}


def test_status_records_filter_on_app_and_notification() -> None:
    assert matches(STATUS, None, None)
    assert matches(STATUS, "demo", "n-1")
    assert not matches(STATUS, "other", None)
    assert not matches(STATUS, None, "n-2")


def test_dead_letters_filter_on_the_original_value() -> None:
    request = letter({"id": "n-7", "app_id": "demo", "title": ""})
    sender = letter({"notification_id": "n-8", "app_id": "shop", "platform": "fcm", "item": {}})
    assert matches(request, "demo", "n-7") and not matches(request, "demo", "n-8")
    assert matches(sender, "shop", "n-8") and not matches(sender, "demo", None)
    assert not matches(letter("{not json"), None, "n-7")
    assert not matches(letter(None), "demo", None)
    assert matches(letter("{not json"), None, None)


def test_records_print_as_one_json_line_each() -> None:
    value, line = render(orjson.dumps({"a": "é", "b": [1, 2]}))
    assert value == {"a": "é", "b": [1, 2]} and line == '{"a": "é", "b": [1, 2]}'
    assert render(b"\xffnot json") == ("\ufffdnot json", '"\ufffdnot json"')
