"""Per-app hooks (contract §3): ``apps.<id>.hooks.pre_send`` / ``post_send`` name a ``package.module:function``.

- ``pre_send(notification, user, device)`` runs in the router for each device about to get a notification and
  answers `KEEP`, `drop(reason)` or `adjust(title=..., body=..., data=...)` (from `pushstream.hooks`); it may be a
  coroutine function. ``notification`` is read-only; ``user`` is ``{"app_id", "user_id", "preferences"}``;
  ``device`` is the device as the HTTP API shows it (no token).
- ``post_send(outcomes)`` runs in the sender with a list of status records (contract §2), after each settled
  poll, off the transaction's path.

Both are imported once at start-up (`load_hooks`): a missing module or attribute stops the worker with one
message naming it. Importing this package loads nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pushstream.config import ConfigError, Settings
from pushstream.rules.hooks import KEEP, PreSend, adjust, drop

__all__ = ["KEEP", "AppHooks", "PreSend", "adjust", "drop", "load_hooks", "resolve"]


@dataclass(frozen=True)
class AppHooks:
    pre_send: Callable[..., Any] | None
    post_send: Callable[..., Any] | None
    budget_seconds: float
    pre_send_async: bool = False
    post_send_async: bool = False


def resolve(spec: str, where: str) -> Callable[..., Any]:
    """The callable ``package.module:function`` names; ConfigError naming ``where`` and what is missing."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{where}: {spec!r} is not 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{where}: {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def load_hooks(settings: Settings) -> Mapping[str, AppHooks]:
    """Every configured app's hooks, imported now; apps without hooks are absent (their cost stays zero)."""
    loaded: dict[str, AppHooks] = {}
    for app_id, app in settings.apps.items():
        hooks = app.hooks
        if hooks is None or (hooks.pre_send is None and hooks.post_send is None):
            continue
        if hooks.budget_seconds <= 0:
            raise ConfigError(f"apps.{app_id}.hooks.budget_seconds: must be positive")
        pre = resolve(hooks.pre_send, f"apps.{app_id}.hooks.pre_send") if hooks.pre_send else None
        post = resolve(hooks.post_send, f"apps.{app_id}.hooks.post_send") if hooks.post_send else None
        loaded[app_id] = AppHooks(pre, post, hooks.budget_seconds,
                                  pre_send_async=pre is not None and inspect.iscoroutinefunction(pre),
                                  post_send_async=post is not None and inspect.iscoroutinefunction(post))
    return loaded
