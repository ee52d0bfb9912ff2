"""Runtime objects derived from the config: settings and the topic layout. Nothing is loaded at import."""

from __future__ import annotations

import dataclasses
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
    # app id → its hooks, imported at a worker's start-up (`with_hooks`); apps without hooks are absent
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
    return Runtime(settings=settings, layout=load_layout(topics_file_path(settings)))


def with_hooks(rt: Runtime) -> Runtime:
    """The runtime of a worker: its apps' hooks imported (a missing one is a ConfigError naming it). Only
    workers call this: the other commands never import an app's code."""
    return dataclasses.replace(rt, hooks=load_hooks(rt.settings))
