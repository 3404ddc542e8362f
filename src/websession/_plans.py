"""Plans: I/O-free logic written once, and the one pair of drivers that runs it.

A *plan* is a generator that yields *steps* (requests for one I/O operation), is sent
each step's answer, and returns its result::

    def read_then_write(key):
        value = yield "GET", key
        yield "SET", key, value + 1
        return value

:func:`drive` runs a plan with a blocking executor and :func:`adrive` with an awaitable
one, so logic that differs between sync and async code only by ``await`` is written once.
A step is handed to the executor whole, in whatever shape the executor understands; a
driver given no executor takes each step as a callable and its arguments,
``(function, args)``. Driver errors of the ``errors`` types are raised as
``translate(exc)``: the place where a store's exceptions become websession's is the
driver call. The engine's session operations, the SQL providers' statements and the Redis
providers' multi-command operations are all plans run by these two functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Plan", "adrive", "drive"]

T = TypeVar("T")

#: A plan yielding steps of any shape and returning ``T``.
Plan = Generator[Any, Any, T]

_NOTHING: tuple[type[BaseException], ...] = ()


def _same(exc: BaseException) -> BaseException:
    return exc


def drive(
    plan: Plan[T],
    execute: Callable[[Any], Any] | None = None,
    errors: tuple[type[BaseException], ...] = _NOTHING,
    translate: Callable[[BaseException], BaseException] = _same,
) -> T:
    """Run ``plan``, each of its steps through ``execute`` (or, without one, each step
    ``(function, args)`` called); return the plan's result."""
    send = plan.send
    try:
        step = next(plan)
        if execute is None:
            while True:
                step = send(step[0](*step[1]))
        while True:
            step = send(execute(step))
    except StopIteration as done:
        result: T = done.value
        return result
    except errors as exc:
        raise translate(exc) from exc


async def adrive(
    plan: Plan[T],
    execute: Callable[[Any], Awaitable[Any]],
    errors: tuple[type[BaseException], ...] = _NOTHING,
    translate: Callable[[BaseException], BaseException] = _same,
) -> T:
    """Async twin of :func:`drive`: the same loop, awaiting each step."""
    send = plan.send
    try:
        step = next(plan)
        while True:
            step = send(await execute(step))
    except StopIteration as done:
        result: T = done.value
        return result
    except errors as exc:
        raise translate(exc) from exc
