"""Objects that belong to one event loop (asyncio locks, connection pools, clients), and
awaiting a driver that may lose a cancellation.

An application has one loop, but tests and ``asyncio.run`` per job make a new one each
time, and an asyncio object used from another loop fails. :class:`LoopLocal` keeps one
per loop, made on first use in that loop, and forgets those of loops that have closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["LoopLocal", "cancellable"]

T = TypeVar("T")


async def cancellable(work: Awaitable[T],
                      abandoned: Callable[[T], object] | None = None) -> T:
    """Await ``work`` in a task of its own, so that cancelling the caller (the deadline of
    a store operation) ends the wait at once, whatever ``work`` does with its own
    cancellation.

    Some drivers lose a cancellation: Python 3.11's ``asyncio.wait_for`` (aiomysql's
    connect) returns a result that arrives together with the cancellation, and redis-py's
    cluster client retries after one; the caller would then wait, past its deadline, for
    a server that may never answer. Here the caller's cancellation is its own: ``work`` is
    cancelled too and left to end in the background; if it succeeds after all, its
    result goes to ``abandoned`` (to close a connection nobody will use).
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(lambda done: _unwanted(done, abandoned))
        raise


def _unwanted(task: asyncio.Future[Any], abandoned: Callable[[Any], object] | None) -> None:
    # The exception is retrieved either way: nobody waits for it any more.
    if not task.cancelled() and task.exception() is None and abandoned is not None:
        abandoned(task.result())


class LoopLocal(Generic[T]):
    """One ``T`` per running event loop, made by ``factory`` on first use in that loop."""

    __slots__ = ("_factory", "_items", "_lock")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: dict[asyncio.AbstractEventLoop, T] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        """The running loop's object (call from a coroutine)."""
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            with self._lock:
                item = self._items.get(loop)
                if item is None:
                    # A closed loop can run nothing again: its objects are dead weight.
                    for old in [old for old in self._items if old.is_closed()]:
                        del self._items[old]
                    item = self._items[loop] = self._factory()
        return item

    def take_all(self) -> dict[asyncio.AbstractEventLoop, T]:
        """Remove and return every loop's object (to close them)."""
        with self._lock:
            items, self._items = self._items, {}
        return items
