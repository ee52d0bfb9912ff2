"""A/B variants and test devices: parsing, assignment (stable, weighted), rendering, statuses, progress."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, cast

import pytest

from pushstream.agents.router import PayloadCache, route_intent
from pushstream.models import IntentBatch, Invalid, parse_notification
from pushstream.models.internal import DeliveryBatch, inline_payloads
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.routing import decide
from pushstream.rules.settle import settle
from pushstream.rules.targeting import is_test_device
from pushstream.rules.variants import VariantPicker, assign_variant, variant_notification
from pushstream.tables.batch import BatchView
from tests.unit.factories import device, notification, raw_notification, settings
from tests.unit.router_fakes import GatedOutbox, RocksTable, context
from tests.unit.rules.test_progress import Progress, record
from tests.unit.rules.test_settle import POLICY, batch

AB = [{"id": "a", "weight": 50, "title": "A title", "body": "A body"},
      {"id": "b", "weight": 50, "title": "B title", "localized": {"de": {"title": "B Titel"}}}]


def parse(**fields: Any) -> Any:
    return parse_notification(raw_notification(**fields), settings(), received_at=0.0)


# Parsing -------------------------------------------------------------------------------------------------------
def test_variants_are_validated_and_kept() -> None:
    n = parse(variants=AB, title=None, body=None)
    assert n.variants == [{"id": "a", "weight": 50, "title": "A title", "body": "A body"},
                          {"id": "b", "weight": 50, "title": "B title", "localized": {"de": {"title": "B Titel"}}}]
    assert parse().variants is None


@pytest.mark.parametrize("variants", [
    [], "a", [{"id": "a", "weight": 1}],  # empty, not a list, no texts
    [{"id": "a", "weight": 1, "title": "x"}, {"id": "a", "weight": 1, "title": "y"}],  # ids not unique
    [{"id": "a", "weight": 0, "title": "x"}], [{"id": "a", "weight": -3, "title": "x"}],
    [{"id": "a", "weight": 1.5, "title": "x"}], [{"id": "a", "weight": True, "title": "x"}],
    [{"id": "", "weight": 1, "title": "x"}], [{"id": 7, "weight": 1, "title": "x"}],
    [{"id": "a", "weight": 1, "title": 3}], [{"id": "a", "weight": 1, "title": "x", "colour": "red"}],
    [{"id": "a", "weight": 1, "title": "x", "localized": {"de": {"title": 1}}}],
    [{"id": f"v{i}", "weight": 1, "title": "x"} for i in range(11)],
    ["a"],
])
def test_bad_variants_are_rejected(variants: Any) -> None:
    with pytest.raises(Invalid) as caught:
        parse(variants=variants)
    assert caught.value.reason in ("bad_variants", "bad_field")


def test_test_devices_target() -> None:
    assert parse(target={"test_devices": True}).target == {"test_devices": True}
    with pytest.raises(Invalid):
        parse(target={"test_devices": False})
    assert is_test_device(device(tags=["beta", "test"])) and not is_test_device(device(tags=["beta"]))
    assert not is_test_device(device())
    now = dt.datetime.now(dt.UTC)
    preview = notification(target={"test_devices": True})
    assert decide(device(tags=["test"]), "demo", preview, None, None, now).action == "deliver"
    assert decide(device(tags=["beta"]), "demo", preview, None, None, now).action == "skip"


# Assignment ----------------------------------------------------------------------------------------------------
def test_assignment_is_stable_and_depends_on_notification_and_user() -> None:
    users = [f"user-{i}" for i in range(200)]
    first = [assign_variant("n-1", u, AB) for u in users]
    assert first == [VariantPicker("n-1", AB).pick(u) for u in users]  # same answer every time, any instance
    assert first != [assign_variant("n-2", u, AB) for u in users]  # another campaign splits differently
    assert set(first) == {"a", "b"}


@pytest.mark.parametrize("weights", [(50, 50), (90, 10), (1, 3), (20, 30, 50), (1,)])
def test_split_is_within_five_percent_of_the_weights_over_10000_users(weights: tuple[int, ...]) -> None:
    variants = [{"id": f"v{i}", "weight": w, "title": "t"} for i, w in enumerate(weights)]
    picker = VariantPicker("campaign-7", variants)
    counts = Counter(picker.pick(f"u-{i}") for i in range(10_000))
    for i, weight in enumerate(weights):
        share = counts[f"v{i}"] / 10_000
        assert abs(share - weight / sum(weights)) <= 0.05 * weight / sum(weights) + 0.005, (weights, counts)


def test_variant_notification_takes_the_variant_texts_and_falls_back_field_by_field() -> None:
    n = notification(variants=AB, title="Base", body="Base body", localized={"fr": {"title": "Base fr"}})
    a = variant_notification(n, "a")
    assert (a["title"], a["body"], a["localized"]) == ("A title", "A body", {"fr": {"title": "Base fr"}})
    b = variant_notification(n, "b")
    assert (b["title"], b["body"], b["localized"]) == ("B title", "Base body", {"de": {"title": "B Titel"}})
    assert "variants" not in a and "variants" not in b


def test_the_payload_cache_renders_per_variant_platform_and_locale() -> None:
    cache = PayloadCache(notification(variants=AB))
    assert cache.picker is not None
    a, b = cache.variant("a"), cache.variant("b")
    assert cache.variant("a") is a  # one renderer per variant
    assert a("apns", None)["aps"]["alert"]["title"] == "A title"  # type: ignore[index]
    assert b("apns", "de-DE")["aps"]["alert"]["title"] == "B Titel"  # type: ignore[index]
    assert b("apns", "en")["aps"]["alert"]["title"] == "B title"  # type: ignore[index]
    assert PayloadCache(notification()).picker is None


# Routing, settling and progress --------------------------------------------------------------------------------
async def test_routing_stamps_the_variant_on_statuses_and_batches() -> None:
    outbox: Any = GatedOutbox(None, [], "transactional")  # stands in for the Outbox
    users = [(f"u-{i}", {"d-1": device(), "d-2": device("d-2", active=False)}) for i in range(40)]
    ctx, _tp = context([])
    n = notification(variants=AB, target={"user_ids": [u for u, _ in users]},
                     received_at=dt.datetime.now(dt.UTC).timestamp())
    await route_intent(ctx, IntentBatch(notification=n, user_ids=[u for u, _ in users], origin="o"), 0, outbox,
                       BatchView(cast(Any, RocksTable("user_state"))), dt.datetime.now(dt.UTC), users=users)
    expected = {u: assign_variant("n-42", u, AB) for u, _ in users}
    batches = [inline_payloads(v) for t, _k, v in outbox.records if t.startswith("deliveries")]
    assert {b.variant for b in batches} == {"a", "b"}
    for b in batches:
        assert all(expected[item["user_id"]] == b.variant for item in b.items)
        title = "A title" if b.variant == "a" else "B title"
        assert all(item["payload"]["aps"]["alert"]["title"] == title for item in b.items)
        assert (b.batch_id or "").startswith("o/0/apns/v:")
    assert sum(len(b.items) for b in batches) == 40
    inactive = [v for t, _k, v in outbox.records if t == "status"]
    assert len(inactive) == 40 and all(s.variant == expected[s.user_id] for s in inactive)


def test_settled_statuses_and_retries_carry_the_batch_variant() -> None:
    variant_batch = DeliveryBatch(**{**batch(2).asdict(), "variant": "b"})
    out = settle(variant_batch, [Verdict(Action.DELIVERED, provider_status=200),
                                 Verdict(Action.RETRY, "unavailable", provider_status=503)],
                 now=0.0, at="t", policy=POLICY)
    assert [s["variant"] for s in out.statuses] == ["b", "b"]
    assert out.retry is not None and out.retry.variant == "b"
    plain = settle(batch(1), [Verdict(Action.DELIVERED, provider_status=200)], now=0.0, at="t", policy=POLICY)
    assert "variant" not in plain.statuses[0]


def test_progress_counts_targeted_and_delivered_per_variant() -> None:
    progress = Progress()
    progress.apply({**record("d-1", "retrying", 1, user="u-1"), "variant": "a"},
                   {**record("d-2", "delivered", 1, user="u-2"), "variant": "b"},
                   {**record("d-3", "suppressed", 1, "opt_out", user="u-3"), "variant": "b"})
    assert progress.view()["variants"] == {"a": {"targeted": 1, "delivered": 0, "opened": 0},
                                           "b": {"targeted": 2, "delivered": 1, "opened": 0}}
    progress.apply({**record("d-1", "delivered", 5, user="u-1"), "variant": "a"})
    progress.apply({**record("d-1", "delivered", 5, user="u-1"), "variant": "a"})  # seen twice
    assert progress.view()["variants"]["a"] == {"targeted": 1, "delivered": 1, "opened": 0}
    assert progress.view()["targeted"] == 3


def test_progress_of_a_notification_without_variants_has_none() -> None:
    progress = Progress()
    progress.apply(record("d-1", "delivered"))
    assert progress.view()["variants"] == {}
