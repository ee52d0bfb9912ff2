"""Every Kafka producer pushstream creates waits for all in-sync replicas (acks=all): on a cluster with
min.insync.replicas=2 an acknowledged record is on two brokers, so losing one loses nothing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pushstream"


def producer_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "AIOKafkaProducer":
                calls.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", node))
    return calls


def keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value)
    return None


def test_every_aiokafka_producer_uses_acks_all() -> None:
    calls = producer_calls()
    assert len(calls) >= 4, calls  # kafkatools.publish, the senders, replay, dlq redrive
    assert {where: keyword(call, "acks") for where, call in calls} == {where: "all" for where, _ in calls}


def test_the_faust_app_produces_with_acks_all() -> None:
    tree = ast.parse((PACKAGE / "factory.py").read_text())
    acks = [ast.literal_eval(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
            for kw in node.keywords if kw.arg == "producer_acks"]
    assert acks == [-1]
