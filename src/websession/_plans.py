"""Plans: I/O-free logic written once, and the one pair of drivers that runs it.

A *plan* is a generator that yields *steps* (requests for one I/O operation, in whatever
shape its executor understands), is sent each step's answer, and returns its result::

    def read_then_write(key):
        value = yield "GET", key
        yield "SET", key, value + 1
        return value

:func:`drive` runs a plan with a blocking executor and :func:`adrive` with an awaitable
one, so logic that differs between sync and async code only by ``await`` is written once.
The engine's session operations, the SQL providers' statements and the Redis providers'
multi-command operations are all plans run by these two functions. A driver may also
translate the executor's errors (``errors`` into ``translate(exc)``), so the place where a
driver's exceptions become websession's is the driver call itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Plan", "adrive", "drive"]

T = TypeVar("T")

#: A plan yielding steps of any shape and returning ``T``.
Plan = Generator[Any, Any, T]

def drive(plan: Plan[T], execute: Callable[[Any], Any]) -> T:
    """Run ``plan``, each of its steps through ``execute``; return the plan's result."""
    send = plan.send
    try:
        step = next(plan)
        while True:
            step = send(execute(step))
    except StopIteration as done:
        result: T = done.value
        return result


async def adrive(plan: Plan[T], execute: Callable[[Any], Awaitable[Any]]) -> T:
    """Async twin of :func:`drive`: the same loop, awaiting each step."""
    send = plan.send
    try:
        step = next(plan)
        while True:
            step = send(await execute(step))
    except StopIteration as done:
        result: T = done.value
        return result
