"""The send_batch skeleton the three provider clients share: one verdict per item, in item order, and
every send bounded by a deadline.

What differs per provider stays in its client: how an item becomes a request (or a local-check verdict),
how one request is sent and classified, and which key makes two items the same send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable
from typing import Any, TypeVar

from pushstream.providers.outcome import TRANSPORT_ERROR, TRANSPORT_TIMEOUT, SendCounters, Verdict

ItemT = TypeVar("ItemT")
RequestT = TypeVar("RequestT")


async def send_each(
    items: Iterable[ItemT],
    prepare: Callable[[ItemT], RequestT | Verdict],
    send: Callable[[RequestT], Coroutine[Any, Any, Verdict]],
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
    create_task = loop.create_task
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
            sends[send_key] = create_task(send(prepared))
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


class SendDeadlines:
    """``within_deadline`` for many concurrent sends of one sender, with one timer instead of one each.

    Every send gets the same ``seconds``, so deadlines expire in the order sends start: a deque ordered by
    expiry and a single ``call_at`` for its head replace a Timeout object and a timer handle per send
    (asyncio.timeout costs ~6 µs a send here; this ~1 µs). Same outcome rules as ``within_deadline``: the
    send's task is cancelled at its deadline and the verdict is ``no_answer(TRANSPORT_TIMEOUT, …)``; any
    exception becomes TRANSPORT_ERROR; a cancellation from outside still propagates.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: deque[list[Any]] = deque()  # [expiry, task or None once finished, expired]
        self._timer: asyncio.TimerHandle | None = None

    async def run(
        self,
        attempt: Coroutine[Any, Any, Verdict],
        no_answer: Callable[[str, str | None], Verdict],
        *,
        on_timeout: Callable[[], object],
        on_error: Callable[[], object],
    ) -> Verdict:
        """The verdict of ``attempt`` (run in the current task), bounded by ``seconds`` from now."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        entries = self._entries
        while entries and entries[0][1] is None:  # finished sends at the head: drop them now
            entries.popleft()
        entry: list[Any] = [loop.time() + self.seconds, task, False]
        entries.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry[0], self._expire, loop)
        try:
            verdict = await attempt
        except asyncio.CancelledError:
            if entry[2] and task.uncancel() == 0:  # our deadline, not a cancellation from outside
                on_timeout()
                return no_answer(TRANSPORT_TIMEOUT, f"no answer within {self.seconds}s")
            raise
        except Exception as exc:
            on_error()
            return no_answer(TRANSPORT_ERROR, type(exc).__name__)
        finally:
            entry[1] = None
        if entry[2]:  # the attempt swallowed our cancellation: undo it, its answer stands
            task.uncancel()
        return verdict

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        entries = self._entries
        now = loop.time()
        while entries:
            expiry, task, _ = head = entries[0]
            if task is not None:
                if expiry > now:
                    self._timer = loop.call_at(expiry, self._expire, loop)
                    return
                head[2] = True
                task.cancel()
            entries.popleft()

    def close(self) -> None:
        """Stop the timer (sends still running keep no deadline afterwards)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()


class SendSlots:
    """A bound on concurrent sends: asyncio.Semaphore's job without its per-acquire waiter scan.

    ``async with slots:`` takes a slot (waiting in FIFO order when none is free) and gives it back.
    """

    def __init__(self, limit: int) -> None:
        self.limit = self._free = max(1, limit)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken now (sends in flight); waiters are not counted."""
        return self.limit - self._free

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the releaser handed its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
