"""kafkatools without a broker: Progress (a bar with rate and ETA on a terminal, plain periodic lines otherwise),
parse_time, say, a lag summed per topic, and nothing to delete without a prefix."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from aiokafka import TopicPartition

from pushstream.kafkatools import Progress, delete_topics_with_prefix, lag_by_topic, parse_time, say


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(200, label="replay", stream=out, interval=3600)
    progress.started -= 10  # as if it had run for ten seconds
    progress.advance(50)  # the first update prints, the next ones wait for the interval
    progress.advance(50)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("replay 50/200 (25%) 5/s ETA 30s")
    assert lines[-1].startswith("replay 100/200 (50%) 10/s ETA 10s")
    assert len(lines) == 2 and "\r" not in out.getvalue()


def test_a_bar_redrawn_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(1000, label="replay", stream=out, tty=True, width=10)
    progress.started -= 2
    progress.advance(500)
    assert out.getvalue() == "\rreplay [#####.....] 500/1,000 (50%) 250/s ETA 2s\x1b[K"
    progress.finish()
    assert out.getvalue().endswith("\n")


def test_an_empty_range_is_complete() -> None:
    assert Progress(0, stream=io.StringIO()).line().startswith("0/0 (100%)")


def test_parse_time_takes_z_offsets_and_naive_utc() -> None:
    assert parse_time("2026-12-01T18:00:00Z") == dt.datetime(2026, 12, 1, 18, tzinfo=dt.UTC)
    assert parse_time("2026-12-01T19:00:00+01:00") == dt.datetime(2026, 12, 1, 18, tzinfo=dt.UTC)
    assert parse_time("2026-12-01 18:00") == dt.datetime(2026, 12, 1, 18, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_time("yesterday")


def test_the_last_line_is_not_repeated() -> None:
    out = io.StringIO()
    progress = Progress(1, stream=out)
    progress.advance()
    progress.finish()
    assert len(out.getvalue().splitlines()) == 1


def test_say_prints_one_flushed_line(capsys: pytest.CaptureFixture[str]) -> None:
    say("==> starting")
    say()
    assert capsys.readouterr().out == "==> starting\n\n"


def test_a_group_lag_summed_per_topic() -> None:
    lag = {TopicPartition("a", 0): 3, TopicPartition("a", 1): 0, TopicPartition("b", 0): 2}
    assert lag_by_topic(lag) == {"a": 3, "b": 2}
    assert lag_by_topic({}) == {}


async def test_no_prefix_deletes_nothing_and_needs_no_broker() -> None:
    # Port 1: nothing listens there; an attempt to connect would raise BrokerUnreachable.
    assert await delete_topics_with_prefix("127.0.0.1:1", []) == []
    assert await delete_topics_with_prefix("127.0.0.1:1", ["", ""]) == []
