"""websession: web sessions with pluggable providers, for WSGI and ASGI, sync and async.

A Python port of beego's ``session`` package::

    manager = websession.Manager("memory", '{"cookieName": "gosessionid", "gclifetime": 3600}')
    manager.start_gc()

    session = manager.session_start(environ)      # or an ASGI scope
    session.set("username", "ann")
    headers: list[tuple[str, str]] = []
    session.session_release(headers)              # saves; adds Set-Cookie and friends
"""

from ._config import ManagerConfig, parse_config
from ._manager import Manager
from ._ops import SessionInfo
from ._session import SessionStore
from .codecs import Codec, JSONCodec, SignedPickleCodec
from .exceptions import (
    ConfigurationError,
    MissingDependencyError,
    SerializationError,
    SessionConflictError,
    SessionModeError,
    SessionTooLarge,
    StoreUnavailableError,
    UnknownProviderError,
    UnsupportedOperationError,
    WebSessionError,
)
from .middleware import ASGISessionMiddleware, WSGISessionMiddleware
from .providers import BaseProvider, Provider, Record, Store, register, registered

__version__ = "0.1.0"

__all__ = [
    "ASGISessionMiddleware",
    "BaseProvider",
    "Codec",
    "ConfigurationError",
    "JSONCodec",
    "Manager",
    "ManagerConfig",
    "MissingDependencyError",
    "Provider",
    "Record",
    "SerializationError",
    "SessionConflictError",
    "SessionInfo",
    "SessionModeError",
    "SessionStore",
    "SessionTooLarge",
    "SignedPickleCodec",
    "Store",
    "StoreUnavailableError",
    "UnknownProviderError",
    "UnsupportedOperationError",
    "WSGISessionMiddleware",
    "WebSessionError",
    "parse_config",
    "register",
    "registered",
]
