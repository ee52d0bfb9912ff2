"""The send_batch skeleton the three provider clients share: one verdict per item, in item order, and
every send bounded by a deadline.

What differs per provider stays in its client: how an item becomes a request (or a local-check verdict),
how one request is sent and classified, and which key makes two items the same send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar

from pushstream.providers.outcome import TRANSPORT_ERROR, TRANSPORT_TIMEOUT, SendCounters, Verdict

ItemT = TypeVar("ItemT")
RequestT = TypeVar("RequestT")


async def send_each(
    items: Iterable[ItemT],
    prepare: Callable[[ItemT], RequestT | Verdict],
    send: Callable[[RequestT], Awaitable[Verdict]],
    key: Callable[[RequestT], Hashable],
    counters: SendCounters,
) -> list[Verdict]:
    """Send every item concurrently and return one verdict per item, in item order.

    ``prepare`` turns an item into a request, or into a verdict when a local check already decides it
    (nothing is sent). Requests with the same ``key`` (the same device) share one ``send`` and its verdict:
    a batch never pushes twice to one device. ``send`` must not raise for a per-item problem. Cancelling
    this cancels the sends still in flight. Every returned verdict is recorded in ``counters``.
    """
    loop = asyncio.get_running_loop()
    sends: dict[Hashable, asyncio.Future[Verdict]] = {}
    order: list[asyncio.Future[Verdict]] = []
    for item in items:
        prepared = prepare(item)
        if isinstance(prepared, Verdict):
            done: asyncio.Future[Verdict] = loop.create_future()
            done.set_result(prepared)
            order.append(done)
            continue
        send_key = key(prepared)
        if send_key not in sends:
            sends[send_key] = asyncio.ensure_future(send(prepared))
        order.append(sends[send_key])
    try:
        verdicts = list(await asyncio.gather(*order))
    finally:
        for pending in sends.values():
            pending.cancel()  # only matters when the caller itself is cancelled
    for verdict in verdicts:
        counters.record(verdict)
    return verdicts


async def within_deadline(
    attempt: Awaitable[Verdict],
    deadline: float,
    no_answer: Callable[[str, str | None], Verdict],
    *,
    on_timeout: Callable[[], object],
    on_error: Callable[[], object],
) -> Verdict:
    """The verdict of one send's ``attempt``, or ``no_answer``'s when the deadline passes or it raises.

    Any exception becomes a TRANSPORT_ERROR verdict: a bug or a library surprise must not fail the other
    items of the batch. ``on_error`` runs inside the handler, so ``log.exception`` there keeps the traceback.
    """
    try:
        async with asyncio.timeout(deadline):
            return await attempt
    except TimeoutError:
        on_timeout()
        return no_answer(TRANSPORT_TIMEOUT, f"no answer within {deadline}s")
    except Exception as exc:
        on_error()
        return no_answer(TRANSPORT_ERROR, type(exc).__name__)
