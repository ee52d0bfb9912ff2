"""pushstream.testing.stack without Kafka: a run's own copy of topics.yaml, and how a process is started."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
import yaml

from pushstream.testing.stack import spawn, write_topics_file
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


def test_a_process_sees_its_config_and_worker_id_and_no_other_pushstream_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHSTREAM_ROLE", "router")  # this process's, not the child's
    config = tmp_path / "d" / "pushstream.yaml"
    config.parent.mkdir()
    log = tmp_path / "logs" / "child.log"
    show = ("import json, os; print(json.dumps({'cwd': os.getcwd(), "
            "'env': {k: v for k, v in os.environ.items() if k.startswith('PUSHSTREAM_')}}))")
    process = spawn([sys.executable, "-c", show], config_path=config, worker_id="w1", log_path=log,
                    extra_env={"BROKER_SESSION_TIMEOUT": "6"})
    assert process.wait(timeout=30) == 0
    seen = orjson.loads(log.read_bytes())
    assert seen["env"] == {"PUSHSTREAM_CONFIG": str(config), "PUSHSTREAM_WORKER_ID": "w1"}
    assert Path(seen["cwd"]) == config.parent
