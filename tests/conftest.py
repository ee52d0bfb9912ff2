"""Fixture modules registered once for the whole suite (pytest only honours ``pytest_plugins`` here, at the top).

tests/unit/sender_fixtures.py: the fake-provider credentials (``dev_setup``) and a started sender against an
in-process fake per provider (``apns``, ``fcm``, ``webpush``). Plain helpers (tests/unit/factories.py,
tests/unit/router_fakes.py) are imported as ``tests.unit.…`` modules where they are used."""

pytest_plugins = ["tests.unit.sender_fixtures"]
