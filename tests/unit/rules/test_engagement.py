"""Opens: validated, each (notification, device) counted once, replay-safe, shown in progress with the rate."""

from __future__ import annotations

from typing import Any

import pytest

from pushstream.models.base import Invalid
from pushstream.models.engagement import parse_engagement
from pushstream.rules.engagement import OpenItem, apply_opens
from pushstream.rules.progress import new_document, progress_document
from tests.unit.factories import settings

AT = "2026-11-22T18:00:09Z"


def event(**overrides: Any) -> dict[str, Any]:
    return {"type": "opened", "app_id": "demo", "notification_id": "n-42", "user_id": "u-1", "device_id": "d-1",
            "at": AT, **overrides}


def opened(device: str, user: str = "u-1", at_ms: int = 1) -> OpenItem:
    return OpenItem("demo", "n-42", user, device, at_ms)


def test_the_contract_example_parses() -> None:
    item = parse_engagement(event(), settings())
    assert item == OpenItem("demo", "n-42", "u-1", "d-1", 1795370409000)
    assert OpenItem.from_list(item.as_list()) == item


@pytest.mark.parametrize(("change", "reason"), [
    ({"type": "clicked"}, "bad_field"), ({"type": None}, "missing_field"), ({"app_id": "other"}, "unknown_app"),
    ({"notification_id": None}, "missing_field"), ({"user_id": ""}, "bad_field"), ({"device_id": 7}, "bad_field"),
    ({"at": "yesterday"}, "bad_field"), ({"at": "2026-11-22T18:00:09"}, "bad_field"), ({"at": None}, "missing_field"),
    ({"extra": 1}, "unknown_field"), ({"user_id": "u" * 300}, "bad_field"),
])
def test_bad_events_are_refused_with_a_reason(change: dict[str, Any], reason: str) -> None:
    data = {k: v for k, v in event(**change).items() if v is not None}
    with pytest.raises(Invalid) as excinfo:
        parse_engagement(data, settings())
    assert excinfo.value.reason == reason


def test_each_device_counts_once() -> None:
    update = apply_opens(None, {}, [opened("d-1"), opened("d-1"), opened("d-2"), opened("d-1", user="u-2")],
                         offset=0, app_id="demo", notification_id="n-42")
    assert update.doc["opened"] == 3
    assert update.users == {"u-1": ["d-1", "d-2"], "u-2": ["d-1"]}
    later = apply_opens(update.doc, update.users, [opened("d-2"), opened("d-3")], offset=1, app_id="demo",
                        notification_id="n-42")
    assert later.doc["opened"] == 4 and later.users == {"u-1": ["d-1", "d-2", "d-3"]}
    nothing = apply_opens(later.doc, later.users, [opened("d-1")], offset=2, app_id="demo", notification_id="n-42")
    assert nothing.doc["opened"] == 4 and nothing.users == {}


def test_a_replayed_batch_counts_nothing_twice_and_completes_the_sets() -> None:
    first = apply_opens(None, {}, [opened("d-1"), opened("d-2")], offset=5, app_id="demo", notification_id="n-42")
    # A crash after the document was written, before the opened sets: the batch comes again.
    again = apply_opens(first.doc, {}, [opened("d-1"), opened("d-2")], offset=5, app_id="demo",
                        notification_id="n-42")
    assert again.doc["opened"] == 2 and again.users == {"u-1": ["d-1", "d-2"]}


def test_opens_keep_the_status_counts_and_show_a_rate() -> None:
    doc = {**new_document("demo", "n-42"), "targeted": 4, "final": 4, "by_status": {"delivered": 3, "failed": 1},
           "applied": 9}
    update = apply_opens(doc, {}, [opened("d-1"), opened("d-2", user="u-2")], offset=0, app_id="demo",
                         notification_id="n-42")
    assert update.doc["applied"] == 9 and update.doc["by_status"] == {"delivered": 3, "failed": 1}
    view = progress_document(update.doc)
    assert view["opened"] == 2 and view["open_rate"] == 0.6667
    assert progress_document(new_document("demo", "n-42"))["open_rate"] is None


def test_opens_per_variant_when_the_device_has_one() -> None:
    variants = {("u-1", "d-1"): "a", ("u-2", "d-1"): "b", ("u-3", "d-1"): "a"}
    update = apply_opens(None, {}, [opened("d-1"), opened("d-1", user="u-2"), opened("d-1", user="u-3"),
                                    opened("d-9")],
                         offset=0, app_id="demo", notification_id="n-42",
                         variant_of=lambda user, device: variants.get((user, device)))
    assert update.doc["opened"] == 4 and update.doc["opened_by_variant"] == {"a": 2, "b": 1}
    assert "opened_by_variant" not in apply_opens(None, {}, [opened("d-1")], offset=0, app_id="demo",
                                                  notification_id="n-42").doc
