"""Real servers for the tests: a test that needs one skips when it is missing, except under
CI=true, where it fails (CI must never pass by skipping)."""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["require_server", "unavailable"]


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
