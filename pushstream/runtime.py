"""Runtime objects derived from the config: settings and the topic layout. Nothing is loaded at import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pushstream.config import Settings, load_settings
from pushstream.hooks import AppHooks, load_hooks
from pushstream.topology import TopicLayout, load_layout, topics_file_path


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    layout: TopicLayout
    # app id → its hooks, imported at start-up; apps without hooks are absent
    hooks: Mapping[str, AppHooks] = field(default_factory=dict)

    def topic_name(self, name: str) -> str:
        if name not in self.layout.topics:
            raise KeyError(f"topic {name!r} is not declared in topics.yaml")
        return self.settings.topic(name)


def load_runtime(config_path: str | Path | None = None) -> Runtime:
    """Settings from pushstream.yaml (``PUSHSTREAM_CONFIG`` when no path) and the topics.yaml they name."""
    settings = load_settings(config_path)
    return runtime_for(settings)


def runtime_for(settings: Settings) -> Runtime:
    """The runtime of ``settings``: its topic layout and its apps' hooks (a missing one is a ConfigError)."""
    return Runtime(settings=settings, layout=load_layout(topics_file_path(settings)), hooks=load_hooks(settings))
