"""The provider registry: providers are found by name, as ``database/sql`` finds drivers.

Built-in providers are imported only when first asked for, so a missing optional driver
costs nothing until its provider is used (and then fails naming the extra to install).
Third-party providers register with :func:`register` or through the
``websession.providers`` entry-point group.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from ..exceptions import ConfigurationError, UnknownProviderError
from .base import BaseProvider, Provider, Record, Store, parse_options

__all__ = [
    "BaseProvider",
    "Provider",
    "Record",
    "Store",
    "create_provider",
    "parse_options",
    "register",
    "registered",
]

ENTRY_POINT_GROUP = "websession.providers"

_BUILTIN = {
    "memory": "websession.providers.memory:MemoryProvider",
    "file": "websession.providers.file:FileProvider",
    "cookie": "websession.providers.cookie:CookieProvider",
    "sqlite": "websession.providers.sqlite:SQLiteProvider",
    "redis": "websession.providers.redis:RedisProvider",
    "redis_cluster": "websession.providers.redis:RedisClusterProvider",
    "redis_sentinel": "websession.providers.redis:RedisSentinelProvider",
    "mysql": "websession.providers.mysql:MySQLProvider",
    "postgresql": "websession.providers.postgres:PostgresProvider",
    "memcached": "websession.providers.memcached:MemcachedProvider",
    "memcache": "websession.providers.memcached:MemcachedProvider",  # beego's name
}
_registry: dict[str, Any] = {}
_lock = threading.Lock()


def register(name: str, provider: Any, *, replace: bool = False) -> None:
    """Make ``provider`` available to :class:`~websession.Manager` under ``name``.

    ``provider`` is either a class (each manager gets its own instance) or, as in the
    seed, an instance shared by every manager that names it. Registering a name twice is
    an error unless ``replace`` is true.
    """
    if not name or not isinstance(name, str):
        raise ConfigurationError("a provider name must be a non-empty string")
    if provider is None:
        raise ConfigurationError(f"register({name!r}): provider is None")
    with _lock:
        if name in _registry and not replace:
            raise ConfigurationError(f"a session provider named {name!r} is already registered")
        _registry[name] = provider


def registered() -> list[str]:
    """Names that :func:`create_provider` can resolve (entry points included)."""
    names = set(_registry) | set(_BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def _lookup(name: str) -> Any:
    with _lock:
        if name in _registry:
            return _registry[name]
    target = _BUILTIN.get(name)
    if target is None:
        found = entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not found:
            raise UnknownProviderError(name, registered())
        return next(iter(found)).load()
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_provider(name: str) -> Any:
    """Return the provider registered as ``name``: a new instance of a registered class,
    or the registered instance itself."""
    entry = _lookup(name)
    return entry() if isinstance(entry, type) else entry
