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
    """(title, body, matched locale), field by field (contract v2): each field comes from the most specific
    locale entry that has it (de-AT, then de), else from the request's own title/body. The matched locale is
    the most specific entry present at all, which is what the texts depend on (see ``render_key``)."""
    matched: str | None = None
    if localized:
        entries = []
        for candidate in locale_candidates(locale):
            texts = localized.get(candidate)
            if texts is not None:
                matched = matched or candidate
                entries.append(texts)
        title = next((e["title"] for e in entries if "title" in e), title)
        body = next((e["body"] for e in entries if "body" in e), body)
    return title, body, matched


def render_key(notification: dict[str, Any], locale: str | None) -> str | None:
    """The localized variant a device gets; devices sharing it share one rendered payload.

    The most specific matching entry determines the texts: the entries ``localize`` falls back to after it
    are its own less specific tags, the same for every locale that reaches it."""
    localized = notification.get("localized") or {}
    for candidate in locale_candidates(locale):
        if candidate in localized:
            return candidate
    return None
