"""Which title and body a device sees: exact tag, then the language, then the default text, per field."""

from __future__ import annotations

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
        ("de-AT", ("Bestellung unterwegs", BODY, "de-at")),  # the field de-at lacks falls back to the default
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
