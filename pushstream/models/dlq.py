"""`pushstream.dlq`: every record that could not be processed or delivered, with the reason and its origin."""

import base64
from typing import Optional

import faust

from pushstream.models.base import iso, utcnow


class DeadLetter(faust.Record, include_metadata=False):
    reason: str
    detail: str
    topic: str
    partition: Optional[int]
    offset: Optional[int]
    at: str
    key: Optional[str] = None
    # The original value as UTF-8 text when it is text, else base64 (value_encoding says which).
    value: Optional[str] = None
    value_encoding: str = "utf-8"


def dead_letter(
    reason: str, detail: str, *, topic: str, partition: Optional[int], offset: Optional[int],
    key: Optional[bytes], value: Optional[bytes],
) -> DeadLetter:
    """Build a dead letter that keeps the original bytes losslessly."""
    text: Optional[str]
    encoding = "utf-8"
    if value is None:
        text = None
    else:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode("ascii"), "base64"
    return DeadLetter(
        reason=reason,
        detail=detail,
        topic=topic,
        partition=partition,
        offset=offset,
        at=iso(utcnow()),
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=text,
        value_encoding=encoding,
    )
