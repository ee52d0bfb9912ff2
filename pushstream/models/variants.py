"""`variants` of a notification request (contract §1, v2): A/B texts, each given to a share of the users."""

from collections.abc import Callable
from typing import Any, Optional

from pushstream.models.base import Invalid

MAX_VARIANTS = 10
MAX_WEIGHT = 10_000
_VARIANT_FIELDS = frozenset({"id", "weight", "title", "body", "localized"})


def parse_variants(value: Any, localized: Callable[[Any], Optional[dict[str, dict[str, str]]]]
                   ) -> Optional[list[dict[str, Any]]]:
    """Validated variants: ids unique, weights positive integers, a title or a body each (``localized`` is the
    request's own validator of `localized` maps). A field a variant omits falls back to the request's."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise Invalid("bad_variants", "'variants' must be a non-empty list of {id, weight, title, body}")
    if len(value) > MAX_VARIANTS:
        raise Invalid("bad_variants", f"'variants' has {len(value)} entries, the limit is {MAX_VARIANTS}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, variant in enumerate(value):
        where = f"'variants[{n}]'"
        if not isinstance(variant, dict):
            raise Invalid("bad_variants", f"{where} must be an object")
        unknown = sorted(set(variant) - _VARIANT_FIELDS)
        if unknown:
            raise Invalid("bad_variants", f"{where} has the unknown field {unknown[0]!r}")
        vid = variant.get("id")
        if not isinstance(vid, str) or not 0 < len(vid) <= 64:
            raise Invalid("bad_variants", f"{where}.id must be a string of 1 to 64 characters")
        if vid in seen:
            raise Invalid("bad_variants", f"variant id {vid!r} is used twice")
        seen.add(vid)
        weight = variant.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= MAX_WEIGHT:
            raise Invalid("bad_variants", f"{where}.weight must be an integer from 1 to {MAX_WEIGHT}")
        texts = {k: variant[k] for k in ("title", "body") if variant.get(k) is not None}
        if not texts:
            raise Invalid("bad_variants", f"{where} needs a title or a body")
        for key, text in texts.items():
            if not isinstance(text, str) or len(text) > (1024 if key == "title" else 4096):
                raise Invalid("bad_variants", f"{where}.{key} must be a string (title ≤ 1024, body ≤ 4096)")
        parsed: dict[str, Any] = {"id": vid, "weight": weight, **texts}
        if variant.get("localized") is not None:
            parsed["localized"] = localized(variant["localized"])
        out.append(parsed)
    return out
