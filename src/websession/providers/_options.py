"""Reading providers' options: the helpers every provider's configuration shares.

Providers take the seed's forms (JSON strings, Go DSNs, ``host:port`` lists, Go
durations) as well as Python mappings; each form is parsed here once, and every
rejection is a :class:`~websession.ConfigurationError` naming the key at fault.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_OPERATION_TIMEOUT",
    "OPERATION_TIMEOUT_KEY",
    "parse_address",
    "parse_duration",
    "parse_operation_timeout",
    "parse_options",
]

#: The one ``providerConfig`` key every server provider takes for the deadline of a store
#: operation (``operation_timeout`` matches too: keys match without case or underscores).
OPERATION_TIMEOUT_KEY = "operationTimeout"
#: Seconds a store operation may take — connect, pool wait, send, receive and retries
#: together — before it fails with :class:`~websession.StoreUnavailableError`.
DEFAULT_OPERATION_TIMEOUT = 5.0

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}


def parse_options(
    config: Any, known: Mapping[str, type | tuple[type, ...]], *, provider: str
) -> dict[str, Any]:
    """Read a provider's options from a JSON string or a mapping.

    Keys match ``known`` case-insensitively and without underscores, as Go's decoder
    matches the seed's keys; an unknown key or a value of the wrong type is a
    :class:`ConfigurationError` naming it.
    """
    if config in ("", None):
        return {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"providerConfig for {provider!r}: invalid JSON at line {exc.lineno}, "
                f"column {exc.colno}: {exc.msg}",
                key="providerConfig",
            ) from None
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"providerConfig for {provider!r} must be a JSON object or a mapping",
            key="providerConfig",
        )
    folded = {name.replace("_", "").lower(): name for name in known}
    options: dict[str, Any] = {}
    for key, value in config.items():
        name = folded.get(str(key).replace("_", "").lower())
        if name is None:
            raise ConfigurationError(
                f"providerConfig for {provider!r}: unknown key {key!r} "
                f"(known: {', '.join(sorted(known))})",
                key=str(key),
            )
        kind = known[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigurationError(
                f"providerConfig for {provider!r}: {key} must be {names}, got {value!r}",
                key=str(key),
            )
        options[name] = value
    return options


def parse_duration(value: Any, *, key: str, where: str) -> float:
    """Seconds from a number or a Go duration string (``"30s"``, ``"1m30s"``, ``"250ms"``).

    ``where`` starts the error message (``"providerConfig for 'redis'"``); ``key`` names
    the option at fault. Negative, non-finite and malformed values are refused.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if text and _GO_DURATION.sub("", text) == "":
                seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(text))
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(
            f"{where}: {key} must be seconds or a Go duration such as '30s' or '500ms', "
            f"got {value!r}",
            key=key,
        )
    return seconds


def parse_address(text: str, default_port: int, *, key: str, where: str) -> tuple[str, int]:
    """``(host, port)`` from ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"{where}: address {text!r} is malformed", key=key)
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    if not host:
        raise ConfigurationError(f"{where}: address {text!r} has no host", key=key)
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"{where}: address {text!r}: the port must be a number from 1 to 65535", key=key
        )
    return host, int(port)


def parse_operation_timeout(value: Any, *, where: str) -> float:
    """The ``operationTimeout`` option: positive seconds or a Go duration."""
    seconds = parse_duration(value, key=OPERATION_TIMEOUT_KEY, where=where)
    if seconds <= 0:
        raise ConfigurationError(f"{where}: {OPERATION_TIMEOUT_KEY} must be positive, "
                                 f"got {value!r}", key=OPERATION_TIMEOUT_KEY)
    return seconds
