"""Process-wide runtime objects derived from the config: settings and the topic layout, loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from pushstream.config import Settings, load_settings
from pushstream.topology import TopicLayout, load_layout, topics_file_path


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    layout: TopicLayout

    def topic_name(self, name: str) -> str:
        if name not in self.layout.topics:
            raise KeyError(f"topic {name!r} is not declared in topics.yaml")
        return self.settings.topic(name)


@cache
def runtime() -> Runtime:
    settings = load_settings()
    return Runtime(settings=settings, layout=load_layout(topics_file_path(settings)))
