"""pushstream.testing.stack without processes: a run's own copy of topics.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from pushstream.testing.stack import write_topics_file
from pushstream.topology import load_layout

REPO_TOPICS = Path(__file__).resolve().parents[3] / "topics.yaml"


def test_a_copy_of_the_layout_as_it_is(tmp_path: Path) -> None:
    path = write_topics_file(tmp_path / "topics.yaml", REPO_TOPICS)
    assert path.read_bytes() == REPO_TOPICS.read_bytes()


def test_every_partitioned_topic_and_the_user_partitions_at_the_given_count(tmp_path: Path) -> None:
    path = write_topics_file(tmp_path / "topics.yaml", REPO_TOPICS, partitions=3)
    original, written = yaml.safe_load(REPO_TOPICS.read_text()), yaml.safe_load(path.read_text())
    assert written["user_partitions"] == 3
    assert written["topics"].keys() == original["topics"].keys()
    for name, spec in written["topics"].items():
        assert spec == ({**original["topics"][name], "partitions": 3} if "partitions" in original["topics"][name]
                        else original["topics"][name])
    assert load_layout(path).user_partitions == 3
