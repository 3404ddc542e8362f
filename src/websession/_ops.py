"""What an operator sees of a manager: its counters, its events, and its sessions listed.

The engine counts and fires; this module only keeps the numbers and the subscribers.
Counting is on the hot path of every request, so a counter is a plain integer attribute
incremented with ``+=``: no lock. Under the GIL that increment cannot corrupt anything, but
two threads incrementing the same counter at the same instant may lose one of the two
increments; the counters are for monitoring, where that is noise, and a lock on every
request would not be.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

__all__ = ["EVENTS", "Counters", "Events", "SessionInfo"]

log = logging.getLogger("websession")

#: The events a manager fires, and what each callback is given.
EVENTS = {
    "created": "the new session's ID",
    "regenerated": "the new ID and the old one",
    "destroyed": "the destroyed ID",
    "expired": "how many sessions a GC pass removed, and their IDs (a list) where the "
               "provider reports them (memory, file, sqlite, MySQL, PostgreSQL, and Redis from "
               "its keyspace notifications), else None",
}


class Counters:
    """The engine's counters; :meth:`snapshot` reads them all at once.

    Counts are exact. Store latency is sampled: the engine times one load and one write
    in 16 (the first, then every 16th), since reading the clock costs more than the rest
    of the counting; :meth:`snapshot` scales the sampled time to all of them.
    """

    __slots__ = ("conflicts", "created", "destroyed", "expired", "loads", "refreshes",
                 "regenerated", "retries", "saves", "timed_load_seconds", "timed_loads",
                 "timed_write_seconds", "timed_writes", "unavailable", "writes")

    def __init__(self) -> None:
        self.loads = 0  #: sessions read from the store
        self.writes = 0  #: releases that wrote (a create, an update, a refresh, retries)
        self.saves = 0  #: changed sessions written (compare-and-set updates that won)
        self.refreshes = 0  #: idle deadlines moved without rewriting the data
        self.conflicts = 0  #: compare-and-set updates that lost a race
        self.retries = 0  #: saves tried again after a conflict (re-read, re-applied)
        self.unavailable = 0  #: store calls that failed because the store was unreachable
        self.created = 0  #: new sessions stored
        self.regenerated = 0  #: sessions moved to a new ID
        self.destroyed = 0  #: sessions deleted on purpose
        self.expired = 0  #: expired sessions removed by GC
        self.timed_loads = self.timed_writes = 0  #: how many loads and writes were timed
        self.timed_load_seconds = 0.0  #: the time the timed loads took, in total
        self.timed_write_seconds = 0.0  #: the time the timed writes took, in total

    def timed_load(self, seconds: float) -> None:
        """A timed load took ``seconds``."""
        self.timed_loads += 1
        self.timed_load_seconds += seconds

    def timed_write(self, seconds: float) -> None:
        """A timed write took ``seconds``."""
        self.timed_writes += 1
        self.timed_write_seconds += seconds

    def snapshot(self) -> dict[str, int | float]:
        """Every counter by name, and ``load_seconds`` / ``write_seconds``: the time all
        loads and writes took, estimated from the timed ones."""
        figures: dict[str, int | float] = {name: getattr(self, name) for name in _COUNTS}
        figures["load_seconds"] = _scaled(self.timed_load_seconds, self.timed_loads,
                                          self.loads)
        figures["write_seconds"] = _scaled(self.timed_write_seconds, self.timed_writes,
                                           self.writes)
        return figures


_COUNTS = ("loads", "writes", "saves", "refreshes", "conflicts", "retries", "unavailable",
           "created", "regenerated", "destroyed", "expired")


def _scaled(seconds: float, timed: int, count: int) -> float:
    """The time ``count`` operations took, from ``timed`` of them taking ``seconds``."""
    return seconds * count / timed if timed else 0.0


class Events:
    """Subscribers per event; a manager without any pays one truth test per event point."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[..., Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Whether anyone subscribed: a plain attribute, read where the engine would
        #: fire, so a manager without subscribers pays one attribute read.
        self.active = False

    def wants(self, event: str) -> bool:
        """Whether ``event`` has subscribers."""
        return event in self._subscribers

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` on each ``event``; see :data:`EVENTS` for what it receives."""
        if event not in EVENTS:
            raise ValueError(f"unknown session event {event!r}: one of {', '.join(EVENTS)}")
        self._subscribers.setdefault(event, []).append(callback)
        self.active = True

    def off(self, event: str, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` on ``event``."""
        callbacks = self._subscribers.get(event, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._subscribers.pop(event, None)
        self.active = bool(self._subscribers)

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event``'s subscribers; a failing one is logged and never raises here.

        An async callback runs as a task on the running event loop (the request does not
        wait for it); off an event loop it runs to completion before ``fire`` returns.
        """
        for callback in tuple(self._subscribers.get(event, ())):  # off() may run meanwhile
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    self._schedule(event, result)
            except Exception:
                log.exception("session %s callback %r failed", event, callback)

    def _schedule(self, event: str, awaitable: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("session %s callback failed", event)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(guarded())
            return
        task = loop.create_task(guarded())
        self._tasks.add(task)  # a task nobody references may be collected mid-run
        task.add_done_callback(self._tasks.discard)


class SessionInfo(NamedTuple):
    """A stored session as an operator sees it (:meth:`Manager.iter_sessions`)."""

    sid: str
    #: Unix times: when the session was created, and when it expires if left idle.
    created: float
    expires_at: float
    #: The stored record's size in bytes, and its version (the number of writes).
    size: int
    version: int
    #: The decoded data.
    data: dict[str, Any]
    #: The user the session is bound to (its ``userKey`` value, as a string), if any.
    user: str | None = None
