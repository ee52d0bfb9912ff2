"""Which title and body a device sees, by its locale."""

from typing import Any


def locale_candidates(locale: str | None) -> list[str]:
    """de-AT → ['de-at', 'de']: exact tag first, then the language alone."""
    if not locale:
        return []
    tag = locale.replace("_", "-").lower()
    language = tag.split("-", 1)[0]
    return [tag] if tag == language else [tag, language]


def localize(
    title: str | None, body: str | None, localized: dict[str, dict[str, str]] | None, locale: str | None
) -> tuple[str | None, str | None, str | None]:
    """(title, body, matched locale). Each field falls back to the default text when the locale lacks it."""
    if localized:
        for candidate in locale_candidates(locale):
            texts = localized.get(candidate)
            if texts is not None:
                return texts.get("title", title), texts.get("body", body), candidate
    return title, body, None


def render_key(notification: dict[str, Any], locale: str | None) -> str | None:
    """The localized variant a device gets; devices sharing it share one rendered payload."""
    localized = notification.get("localized") or {}
    for candidate in locale_candidates(locale):
        if candidate in localized:
            return candidate
    return None
