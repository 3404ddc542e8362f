"""Objects that belong to one event loop (asyncio locks, connection pools, clients).

An application has one loop, but tests and ``asyncio.run`` per job make a new one each
time, and an asyncio object used from another loop fails. :class:`LoopLocal` keeps one
per loop, made on first use in that loop, and forgets those of loops that have closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LoopLocal"]

T = TypeVar("T")


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
