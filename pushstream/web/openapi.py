"""The OpenAPI 3.1 document of the router's HTTP API, shipped beside this module as openapi.json and served at
/openapi.json. Adding a route means adding it there: tests/unit/web/test_api.py compares the document's paths and
methods with the routes a router registers, both ways."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

DOCUMENT = "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def document_bytes() -> bytes:
    return resources.files("pushstream.web").joinpath(DOCUMENT).read_bytes()


def document() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(document_bytes())
    return doc


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation the document describes."""
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}
