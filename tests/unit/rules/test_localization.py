"""Which title and body a device sees: exact tag, then the language, then the default text, per field."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pushstream.rules.localization import locale_candidates, localize, render_key

LOCALIZED: dict[str, dict[str, str]] = {
    "de": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"},
    "de-at": {"title": "Bestellung unterwegs"},
    "fr": {"body": "Arrive mardi"},
    "pt-br": {"title": "Pedido enviado", "body": "Chega terça"},
}
TITLE, BODY = "Your order shipped", "Arrives Tuesday"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (None, []),
        ("", []),
        ("de", ["de"]),
        ("DE", ["de"]),
        ("de-AT", ["de-at", "de"]),
        ("de_AT", ["de-at", "de"]),
        ("zh-Hant-TW", ["zh-hant-tw", "zh"]),
    ],
)
def test_locale_candidates(locale: str | None, expected: list[str]) -> None:
    assert locale_candidates(locale) == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        # exact region first
        ("de-AT", ("Bestellung unterwegs", "Ankunft Dienstag", "de-at")),  # the body de-at lacks comes from de
        ("pt-BR", ("Pedido enviado", "Chega terça", "pt-br")),
        ("pt_br", ("Pedido enviado", "Chega terça", "pt-br")),
        # then the language alone
        ("de-CH", ("Bestellung versandt", "Ankunft Dienstag", "de")),
        ("de-DE", ("Bestellung versandt", "Ankunft Dienstag", "de")),
        ("de", ("Bestellung versandt", "Ankunft Dienstag", "de")),
        ("fr-CA", (TITLE, "Arrive mardi", "fr")),
        # then the default text
        ("pt-PT", (TITLE, BODY, None)),
        ("en-US", (TITLE, BODY, None)),
        (None, (TITLE, BODY, None)),
    ],
)
def test_localize(locale: str | None, expected: tuple[str | None, str | None, str | None]) -> None:
    assert localize(TITLE, BODY, LOCALIZED, locale) == expected


def test_the_contract_example_falls_back_field_by_field() -> None:
    """de-AT has only a title: its devices get the de-AT title and the de body (contract v2, §1)."""
    localized = {"de": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"},
                 "de-at": {"title": "Bestellung unterwegs"}}
    assert localize(TITLE, BODY, localized, "de-AT") == ("Bestellung unterwegs", "Ankunft Dienstag", "de-at")


def _subsets(fields: dict[str, str]) -> list[dict[str, str]]:
    return [dict(c) for n in range(len(fields) + 1) for c in itertools.combinations(fields.items(), n)]


REGION = {"title": "AT title", "body": "AT body"}
LANGUAGE = {"title": "DE title", "body": "DE body"}


@pytest.mark.parametrize("region", [None, *_subsets(REGION)])
@pytest.mark.parametrize("language", [None, *_subsets(LANGUAGE)])
@pytest.mark.parametrize("default", [(TITLE, BODY), (None, BODY), (TITLE, None), (None, None)])
@pytest.mark.parametrize("locale", ["de-AT", "de_at", "de", "de-CH", "en-US", None])
def test_every_field_comes_from_the_most_specific_locale_that_has_it(
    region: dict[str, str] | None, language: dict[str, str] | None, default: tuple[str | None, str | None],
    locale: str | None,
) -> None:
    """Every combination of which fields de-at and de carry: each field independently takes de-at, else de,
    else the request's own text; the matched locale is the most specific entry present."""
    localized: dict[str, dict[str, str]] = {}
    if region is not None:
        localized["de-at"] = region
    if language is not None:
        localized["de"] = language
    chain = {"de-AT": ["de-at", "de"], "de_at": ["de-at", "de"], "de": ["de"], "de-CH": ["de"]}.get(locale or "", [])
    entries = [localized[c] for c in chain if c in localized]
    want_title = next((e["title"] for e in entries if "title" in e), default[0])
    want_body = next((e["body"] for e in entries if "body" in e), default[1])
    want_match = next((c for c in chain if c in localized), None)
    assert localize(default[0], default[1], localized, locale) == (want_title, want_body, want_match)
    assert render_key({"localized": localized}, locale) == want_match


@pytest.mark.parametrize("localized", [None, {}])
def test_localize_without_translations_gives_the_default_text(localized: dict[str, Any] | None) -> None:
    assert localize(TITLE, BODY, localized, "de-AT") == (TITLE, BODY, None)


def test_localize_falls_back_to_a_missing_default_as_none() -> None:
    assert localize(None, None, {"de": {"title": "Hallo"}}, "de") == ("Hallo", None, "de")


def test_an_empty_localized_entry_still_selects_the_locale() -> None:
    assert localize(TITLE, BODY, {"de": {}}, "de-AT") == (TITLE, BODY, "de")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("de-AT", "de-at"),
        ("de-CH", "de"),
        ("DE", "de"),
        ("pt-BR", "pt-br"),
        ("pt-PT", None),
        ("en", None),
        (None, None),
    ],
)
def test_render_key_names_the_variant_localize_picks(locale: str | None, expected: str | None) -> None:
    notification = {"title": TITLE, "body": BODY, "localized": LOCALIZED}
    assert render_key(notification, locale) == expected
    assert localize(TITLE, BODY, LOCALIZED, locale)[2] == expected


@pytest.mark.parametrize("notification", [{}, {"localized": None}, {"localized": {}}])
def test_render_key_without_translations_is_none(notification: dict[str, Any]) -> None:
    assert render_key(notification, "de-AT") is None
