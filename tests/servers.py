"""Real servers for the tests: a test that needs one skips when it is missing, except under
CI=true, where it fails (CI must never pass by skipping)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["descendants", "require_server", "signal_tree", "stopped", "unavailable"]


def unavailable(message: str) -> None:
    """Skip the test, or fail it under ``CI=true``: CI must never pass by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, under ``CI=true``, fail) unless something listens on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc}); `make test` starts it"
    unavailable(message)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_tree(pid: int, signum: int) -> list[int]:
    """Send ``signum`` to ``pid`` first (so that it starts no more children), then to every
    process it started — PostgreSQL's backends each leave its process group, so a group
    signal would miss them. Returns the descendants signalled."""
    os.kill(pid, signum)
    tree = descendants(pid)
    for child in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
    return tree


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """A server stalled inside the block — ``pid`` and every process it started stopped
    (SIGSTOP): it accepts connections and answers nothing — and resumed after."""
    tree = signal_tree(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for child in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
