"""pushstream.example.yaml loads through the real config loader and sets every key the loader accepts, so a key
added to pushstream.config without an example (or an example of a key that does not exist) fails here."""

from __future__ import annotations

import dataclasses
import shutil
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pushstream.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "pushstream.example.yaml"
# The loader checks that key and certificate files exist; the example's are placeholders.
PLACEHOLDER_FILES = ["keys/AuthKey_ABC123DEFG.p8", "certs/ca.pem", "keys/service-account.json", "keys/vapid.pem",
                     "keys/demo-api-keys.txt"]


def accepted_keys(cls: type, prefix: str = "") -> Iterator[str]:
    """Every dotted key a config dataclass accepts; an app's keys appear under `apps.*`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        key, tp = f"{prefix}{f.name}", hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if (typing.get_origin(tp) in (Mapping, dict) and isinstance(inner[-1], type)
                and dataclasses.is_dataclass(inner[-1])):
            yield key
            yield from accepted_keys(inner[-1], f"{key}.*.")
            continue
        target = inner[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            yield key
            yield from accepted_keys(target, f"{key}.")
        else:
            yield key


def keys_in(data: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for name, value in data.items():
            if prefix == "apps.":  # an app id, not a key
                yield from keys_in(value, "apps.*.")
                continue
            key = f"{prefix}{name}"
            yield key
            yield from keys_in(value, f"{key}.")


def test_the_example_loads_through_the_real_loader(tmp_path: Path) -> None:
    copy = tmp_path / "pushstream.yaml"
    shutil.copy(EXAMPLE, copy)
    for name in PLACEHOLDER_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("placeholder\n")
    settings = load_settings(copy, env={})
    assert settings.apps["demo"].apns is not None and settings.apps["demo"].webpush is not None
    assert settings.kafka.topics_file == "topics.yaml"
    # Only defaults and examples: the example's values are the loader's defaults where it has one.
    assert settings.limits == Settings().limits and settings.pipeline == Settings().pipeline
    assert settings.rocksdb == Settings().rocksdb and settings.web == Settings().web
    assert settings.breaker == Settings().breaker and settings.invalidation_guard == Settings().invalidation_guard
    fcm = settings.apps["demo"].fcm
    assert fcm is not None and fcm.rate_limit_per_second == 500.0


def test_the_example_sets_every_key_the_loader_accepts() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(accepted_keys(Settings)) - set(keys_in(example)) == set()
    assert set(keys_in(example)) - set(accepted_keys(Settings)) == set()
